"""infogan: Q is trained in both steps, its loss is the mutual-information bound's formula, the prior's
codes are seeded and prefix-stable, and `interpolate --code K` sweeps only code K."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gantools.checkpoint import load_checkpoint
from gantools.data import toy
from gantools.generate import load_objective
from gantools.models.infogan import InfoPrior
from gantools.objective import build_objective
from gantools.registry import LOSSES, MODELS
from gantools.train import Trainer, TrainConfig, train

NARROW = {"ngf": 8, "ndf": 8, "hidden": 16}


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("infogan-data") / "shapes.npz"
    images, labels = toy.shapes(n=32, seed=2)
    np.savez(path, images=images)
    return str(path)


def _config(model: str, data: str, out, **hparams) -> TrainConfig:
    return TrainConfig(model=model, data=data, steps=1, batch_size=8, device="cpu", seed=3, out=str(out),
                       sample_every=0, hparams={k: v for k, v in {**NARROW, **hparams}.items() if k != "hidden" or model == "infogan"})


@pytest.fixture(scope="module")
def checkpoint(shapes, tmp_path_factory) -> str:
    return str(train(_config("infogan", shapes, tmp_path_factory.mktemp("infogan-run") / "run")))


def _trace_steps(trainer: Trainer) -> list[dict]:
    """Wrap each optimiser's step to record, per step, Q's gradient norm and which networks it changed."""
    records = []
    for name, opt in trainer.opts.items():
        def step(*args, _name=name, _orig=opt.step, **kwargs):
            before = {n: [p.detach().clone() for p in net.parameters()] for n, net in trainer.nets.items()}
            q_grad = sum(float(p.grad.abs().sum()) for p in trainer.nets["Q"].parameters() if p.grad is not None)
            out = _orig(*args, **kwargs)
            changed = {n for n, net in trainer.nets.items()
                       if any(not torch.equal(a, p) for a, p in zip(before[n], net.parameters()))}
            records.append({"optimizer": _name, "q_grad": q_grad, "changed": changed})
            return out
        opt.step = step
    return records


def test_q_is_trained_in_g_step_and_d_step(shapes, tmp_path):
    trainer = Trainer(_config("infogan", shapes, tmp_path / "run"))
    assert trainer.cfg.updates == "alternating"
    records = _trace_steps(trainer)
    trainer.train_step(trainer._real_batches())
    assert [r["optimizer"] for r in records] == ["D", "G"]
    d, g = records
    assert d["q_grad"] > 0 and d["changed"] == {"D", "Q"}  # D's step: the trunk and Q's head
    assert g["q_grad"] > 0 and g["changed"] == {"G", "Q"}  # G's step: G and Q's head
    assert {"mi_cat", "mi_cont", "q_acc"} <= set(trainer.log_names)


def test_q_gradients_come_from_the_mutual_information_term(shapes, tmp_path):
    """With both lambdas 0 the same step gives Q no gradient: what Q learns in D's step is the MI term."""
    trainer = Trainer(_config("infogan", shapes, tmp_path / "run", lambda_cat=0.0, lambda_cont=0.0))
    records = _trace_steps(trainer)
    trainer.train_step(trainer._real_batches())
    assert [r["q_grad"] for r in records] == [0.0, 0.0]


def test_mutual_information_loss_is_its_formula():
    spec = MODELS.get("infogan")
    hp = {**{k: v for k, v in spec.defaults.items()}, "cat_codes": [3, 4], "cont_codes": 2,
          "lambda_cat": 0.7, "lambda_cont": 0.3}
    obj = build_objective(spec, hp, {"kind": "image", "channels": 1, "resolution": 28}, LOSSES.get("ns"))
    inputs = obj.build_prior().draw(16, np.random.default_rng(1))
    q = torch.from_numpy(np.random.default_rng(2).normal(size=(16, 3 + 4 + 2)).astype(np.float32))
    loss, logs = obj.mutual_info(q, inputs)

    qn, cat, cont = q.double().numpy(), inputs["c_cat"].numpy(), inputs["c_cont"].double().numpy()
    ce = 0.0
    for logits, c in ((qn[:, :3], cat[:, 0]), (qn[:, 3:7], cat[:, 1])):
        log_p = logits - np.log(np.exp(logits).sum(1, keepdims=True))
        ce += -log_p[np.arange(16), c].mean()
    nll = (0.5 * (cont - qn[:, 7:]) ** 2 + 0.5 * math.log(2 * math.pi)).sum(1).mean()
    assert float(logs["mi_cat"]) == pytest.approx(ce, rel=1e-5)
    assert float(logs["mi_cont"]) == pytest.approx(nll, rel=1e-5)
    assert float(loss) == pytest.approx(0.7 * ce + 0.3 * nll, rel=1e-5)
    hits = [(qn[:, :3].argmax(1) == cat[:, 0]).mean(), (qn[:, 3:7].argmax(1) == cat[:, 1]).mean()]
    assert float(logs["q_acc"]) == pytest.approx(np.mean(hits))


@pytest.mark.parametrize("noise", ["uniform", "normal"])
def test_prior_is_seeded_and_prefix_stable(noise):
    prior = InfoPrior(5, [10, 3], 2, noise)
    small = prior.draw(3, np.random.default_rng(7))
    large = prior.draw(40, np.random.default_rng(7))
    for name in ("z", "c_cat", "c_cont"):
        assert torch.equal(small[name], large[name][:3]), name
    assert (large["z"].abs().max() <= 1) == (noise == "uniform")  # 200 normal draws all within 1: p ~ 1e-34
    assert not torch.equal(prior.draw(3, np.random.default_rng(8))["c_cont"], small["c_cont"])
    assert large["c_cat"].dtype == torch.int64 and large["c_cat"].shape == (40, 2)
    assert (large["c_cat"] >= 0).all() and (large["c_cat"] < torch.tensor([10, 3])).all()
    assert large["c_cont"].shape == (40, 2) and large["c_cont"].abs().max() <= 1
    assert len(set(large["c_cat"][:, 0].tolist())) > 5  # the categories are spread, not one value
    g = [prior.draw(6, torch.Generator().manual_seed(4)) for _ in range(2)]  # training's draws are seeded too
    assert all(torch.equal(g[0][k], g[1][k]) for k in g[0])
    if noise == "uniform":
        assert g[0]["z"].abs().max() <= 1 and g[0]["z"].min() < 0 < g[0]["z"].max()


def test_noise_is_uniform_and_older_priors_keep_normal_noise():
    """uniform z is the default (measured: bench/RESULTS.md "conditional"); a prior state saved before the
    option (no `uniform_noise`), as a resume and the commands load it, draws the normal noise it trained with."""
    spec = MODELS.get("infogan")
    assert spec.defaults["noise"] == "uniform"
    data = {"kind": "image", "channels": 1, "resolution": 28}
    prior = build_objective(spec, dict(spec.defaults), data).build_prior()
    assert prior.draw(500, np.random.default_rng(0))["z"].abs().max() <= 1
    saved = prior.state_dict()
    restored = build_objective(spec, {k: v for k, v in spec.defaults.items() if k != "noise"}, data).build_prior()
    restored.load_state_dict(saved)  # the noise comes from the saved state, not the hyper-parameters
    assert torch.equal(restored.draw(5, np.random.default_rng(1))["z"], prior.draw(5, np.random.default_rng(1))["z"])
    prior.load_state_dict({})
    assert prior.draw(500, np.random.default_rng(0))["z"].abs().max() > 1


@pytest.mark.parametrize("option", ["--truncation", "--temperature"])
def test_truncation_or_temperature_of_uniform_noise_is_refused(checkpoint, cli, tmp_path, option):
    out = tmp_path / "x.npz"
    r = cli("sample", checkpoint, "-n", "4", option, "1", "-o", out, "--device", "cpu")
    assert r.code == 2 and option in r.err and "uniform" in r.err and len(r.err.strip().splitlines()) == 1, r.err
    assert not out.exists()


def test_interpolate_code_sweeps_only_that_code(checkpoint, cli, tmp_path):
    out = tmp_path / "sweep.npz"
    r = cli("interpolate", checkpoint, "--code", "1", "--steps", "5", "--seed", "3", "-o", out, "--device", "cpu")
    assert r.code == 0, r.err
    got = np.load(out)
    _, prior = load_objective(load_checkpoint(checkpoint))
    first = prior.draw(1, np.random.default_rng(3))
    assert got["images"].shape[0] == 10 * 5  # one row per categorical value
    assert (got["z"] == first["z"].numpy()).all()
    assert np.array_equal(got["c_cat"][:, 0], np.repeat(np.arange(10), 5))
    assert np.allclose(got["c_cont"][:, 0], np.tile(np.linspace(-2, 2, 5), 10))
    assert (got["c_cont"][:, 1] == first["c_cont"][0, 1].item()).all()  # the other code stays the seed's
    assert np.array_equal(got["row"], np.repeat(np.arange(10), 5))
    assert not np.array_equal(got["images"][0], got["images"][5])  # another category, another image


def test_latent_path_keeps_the_first_endpoints_codes(checkpoint, cli, tmp_path):
    out = tmp_path / "walk.npz"
    r = cli("interpolate", checkpoint, "--seeds", "4,5", "--steps", "3", "-o", out, "--device", "cpu")
    assert r.code == 0, r.err
    got = np.load(out)
    first = load_objective(load_checkpoint(checkpoint))[1].draw(1, np.random.default_rng(4))
    assert (got["c_cat"] == first["c_cat"].numpy()).all() and (got["c_cont"] == first["c_cont"].numpy()).all()


@pytest.mark.parametrize("args, says", [(["--code", "3"], "--code 3: must be in 1..2"),
                                        (["--code", "0"], "--code 0"),
                                        (["--code", "1", "--rows", "2"], "cannot be combined with --rows")])
def test_bad_code_is_one_line(checkpoint, cli, tmp_path, args, says):
    out = tmp_path / "x.npz"
    r = cli("interpolate", checkpoint, *args, "-o", out, "--device", "cpu")
    assert r.code == 2 and says in r.err and len(r.err.strip().splitlines()) == 1, r.err
    assert not out.exists()


def test_code_on_a_model_without_codes_is_refused(shapes, cli, tmp_path):
    ckpt = train(_config("dcgan", shapes, tmp_path / "run"))
    out = tmp_path / "x.npz"
    r = cli("interpolate", ckpt, "--code", "1", "-o", out, "--device", "cpu")
    assert r.code == 2 and "has no continuous latent codes" in r.err and len(r.err.strip().splitlines()) == 1, r.err
    assert not out.exists()


def test_bad_code_settings_are_refused(shapes, cli, tmp_path):
    r = cli("train", "infogan", "--data", shapes, "--steps", "1", "-b", "8", "--set", "cat_codes=[1]", "--device", "cpu",
            "--out", tmp_path / "run")
    assert r.code == 2 and "cat_codes" in r.err and len(r.err.strip().splitlines()) == 1, r.err
    r = cli("train", "infogan", "--data", shapes, "--steps", "1", "-b", "8", "--updates", "simultaneous", "--device", "cpu",
            "--out", tmp_path / "run2")
    assert r.code == 2 and "alternating" in r.err, r.err
    r = cli("train", "infogan", "--data", shapes, "--steps", "1", "-b", "8", "--set", "noise=gaussian", "--device", "cpu",
            "--out", tmp_path / "run3")
    assert r.code == 2 and "noise 'gaussian'" in r.err and len(r.err.strip().splitlines()) == 1, r.err


@pytest.mark.parametrize("suffix", ["npz", "h5"])
def test_sample_writes_the_codes_beside_z(checkpoint, cli, tmp_path, suffix):
    out = tmp_path / f"s.{suffix}"
    r = cli("sample", checkpoint, "-n", "5", "--seed", "6", "-b", "2", "-o", out, "--device", "cpu")
    assert r.code == 0, r.err
    if suffix == "npz":
        got = dict(np.load(out))
    else:
        import h5py

        with h5py.File(out) as f:
            got = {k: f[k][()] for k in f}
    drawn = load_objective(load_checkpoint(checkpoint))[1].draw(5, np.random.default_rng(6))
    for name in ("z", "c_cat", "c_cont"):
        assert np.array_equal(got[name], drawn[name].numpy()), name
