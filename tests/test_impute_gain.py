"""The fast GAIN loop's hand-written gradients against autograd, and its determinism."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

from gantools.impute.gain import GainParams, GainTrainer, fit, generate  # noqa: E402


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


def _correlated_table(n=400, seed=0, missing=0.2):
    """Four numeric columns that are noisy copies of one hidden factor: each predicts the others."""
    g = torch.Generator().manual_seed(seed)
    t = torch.rand(n, 1, generator=g)
    full = (0.1 + 0.8 * t + 0.03 * torch.randn(n, 4, generator=g)).clamp(0, 1)
    m = (torch.rand(n, 4, generator=g) > missing).float()
    return full, m


def test_fit_is_seeded_and_learns():
    full, m = _correlated_table()
    hp = GainParams.for_variant("paper", iterations=1500, batch_size=64)
    a = fit(full * m, m, 4, [], hp, seed=5)
    b = fit(full * m, m, 4, [], hp, seed=5)
    c = fit(full * m, m, 4, [], hp, seed=6)
    for pa, pb in zip(a.G.parameters(), b.G.parameters()):
        assert torch.equal(pa, pb)
    assert any(not torch.equal(pa, pc) for pa, pc in zip(a.G.parameters(), c.G.parameters()))

    def rmse_on_missing(G):
        filled = generate(G, full * m, m, seed=0)
        miss = m == 0
        return float(((filled - full)[miss]).pow(2).mean().sqrt())

    untrained = fit(full * m, m, 4, [], GainParams.for_variant("paper", iterations=0), seed=5)
    col_means = (full * m).sum(0) / m.sum(0)
    mean_rmse = float(((col_means.expand_as(full) - full)[m == 0]).pow(2).mean().sqrt())
    learned = rmse_on_missing(a.G)
    # the columns share one factor (spread ~0.23), so a model that learned the table fills a
    # missing cell from the others far better than its column mean or its untrained self
    assert learned < 0.6 * mean_rmse, (learned, mean_rmse)
    assert learned < 0.6 * rmse_on_missing(untrained.G), learned


@pytest.mark.parametrize("cat_sizes,drop", [((), 0.0), ((3, 2), 0.3)])
def test_batches_hints_and_drops_follow_the_paper(cat_sizes, drop):
    """Hints H = M * B with B ~ Bernoulli(hint_rate) per cell (the authors' code), G's input is
    M*x + (1-M)*U(0, 0.01), and the "gantools" drop hides cells per cell, never adds any."""
    x, m = _table(n=512, cat_sizes=cat_sizes, missing=0.3)
    hint_rate = 0.7
    hp = GainParams.for_variant("paper", batch_size=128, drop_rate=drop, hint_rate=hint_rate)
    tr = GainTrainer(x, m, 3, list(cat_sizes), hp, torch.Generator().manual_seed(3))
    batches = tr.sample_chunk(40)
    d = tr.d
    hints, m_ins, ms, noise = [], [], [], []
    for b in batches:
        x_in, m_in = b.gin[:, :d], b.gin[:, d:]
        hint = b.din[:, d:]
        # the D target is the mask G was shown; the second half of G's input is that mask
        torch.testing.assert_close(-b.d_target * (tr.B * d), m_in)
        torch.testing.assert_close(b.mx_in, b.din[:, :d])
        assert torch.equal(x_in * m_in, b.mx_in)  # observed values pass unchanged
        noise.append(x_in[m_in == 0])
        hints.append(hint)
        m_ins.append(m_in)
        ms.append((b.cm > 0).float())
    hint, m_in, m_rec = torch.cat(hints), torch.cat(m_ins), torch.cat(ms)
    noise = torch.cat(noise)
    assert noise.numel() > 0 and float(noise.min()) >= 0 and float(noise.max()) <= 0.01
    assert float(noise.std()) > 0.001  # drawn, not a constant
    assert set(torch.unique(hint).tolist()) <= {0.0, 1.0}
    assert torch.all(hint <= m_in), "a hint never reveals a cell as observed when it is missing"
    # per categorical cell one draw: every entry of a one-hot block shares its hint and mask
    start = tr.n_num
    for k in cat_sizes:
        block = hint[:, start:start + k]
        assert torch.equal(block, block[:, :1].expand_as(block))
        start += k
    cells = m_in[:, :tr.n_num] == 1
    rate = float(hint[:, :tr.n_num][cells].mean())
    n_cells = int(cells.sum())
    assert abs(rate - hint_rate) < 4 * (hint_rate * (1 - hint_rate) / n_cells) ** 0.5, (rate, n_cells)
    # the observed cells of the batch rows (the reconstruction mask, all of them in "paper"):
    # G is shown each one with probability 1 - drop_rate
    assert torch.all(m_in <= m_rec)
    shown = float(m_in[:, :tr.n_num][m_rec[:, :tr.n_num] == 1].mean())
    n_obs = int((m_rec[:, :tr.n_num] == 1).sum())
    assert abs(shown - (1 - drop)) < 4 * (max(drop * (1 - drop), 1e-12) / n_obs) ** 0.5 + 1e-9, shown


@pytest.mark.parametrize("half_life", [10**9, 3])
def test_averaged_g_is_an_exponential_average_with_a_warm_up(half_life):
    """With ema_half_life, G's weights are averaged over the iterates: after step t with half-life
    min(ema_half_life, ema_rampup * t), so the first iterates fade out; the fit returns the average."""
    x, m = _table(n=96, cat_sizes=())
    hp = GainParams.for_variant("paper", batch_size=32, ema_half_life=half_life)
    tr = GainTrainer(x, m, 3, [], hp, torch.Generator().manual_seed(1))
    iterates = []
    expected, share_of_first = tr.g_flat.clone(), 1.0  # the initial weights
    with torch.no_grad():
        for b in tr.sample_chunk(40):
            tr.step(b)
            iterates.append(tr.g_flat.clone())
    for t, w in enumerate(iterates, start=1):
        keep = 0.5 ** (1 / min(half_life, hp.ema_rampup * t))
        expected = keep * expected + (1 - keep) * w
        share_of_first *= keep
    torch.testing.assert_close(tr.g_ema, expected)
    assert share_of_first < 0.02  # the early iterates fade out, however long the half-life
    assert not torch.allclose(tr.g_ema, tr.g_flat)
    G = tr.result().G
    torch.testing.assert_close(torch.cat([p.detach().reshape(-1) for p in G.parameters()]), expected)


def test_the_fit_keeps_the_better_of_the_average_and_the_iterate_on_the_held_out_cells():
    """With held-out cells, the G returned is whichever of the last iterate and the weight average
    scores better on them, and the result says which: on columns that predict each other the iterate
    (the average lags behind it), on columns of pure noise the average (the iterate chases noise)."""
    from gantools.impute.gain import Validation, cell_weight, hold_out

    kept = []
    for full, m in (_correlated_table(n=300), _table(n=300, cat_sizes=(), missing=0.2)):
        d = full.shape[1]
        v = hold_out(m, d, [], 0.2, seed=0)
        val = Validation(full * m, m, v, cell_weight(d, d, [], "cpu"), d, seed=0)
        hp = GainParams.for_variant("paper", iterations=1500, batch_size=64, ema_half_life=200)
        tr = GainTrainer(full * (m - v), m - v, d, [], hp, torch.Generator().manual_seed(0))
        tr.train(1500)
        with torch.no_grad():
            raw, mean = val.rmse(tr.G), tr._ema_score(val)
            res = tr.result(val)
            assert res.averaged == (mean < raw) and val.rmse(res.G) == pytest.approx(min(raw, mean), rel=1e-6)
        kept.append(res.averaged)
    assert kept == [False, True]


def test_no_weight_average_above_the_refit_size():
    """A table of more than refit_rows rows is fitted exactly as without ema_half_life."""
    from dataclasses import replace

    full, m = _correlated_table(n=300)
    hp = GainParams.for_variant("gantools", iterations=400, select_iterations=True, eval_every=100,
                                screen_iterations=100, refit_rows=200)
    a = fit(full * m, m, 4, [], hp, seed=1)
    b = fit(full * m, m, 4, [], replace(hp, ema_half_life=0), seed=1)
    assert hp.ema_half_life > 0 and not a.averaged and a.validation["averaged"] is False
    for pa, pb in zip(a.G.parameters(), b.G.parameters()):
        assert torch.equal(pa, pb)
