"""The registry contract: every model `gantools train` trains passes these, with no test of its own needed:
a few steps on tiny data, a checkpoint that names what it holds, an exact resume, `sample` drawing through
the model's prior, `interpolate`, and the stream into `evaluate -`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from gantools.checkpoint import load_checkpoint, save_checkpoint
from gantools.data import toy
from gantools.generate import load_objective
from gantools.registry import MODELS
from gantools.train import TrainConfig, declared_hparams, resume, train

TRAINED = [name for name, spec in MODELS if spec.trainer == "gan"]
STEPS = 2


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> dict[str, str]:
    """A data source per data kind: 32 labelled toy shapes (4 classes) as .npz; the toy ring."""
    root = tmp_path_factory.mktemp("contract-data")
    images, labels = toy.shapes(n=32, seed=2)
    np.savez(root / "shapes.npz", images=images, labels=labels)
    return {"image": str(root / "shapes.npz"), "vector": "toy:ring"}


# narrow networks where a model declares these widths, and a short pretraining phase (bagan's autoencoder), to
# keep the suite fast; others train as registered
NARROW = {"ngf": 8, "ndf": 8, "hidden": 16, "ae_steps": 2}


def _config(name: str, data: dict, out: Path, steps: int) -> TrainConfig:
    spec = MODELS.get(name)
    hparams = {k: v for k, v in NARROW.items() if k in declared_hparams(spec)}
    return TrainConfig(model=name, data=data[spec.data_kind], steps=steps, batch_size=8, device="cpu", hparams=hparams,
                       seed=5, ema=True, sample_every=steps, log_every=1, ckpt_every=100, out=str(out),
                       lr_horizon=2 * STEPS)  # a linear schedule decays over the whole run, resumed or not


def _assert_same(a, b, where: str) -> None:
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for k in a:
            _assert_same(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b), where
    else:
        assert a == b, (where, a, b)


@pytest.fixture(scope="module", params=TRAINED)
def trained(request, tmp_path_factory, tiny_data) -> tuple[str, Path, Path]:
    """(model, its run straight to 2 x STEPS, a run of STEPS resumed to 2 x STEPS)."""
    name, root = request.param, tmp_path_factory.mktemp(f"contract-{request.param}")
    straight = train(_config(name, tiny_data, root / "straight", 2 * STEPS))
    half = train(_config(name, tiny_data, root / "resumed", STEPS))
    assert load_checkpoint(half)["phase"]["step"] == STEPS  # adversarial steps (after any pretraining phase)
    return name, straight, resume(str(root / "resumed"), {"steps": 2 * STEPS})


@pytest.mark.slow
def test_checkpoint_names_what_it_holds_and_resume_is_exact(trained):
    name, straight_path, resumed_path = trained
    straight, resumed = load_checkpoint(straight_path), load_checkpoint(resumed_path)
    pretraining = straight["step"] - straight["phase"]["step"]  # steps of phases before the adversarial one
    assert straight["model"] == name and straight["phase"]["step"] == resumed["phase"]["step"] == 2 * STEPS
    assert straight["step"] == resumed["step"]
    state = straight["state"]
    assert straight["generator"] in straight["networks"] and f"{straight['generator']}_ema" in state
    assert set(straight["networks"]) | {f"opt_{o}" for o in straight["optimizers"]} <= set(state)
    assert {n for nets in straight["optimizers"].values() for n in nets} <= set(straight["networks"])
    assert {"D", "G"} <= set(straight["optimizers"])  # the adversarial phase's two optimisers
    _assert_same(straight["state"], resumed["state"], "state")
    _assert_same(straight["rng"], resumed["rng"], "rng")
    _assert_same(straight["prior"], resumed["prior"], "prior")
    assert straight["phase"] == resumed["phase"]
    logged = [row["step"] for row in resumed["metrics"]]
    assert logged == list(range(1, pretraining + 2 * STEPS + 1))
    assert all(np.isfinite(v) for row in resumed["metrics"] for v in row.values() if isinstance(v, float))
    run = straight_path.parent.parent
    assert (run / "samples" / f"step-{pretraining + 2 * STEPS:06d}.png").is_file()


@pytest.mark.slow
def test_sample_interpolate_and_evaluate(trained, cli, tmp_path, tiny_data):
    name, ckpt, _ = trained
    ck = load_checkpoint(ckpt)
    out = tmp_path / "s.npz"
    r = cli("sample", ckpt, "-n", "6", "--seed", "4", "-o", out, "--device", "cpu")
    assert r.code == 0, r.err
    got = np.load(out)
    _, prior = load_objective(ck)
    assert np.array_equal(got["z"], prior.draw(6, np.random.default_rng(4))["z"].numpy())  # through the prior
    if ck["data"]["kind"] != "image":
        assert got["x"].shape == (6, ck["data"]["dim"]) and np.isfinite(got["x"]).all()
        return
    res = ck["data"]["resolution"]
    assert got["images"].shape == (6, res, res, ck["data"]["channels"]) and got["images"].dtype == np.uint8
    frames = tmp_path / "walk.npz"
    r = cli("interpolate", ckpt, "--seeds", "4,5", "--steps", "3", "-o", frames, "--device", "cpu")
    assert r.code == 0, r.err
    walk = np.load(frames)
    assert walk["images"].shape[0] == 3
    # the path starts at seed 4's sample: the same image up to the README's bound for another batch
    # size (one level in under 0.1% of pixels: float sums in another order)
    diff = np.abs(walk["images"][0].astype(int) - got["images"][0].astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3, (diff.max(), (diff > 0).mean())
    stream = cli("sample", ckpt, "-n", "8", "-o", "-", "--device", "cpu")
    assert stream.code == 0, stream.err
    r = cli("evaluate", "-", "--real", tiny_data["image"], "--metrics", "fid", "--json", "--device", "cpu",
            stdin=stream.out)
    assert r.code == 0, r.err
    import json

    report = json.loads(r.out)
    assert np.isfinite(report["metrics"]["fid"]) and report["metrics"]["fid"] > 0
