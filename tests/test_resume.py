"""Resuming is exact: K steps + resume to 2K equal 2K steps straight, bit for bit on the CPU, for every
model, loss, regulariser, schedule, update scheme and data path; and the options that shape a resume."""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import TINY_DCGAN
from gantools.checkpoint import load_checkpoint, save_checkpoint
from gantools.data import toy
from gantools.data.sources import LazyImages, open_source
from gantools.train import TrainConfig, resume, train

K = 3
SHAPES_N = 40  # small sets: epochs of a few steps, so that runs cross epoch boundaries
DCGAN = dict(model="dcgan", data="shapes.npz", batch_size=8, hparams=dict(TINY_DCGAN))
GAN = dict(model="gan", data="toy:ring", batch_size=16)  # the registry recipe: linear decay, R1, alternating

CASES = {
    "gan": GAN,
    "gan-simultaneous": {**GAN, "updates": "simultaneous"},
    "dcgan-toy-shapes": {**DCGAN, "data": "toy:shapes"},
    "dcgan-minimax": {**DCGAN, "loss": "minimax"},
    "dcgan-lsgan": {**DCGAN, "loss": "lsgan"},
    "dcgan-hinge": {**DCGAN, "loss": "hinge"},
    "dcgan-wgan-gp": {**DCGAN, "loss": "wgan-gp"},  # 5 critic steps of 8 images: one epoch of 40 a step
    "dcgan-r1": {**DCGAN, "r1": 0.5},
    "dcgan-ema": {**DCGAN, "ema": True, "ema_decay": 0.9},
    "dcgan-linear": {**DCGAN, "lr_schedule": "linear"},
    "dcgan-alternating": {**DCGAN, "updates": "alternating"},
    "dcgan-simultaneous": {**DCGAN, "updates": "simultaneous"},
    "dcgan-streaming": {**DCGAN, "data": "shapes-folder", "ema": True},  # decoded through a DataLoader
    "dcgan-checkpoint-at-epoch-end": {**DCGAN, "batch_size": 13},  # 3 steps an epoch: step K ends epoch 0
}


@pytest.fixture(scope="module")
def small_shapes(tmp_path_factory) -> Path:
    """SHAPES_N toy shapes as shapes.npz and as shapes-folder/ (PNG files, which can stream)."""
    root = tmp_path_factory.mktemp("data")
    images, labels = toy.shapes(n=SHAPES_N, seed=1)
    np.savez(root / "shapes.npz", images=images, labels=labels)
    folder = root / "shapes-folder"
    folder.mkdir()
    for i, img in enumerate(images):
        Image.fromarray(img).save(folder / f"{i:03d}.png")
    return root


def _config(case: dict, root: Path, run: Path, **extra) -> TrainConfig:
    data = case["data"] if case["data"].startswith("toy:") else str(root / case["data"])
    return TrainConfig(**{**case, "data": data, "device": "cpu", "seed": 3, "sample_every": 0, "log_every": 1,
                          "ckpt_every": 100, "out": str(run), **extra})


def assert_same(a, b, where: str = "") -> None:
    """Equal trees of dicts, lists and tensors: tensors by torch.equal (same dtype, shape, every bit)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), (where, a.keys(), b.keys() if isinstance(b, dict) else b)
        for k in a:
            assert_same(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    else:
        assert a == b, (where, a, b)


@pytest.mark.parametrize("name", CASES)
def test_k_steps_resumed_to_2k_equal_2k_straight(tmp_path, small_shapes, monkeypatch, name):
    case = CASES[name]
    monkeypatch.setattr(toy, "shapes", functools.cache(toy.shapes))  # toy:shapes is made once, not per run
    streamed = []
    if case["data"] == "shapes-folder":
        monkeypatch.setenv("GANTOOLS_MEMORY_BUDGET", "1k")  # 40 images of 3 KiB: over the budget
        real_batches = LazyImages.batches
        monkeypatch.setattr(LazyImages, "batches", lambda *a: streamed.append(1) or real_batches(*a))
        assert open_source(str(small_shapes / case["data"])).images is None

    straight = load_checkpoint(train(_config(case, small_shapes, tmp_path / "straight", steps=2 * K)))
    half = load_checkpoint(train(_config(case, small_shapes, tmp_path / "resumed", steps=K, lr_horizon=2 * K)))
    resumed = load_checkpoint(resume(str(tmp_path / "resumed"), {"steps": 2 * K}))

    assert half["step"] == K and resumed["step"] == straight["step"] == 2 * K
    assert any(not torch.equal(v, straight["state"]["G"][k]) for k, v in half["state"]["G"].items())  # K..2K trained
    assert ("G_ema" in straight["state"]) == bool(case.get("ema"))
    for part in ("G", "D", "G_ema", "opt_G", "opt_D"):
        assert_same(straight["state"].get(part), resumed["state"].get(part), part)
    assert_same(straight["rng"], resumed["rng"], "rng")
    assert {**straight["config"], "out": None} == {**resumed["config"], "out": None}
    assert straight["config"]["lr_horizon"] == 2 * K
    assert [m["step"] for m in resumed["metrics"]] == [m["step"] for m in straight["metrics"]] == list(range(1, 2 * K + 1))
    if streamed:  # one DataLoader per epoch: the straight run's and the resumed run's
        assert len(streamed) >= 3
    if name == "dcgan-checkpoint-at-epoch-end":
        assert (half["rng"]["epoch"], half["rng"]["epoch_pos"]) == (0, K)
        assert resumed["rng"]["epoch"] == 1
    elif case["data"] != "toy:ring" and case["data"] != "toy:shapes":
        assert resumed["rng"]["epoch"] >= 1  # the run crossed an epoch boundary after the resume


def test_a_linear_schedule_decays_to_its_horizon(tmp_path, small_shapes):
    """The rate of step s is lr * (1 - s / horizon), whatever --steps is."""
    case = {**DCGAN, "lr_schedule": "linear", "lr_g": 1e-3, "lr_d": 2e-3}
    ck = load_checkpoint(train(_config(case, small_shapes, tmp_path / "run", steps=K, lr_horizon=4 * K)))
    scale = 1 - (K - 1) / (4 * K)  # the rate of the last step done
    assert [g["lr"] for g in ck["state"]["opt_G"]["param_groups"]] == [1e-3 * scale]
    assert [g["lr"] for g in ck["state"]["opt_D"]["param_groups"]] == [2e-3 * scale]


def test_a_run_may_not_go_past_its_linear_horizon(cli, tmp_path, small_shapes):
    data, run = small_shapes / "shapes.npz", tmp_path / "run"
    tiny = ["--batch-size", "8", "--device", "cpu", "--sample-every", "0"]
    r = cli("train", "gan", "--data", "toy:ring", "--steps", "6", "--lr-horizon", "3", "--out", run, *tiny)
    assert r.code == 2 and r.out == b"" and not run.exists(), r.err
    assert r.err.strip().splitlines() == ["gantools train: error: 6 steps go past --lr-horizon 3, where the linear "
                                          "learning-rate schedule reaches 0 (later steps would not train); set "
                                          "--lr-horizon 6 or more"]
    # a constant rate has no horizon to pass
    r = cli("train", "dcgan", "--data", data, "--steps", "2", "--lr-horizon", "1", "--out", run, "--config",
            _tiny_toml(tmp_path), *tiny)
    assert r.code == 0, r.err

    r = cli("train", "gan", "--data", "toy:ring", "--steps", "2", "--out", tmp_path / "gan", *tiny)
    assert r.code == 0, r.err
    before = load_checkpoint(tmp_path / "gan" / "checkpoints" / "last.pt")
    r = cli("train", "--resume", tmp_path / "gan", "--steps", "4")
    assert r.code == 2 and "4 steps go past --lr-horizon 2" in r.err and len(r.err.strip().splitlines()) == 1, r.err
    assert_same(load_checkpoint(tmp_path / "gan" / "checkpoints" / "last.pt")["state"], before["state"])
    # a later horizon given on resume: the rate follows it from the resumed step on
    r = cli("train", "--resume", tmp_path / "gan", "--steps", "4", "--lr-horizon", "8")
    assert r.code == 0, r.err
    ck = load_checkpoint(r.text.strip())
    assert ck["step"] == 4 and ck["config"]["lr_horizon"] == 8
    assert ck["state"]["opt_G"]["param_groups"][0]["lr"] == ck["config"]["lr_g"] * (1 - 3 / 8)


def _tiny_toml(tmp_path: Path) -> Path:
    cfg = tmp_path / "tiny.toml"
    cfg.write_text("[hparams]\n" + "".join(f"{k} = {v}\n" for k, v in TINY_DCGAN.items()))
    return cfg


def test_an_old_checkpoint_resumes_with_its_steps_as_horizon(tmp_path, small_shapes):
    """Checkpoints written before lr_horizon existed decayed to their config's `steps`."""
    case = {**DCGAN, "lr_schedule": "linear"}
    straight = load_checkpoint(train(_config(case, small_shapes, tmp_path / "a", steps=2 * K)))
    train(_config(case, small_shapes, tmp_path / "b", steps=2 * K, ckpt_every=K))
    old = tmp_path / "b" / "checkpoints" / f"step-{K:06d}.pt"
    ck = load_checkpoint(old)
    del ck["config"]["lr_horizon"]
    save_checkpoint(ck, old, overwrite=True)
    resumed = load_checkpoint(resume(str(old), {}))
    assert resumed["step"] == 2 * K and resumed["config"]["lr_horizon"] == 2 * K
    for part in ("G", "D", "opt_G", "opt_D"):
        assert_same(straight["state"][part], resumed["state"][part], part)


def test_a_resume_rebuilds_the_runs_networks_not_todays_defaults(tmp_path, small_shapes):
    """dcgan's default `upsample` changed from deconv to resize: a checkpoint written before the key existed
    trained transposed convolutions, and its resume must rebuild those (today's default would not load)."""
    deconv = {**DCGAN, "hparams": {**TINY_DCGAN, "upsample": "deconv"}}
    straight = load_checkpoint(train(_config(deconv, small_shapes, tmp_path / "a", steps=2 * K)))
    train(_config(deconv, small_shapes, tmp_path / "b", steps=K))
    old = tmp_path / "b" / "checkpoints" / "last.pt"
    ck = load_checkpoint(old)
    del ck["hparams"]["upsample"]  # as written before the option
    ck["config"]["hparams"] = dict(TINY_DCGAN)
    save_checkpoint(ck, old, overwrite=True)
    resumed = load_checkpoint(resume(str(old), {"steps": 2 * K}))
    assert "upsample" not in resumed["hparams"]
    for part in ("G", "D", "opt_G", "opt_D"):
        assert_same(straight["state"][part], resumed["state"][part], part)


def test_epochs_on_resume_are_the_new_total(cli, tmp_path, small_shapes):
    data, run = small_shapes / "shapes.npz", tmp_path / "run"
    common = ["--batch-size", "8", "--device", "cpu", "--sample-every", "0", "--config", _tiny_toml(tmp_path)]
    steps_per_epoch = SHAPES_N // 8
    r = cli("train", "dcgan", "--data", data, "--epochs", "1", "--out", run, *common)
    assert r.code == 0, r.err
    assert load_checkpoint(r.text.strip())["step"] == steps_per_epoch
    r = cli("train", "--resume", run, "--epochs", "2.5")
    assert r.code == 0, r.err
    ck = load_checkpoint(r.text.strip())
    # the resolved config names the run's length once, as steps (so its config.toml reads back with --config)
    assert ck["step"] == math.ceil(2.5 * steps_per_epoch) and ck["config"]["epochs"] is None
    assert ck["config"]["steps"] == ck["step"]
    r = cli("train", "--resume", run, "--epochs", "4", "--steps", "30")
    assert r.code == 2 and r.err.strip().splitlines() == [
        "gantools train: error: --resume: give the new total as --steps or as --epochs, not both"], r.err
    r = cli("train", "--resume", run, "--steps", "14")
    assert r.code == 0, r.err
    ck = load_checkpoint(r.text.strip())
    assert ck["step"] == 14 and ck["config"]["epochs"] is None


class _ScaledPrior:
    """A prior with a tensor of its own (kept in checkpoints): z ~ N(0, scale^2 I)."""

    def __init__(self, z_dim: int):
        from gantools.objective import GaussianPrior

        self.base = GaussianPrior(z_dim)
        self.tensors = {"scale": torch.full((z_dim,), 0.5)}

    def fit(self, labels) -> None:
        self.tensors["scale"] = torch.full_like(self.tensors["scale"], 0.25)  # set from the data at the start

    def draw(self, n, generator, labels=None, truncation=None, temperature=None):
        z = self.base.draw(n, generator, truncation=truncation, temperature=temperature)["z"]
        return {"z": z * self.tensors["scale"].to(z.device)}

    def state_dict(self):
        return dict(self.tensors)

    def load_state_dict(self, tensors) -> None:
        self.tensors.update(tensors)


@pytest.fixture
def two_phase_model(monkeypatch):
    """A test-only model with an encoder E and two phases: `autoencode` (E and G learn to reconstruct the
    data, on their own optimiser) for `ae_steps` steps, then the adversarial phase."""
    from torch import nn

    from gantools.models import dcgan
    from gantools.objective import GANObjective, Phase
    from gantools.registry import MODELS, ModelSpec

    class TwoPhase(GANObjective):
        def build_networks(self):
            d = self.data
            encoder = nn.Sequential(nn.Flatten(), nn.Linear(d["channels"] * d["resolution"] ** 2, self.hparams["z_dim"]))
            return {**super().build_networks(), "E": encoder}

        def optimizers(self):
            return {**super().optimizers(), "AE": (("E", "G"), "lr_g")}

        def phases(self):
            return [Phase("autoencode", self.hparams["ae_steps"], optimizer="AE"), Phase("adversarial")]

        def build_prior(self):
            return _ScaledPrior(self.hparams["z_dim"])

        def phase_loss(self, phase, nets, real, labels, inputs):
            rec = nets["G"](nets["E"](real))
            return (rec - real).pow(2).mean(), {"code_norm": inputs["z"].norm(dim=1).mean()}

    MODELS.names()  # the real models first, then ours for this test only
    spec = ModelSpec(name="twophase", description="test only", data_kind="image",
                     build_generator=dcgan.build_generator, build_discriminator=dcgan.build_discriminator,
                     objective=TwoPhase, resolutions=dcgan.RESOLUTIONS,
                     defaults={"z_dim": 8, **TINY_DCGAN, "d_norm": "auto", "ae_steps": 4})
    monkeypatch.setitem(MODELS._entries, "twophase", spec)
    return spec


def test_two_phases_resume_exactly_mid_phase(tmp_path, small_shapes, two_phase_model):
    """4 autoencoder steps, then 4 adversarial ones; resumed from step 2 (mid-autoencoder) and from step 6
    (mid-adversarial), each run ends where the straight one does, bit for bit."""
    from gantools.generate import generate_batches, latents, load_objective
    from gantools.interpolate import plan

    case = {**DCGAN, "model": "twophase", "hparams": {}, "ema": True, "ema_decay": 0.9}
    last = train(_config(case, small_shapes, tmp_path / "straight", steps=4, ckpt_every=2, keep=10))
    straight = load_checkpoint(last)
    assert straight["step"] == 8 and straight["networks"] == ["G", "D", "E"]
    assert straight["optimizers"] == {"G": ["G"], "D": ["D"], "AE": ["E", "G"]}
    cks = {s: load_checkpoint(last.parent / f"step-{s:06d}.pt") for s in (2, 4, 6)}
    assert cks[2]["phase"] == {"name": "autoencode", "index": 0, "step": 2}
    assert cks[6]["phase"] == {"name": "adversarial", "index": 1, "step": 2}
    assert_same(cks[2]["state"]["D"], cks[4]["state"]["D"], "D")  # the autoencoder phase leaves D alone
    assert any(not torch.equal(v, cks[4]["state"]["E"][k]) for k, v in cks[2]["state"]["E"].items())
    assert torch.equal(straight["prior"]["scale"], torch.full((8,), 0.25))  # fitted at the start, kept
    rows = straight["metrics"]
    assert [r["phase"] for r in rows] == ["autoencode"] * 4 + ["adversarial"] * 4
    assert {"loss_autoencode", "code_norm"} <= set(rows[0]) and {"loss_d", "loss_g", "d_real"} <= set(rows[-1])
    for s in (2, 6):
        run = tmp_path / f"from-{s}"
        (run / "checkpoints").mkdir(parents=True)
        save_checkpoint(cks[s], run / "checkpoints" / "last.pt")
        resumed = load_checkpoint(resume(str(run), {}))
        assert resumed["step"] == 8
        assert_same(straight["state"], resumed["state"], f"state from {s}")
        assert_same(straight["rng"], resumed["rng"], f"rng from {s}")
        assert_same(straight["prior"], resumed["prior"], f"prior from {s}")
    # the commands draw G's inputs through the checkpoint's prior too: sample, and interpolate's endpoints
    (_, _, z), = generate_batches(straight, 5, seed=9, batch_size=5)
    assert np.array_equal(z, latents(9, 5, 8) * np.float32(0.25))
    walk = plan(8, 3, seeds=[9, 4], prior=load_objective(straight)[1]).arrays()["z"]
    assert np.array_equal(walk[0], z[0]) and np.array_equal(walk[-1], latents(4, 1, 8)[0] * np.float32(0.25))
