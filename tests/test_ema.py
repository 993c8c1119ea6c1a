"""The EMA generator of `gantools train --ema`: its warm-up (ema_beta) and batch-norm statistics that
belong to its own weights (refresh_batch_norm)."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from conftest import TINY_DCGAN
from gantools.checkpoint import load_checkpoint
from gantools.models.dcgan import DCGANGenerator
from gantools.objective import GANObjective, GaussianPrior
from gantools.train import Trainer, TrainConfig, _resume_config, ema_beta, refresh_batch_norm, train


def test_the_warm_up_half_life_is_rampup_times_the_steps_until_decay_takes_over():
    decay, rampup = 0.999, 0.05
    crossover = math.log(0.5) / math.log(decay) / rampup  # ~13,863 steps
    for t in (1, 10, 1500, int(crossover) - 1):
        assert ema_beta(t, decay, rampup) ** (rampup * t) == pytest.approx(0.5)  # half-life rampup * t steps
        assert ema_beta(t, decay, rampup) < decay
    for t in (int(crossover) + 1, 10 ** 6):
        assert ema_beta(t, decay, rampup) == decay
    assert ema_beta(1, decay, rampup) < 1e-5  # the first update all but copies G
    assert [ema_beta(t, 0.9, 0) for t in (1, 100)] == [0.9, 0.9]  # rampup 0: the old constant decay


def _vector_trainer(tmp_path, **cfg) -> Trainer:
    return Trainer(TrainConfig(model="gan", data="toy:ring", steps=50, batch_size=16, device="cpu", ema=True,
                               out=str(tmp_path / "run"), **cfg))


@pytest.mark.parametrize("decay, rampup", [(0.9, 0.05), (0.999, 0.05), (0.9, 0.0), (0.6, 0.5)])
def test_the_ema_after_k_steps_is_the_closed_form(tmp_path, decay, rampup):
    """G's weights set to t at step t (and 0 at the start): after k updates the EMA holds
    sum_t t (1 - beta_t) prod_{s > t} beta_s, with beta_t = min(decay, 0.5 ** (1 / (rampup t)))."""
    tr = _vector_trainer(tmp_path, ema_decay=decay, ema_rampup=rampup)
    G = tr.nets[tr.objective.generator]
    with torch.no_grad():
        for p in tr.G_ema.parameters():
            p.zero_()
    k = 40
    for t in range(1, k + 1):
        with torch.no_grad():
            for p in G.parameters():
                p.fill_(t)
        tr._set_ema_weight()
        tr._update_ema()
        tr.step += 1
    betas = [min(decay, 0.5 ** (1 / (rampup * t))) if rampup else decay for t in range(1, k + 1)]
    expected = sum(t * (1 - betas[t - 1]) * math.prod(betas[t:]) for t in range(1, k + 1))
    for p in tr.G_ema.parameters():
        torch.testing.assert_close(p, torch.full_like(p, expected), rtol=1e-5, atol=1e-5)


def _batch_norm_inputs(G, objective, prior, batch_size, seed, batches):
    """The inputs of each BatchNorm2d of G in train mode, on the prior's draws from `seed`."""
    seen: dict[int, list] = {}
    norms = [m for m in G.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    hooks = [m.register_forward_hook(lambda m, i, o, j=j: seen.setdefault(j, []).append(i[0].detach()))
             for j, m in enumerate(norms)]
    gen = torch.Generator().manual_seed(seed)
    G.train()
    with torch.no_grad():
        for _ in range(batches):
            objective.fake(G, prior.draw(batch_size, gen))
    for h in hooks:
        h.remove()
    return norms, seen


def test_refreshed_batch_norm_statistics_are_the_mean_over_drawn_batches():
    torch.manual_seed(0)
    G = DCGANGenerator(z_dim=8, channels=1, resolution=32, ngf=4)
    objective, prior = GANObjective.__new__(GANObjective), GaussianPrior(8)
    G_ema = copy.deepcopy(G)
    with torch.no_grad():
        for p in G_ema.parameters():
            p.mul_(1.5)  # other weights than G's
    refresh_batch_norm(G_ema, objective, prior, batch_size=16, seed=7, batches=3)
    probe = copy.deepcopy(G_ema)
    norms, seen = _batch_norm_inputs(probe, objective, prior, 16, 7, 3)
    refreshed = [m for m in G_ema.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    raw = [m for m in G.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(refreshed) == len(seen) == 3
    for j, (m, m_raw) in enumerate(zip(refreshed, raw)):
        x = torch.stack(seen[j])  # batches x N x C x H x W
        mean = x.mean(dim=(1, 3, 4)).mean(0)
        var = x.transpose(1, 2).flatten(2).var(dim=2, unbiased=True).mean(0)
        torch.testing.assert_close(m.running_mean, mean, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(m.running_var, var, rtol=1e-4, atol=1e-5)
        assert not torch.allclose(m.running_mean, m_raw.running_mean)  # not G's (fresh) statistics
        assert m.momentum == m_raw.momentum  # put back


def test_a_generator_without_batch_norm_is_left_as_it_is():
    G = torch.nn.Sequential(torch.nn.Linear(4, 4))
    before = copy.deepcopy(G.state_dict())
    refresh_batch_norm(G, GANObjective.__new__(GANObjective), GaussianPrior(4), batch_size=8, seed=0)
    assert all(torch.equal(before[k], v) for k, v in G.state_dict().items())


def test_a_checkpoints_ema_generator_has_statistics_of_its_own_weights(tmp_path):
    """The saved G_ema's batch-norm statistics: those refresh_batch_norm computes for its weights at that
    step, not G's; its weights are G's averaged (they differ after a few steps)."""
    cfg = TrainConfig(model="dcgan", data="toy:shapes", steps=4, batch_size=8, device="cpu", ema=True,
                      sample_every=0, hparams=dict(TINY_DCGAN), out=str(tmp_path / "run"))
    ck = load_checkpoint(train(cfg))
    G_ema, G = ck["state"]["G_ema"], ck["state"]["G"]
    assert not torch.equal(G_ema["net.1.running_mean"], G["net.1.running_mean"])
    assert not torch.equal(G_ema["net.0.weight"], G["net.0.weight"])
    tr = Trainer(cfg)
    tr.G_ema.load_state_dict(G_ema)
    refresh_batch_norm(tr.G_ema, tr.objective, tr.prior, 8, seed=cfg.seed * 1_000_003 + 4)
    for k, v in tr.G_ema.state_dict().items():
        assert torch.equal(v, G_ema[k]), k


def test_checkpoints_from_before_the_warm_up_resume_without_it(tmp_path):
    ck = {"config": {**TrainConfig(model="dcgan", data="toy:shapes", ema=True).to_dict()}}
    del ck["config"]["ema_rampup"]
    assert _resume_config(tmp_path / "x.pt", ck, {}).ema_rampup == 0.0
    assert TrainConfig(model="dcgan", data="toy:shapes").ema_rampup == 0.05  # new runs warm up


def test_ema_rampup_out_of_range_is_refused_in_one_line(cli, tmp_path):
    r = cli("train", "dcgan", "--data", "toy:shapes", "--ema", "--ema-rampup", "1.5", "--out", str(tmp_path / "run"))
    assert r.code == 2 and "--ema-rampup 1.5" in r.err and r.err.count("\n") == 1
    assert not (tmp_path / "run").exists()
