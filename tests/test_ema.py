"""The EMA generator of `gantools train --ema`: its warm-up (ema_beta), its batch-norm buffers."""

from __future__ import annotations

import inspect
import math
import re

import pytest
import torch

from conftest import TINY_DCGAN
from gantools.checkpoint import load_checkpoint
from gantools.train import Trainer, TrainConfig, _resume_config, ema_beta, resume, train


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


def test_a_checkpoints_ema_generator_has_averaged_weights_and_gs_batch_norm_buffers(tmp_path):
    """As measured best (bench/RESULTS.md, EMA): G_ema's weights are an average that lags G's, its
    batch-norm statistics G's own."""
    cfg = TrainConfig(model="dcgan", data="toy:shapes", steps=4, batch_size=8, device="cpu", ema=True,
                      ema_rampup=0.5,  # a half-life of 2 steps at step 4 (the default's is a fraction of a step)
                      sample_every=0, hparams=dict(TINY_DCGAN), out=str(tmp_path / "run"))
    ck = load_checkpoint(train(cfg))
    G_ema, G = ck["state"]["G_ema"], ck["state"]["G"]
    assert not torch.equal(G_ema["net.0.weight"], G["net.0.weight"])
    buffers = [k for k in G if "running" in k or "num_batches" in k]
    assert buffers and all(torch.equal(G_ema[k], G[k]) for k in buffers)


def test_checkpoints_from_before_the_warm_up_resume_without_it(tmp_path):
    ck = {"config": {**TrainConfig(model="dcgan", data="toy:shapes", ema=True).to_dict()}}
    del ck["config"]["ema_rampup"]
    assert _resume_config(tmp_path / "x.pt", ck, {}).ema_rampup == 0.0
    assert TrainConfig(model="dcgan", data="toy:shapes").ema_rampup > 0  # new runs warm up


def test_a_run_resumes_with_its_own_warm_up_whatever_the_default(tmp_path):
    """Runs started under an earlier default (0.05 until 2026-11-29) keep their rule on --resume: a run
    with another rampup, resumed half-way, ends with the EMA of the same run trained straight."""
    def cfg(name, steps):
        return TrainConfig(model="dcgan", data="toy:shapes", steps=steps, batch_size=8, device="cpu", ema=True,
                           ema_rampup=0.5, sample_every=0, hparams=dict(TINY_DCGAN), out=str(tmp_path / name))

    assert cfg("x", 4).ema_rampup != TrainConfig(model="dcgan", data="toy:shapes").ema_rampup
    straight = load_checkpoint(train(cfg("straight", 4)))
    train(cfg("resumed", 2))
    resumed = load_checkpoint(resume(str(tmp_path / "resumed"), {"steps": 4}))
    assert resumed["config"]["ema_rampup"] == 0.5
    for k, v in straight["state"]["G_ema"].items():
        assert torch.equal(v, resumed["state"]["G_ema"][k]), k


@pytest.mark.parametrize("name", ["ema_decay", "ema_rampup"])
def test_the_help_states_the_configs_default(name):
    from gantools.cli.train import train as train_command

    help_text = inspect.signature(train_command).parameters[name].default.help
    stated = re.search(r"\[default: ([^\]]+)\]", help_text).group(1)
    assert float(stated) == getattr(TrainConfig(model="dcgan", data="toy:shapes"), name)


def test_ema_rampup_out_of_range_is_refused_in_one_line(cli, tmp_path):
    r = cli("train", "dcgan", "--data", "toy:shapes", "--ema", "--ema-rampup", "1.5", "--out", str(tmp_path / "run"))
    assert r.code == 2 and "--ema-rampup 1.5" in r.err and r.err.count("\n") == 1
    assert not (tmp_path / "run").exists()
