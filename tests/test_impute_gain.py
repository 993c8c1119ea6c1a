"""The fast GAIN loop's hand-written gradients against autograd, and its determinism."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

from gantools.impute.gain import GainParams, GainTrainer, fit  # noqa: E402


def _table(n=64, n_num=3, cat_sizes=(3, 2), seed=0, missing=0.3):
    g = torch.Generator().manual_seed(seed)
    d = n_num + sum(cat_sizes)
    x = torch.rand(n, n_num, generator=g)
    blocks = [F.one_hot(torch.randint(0, k, (n,), generator=g), k).float() for k in cat_sizes]
    x = torch.cat([x, *blocks], 1) if blocks else x
    cells = (torch.rand(n, n_num + len(cat_sizes), generator=g) > missing).float()
    reps = torch.tensor([1] * n_num + list(cat_sizes))
    m = cells.repeat_interleave(reps, dim=1)
    assert m.shape == (n, d)
    return x * m, m


def _autograd_grads(tr: GainTrainer, b, x_true):
    """Reference: the GAIN losses written plainly, differentiated by autograd."""
    G, D, d = tr.G, tr.D, tr.d
    n_num, sizes = tr.n_num, tr.cat_sizes
    m_in = -b.d_target * (tr.B * d)
    m_true = (b.cm > 0).float()
    x_in, _ = b.gin[:, :d], b.gin[:, d:]
    hint = b.din[:, d:].clone()
    for p in list(G.parameters()) + list(D.parameters()):
        p.grad = None
        p.requires_grad_(True)
    with torch.enable_grad():
        g = G(x_in, m_in)
        xh = m_in * x_true + (1 - m_in) * g
        # D step
        logits = D(xh.detach(), hint)
        d_loss = F.binary_cross_entropy_with_logits(logits, m_in)
        d_grads = torch.autograd.grad(d_loss, list(D.parameters()))
        # G step (against the same D parameters here)
        logits = D(xh, hint)
        adv = -((1 - m_in) * F.logsigmoid(logits)).mean()
        se = (m_true[:, :n_num] * (x_true[:, :n_num] - g[:, :n_num]) ** 2).sum()
        start, ce = n_num, 0.0
        for k in sizes:
            logp = torch.log(g[:, start:start + k])
            cell = m_true[:, start]
            ce = ce - (cell * (x_true[:, start:start + k] * logp).sum(1)).sum()
            start += k
        n_obs = m_true[:, :n_num].sum() + sum(m_true[:, n_num + sum(sizes[:i])].sum() for i in range(len(sizes)))
        g_loss = adv + tr.hp.alpha * (se + ce) / n_obs
        g_grads = torch.autograd.grad(g_loss, list(G.parameters()))
    for p in list(G.parameters()) + list(D.parameters()):
        p.requires_grad_(False)
    return d_grads, g_grads


@pytest.mark.parametrize("cat_sizes,drop", [((), 0.0), ((3, 2), 0.0), ((4,), 0.25)])
def test_manual_gradients_match_autograd(cat_sizes, drop):
    torch.manual_seed(0)
    x, m = _table(cat_sizes=cat_sizes)
    hp = GainParams.for_variant("paper", batch_size=32, drop_rate=drop, hidden=7)
    tr = GainTrainer(x, m, 3, list(cat_sizes), hp, torch.Generator().manual_seed(1))
    b = tr.sample_chunk(1)[0]
    x_true = (b.cmx / b.cm.clamp_min(1e-30)) * (b.cm > 0)  # the batch's observed values
    d_ref, g_ref = _autograd_grads(tr, b, x_true)
    with torch.no_grad():
        h1, h2, g = tr.g_forward(b)
        tr.d_grads(b, g)
        tr.g_grads(b, h1, h2, g)
    for got, want in zip(tr.dw, d_ref):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
    for got, want in zip(tr.gw, g_ref):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


def test_fit_is_seeded_and_learns():
    x, m = _table(n=200, cat_sizes=(3,))
    hp = GainParams.for_variant("paper", iterations=50, batch_size=32)
    a = fit(x, m, 3, [3], hp, seed=5)
    b = fit(x, m, 3, [3], hp, seed=5)
    c = fit(x, m, 3, [3], hp, seed=6)
    for pa, pb in zip(a.G.parameters(), b.G.parameters()):
        assert torch.equal(pa, pb)
    assert any(not torch.equal(pa, pc) for pa, pc in zip(a.G.parameters(), c.G.parameters()))
