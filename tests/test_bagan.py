"""bagan (gantools/models/bagan.py): the autoencoder phase, the transition (class Gaussians fitted to the
encoder's codes, D's trunk from the encoder), D's N+1-way loss, exact resume through both phases, and
`sample --class K` drawing from class K's Gaussian."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import npz_images
from gantools.checkpoint import load_checkpoint, save_checkpoint
from gantools.errors import GantoolsError, UsageError
from gantools.models.bagan import BAGANObjective, ClassGaussians
from gantools.registry import LOSSES, MODELS
from gantools.train import TrainConfig, resume, train

TINY = {"ngf": 8, "ndf": 8, "hidden": 32, "z_dim": 8}
AE_STEPS, STEPS = 4, 4


def _config(data: Path, out: Path, steps: int = STEPS, **extra) -> TrainConfig:
    hp = {k: v for k, v in TINY.items() if k != "z_dim"}
    return TrainConfig(model="bagan", data=str(data), steps=steps, batch_size=16, device="cpu", seed=3, z_dim=TINY["z_dim"],
                       hparams={**hp, "ae_steps": AE_STEPS}, sample_every=0, log_every=1, out=str(out), **extra)


@pytest.fixture(scope="module")
def straight(shapes_npz, tmp_path_factory) -> Path:
    """A run of AE_STEPS autoencoder steps and STEPS adversarial ones, a checkpoint every 2 steps."""
    return train(_config(shapes_npz, tmp_path_factory.mktemp("bagan") / "run", ckpt_every=2, keep=10))


def _nets(ck: dict) -> tuple[BAGANObjective, dict]:
    obj = BAGANObjective(MODELS.get("bagan"), ck["hparams"], ck["data"])
    nets = obj.build_networks()
    for name, net in nets.items():
        net.load_state_dict(ck["state"][name])
        net.eval()
    return obj, nets


def test_class_gaussians_are_the_codes_mean_and_covariance(straight, shapes_npz):
    """The prior's per-class mean and covariance are those of E's codes of the class's images (E, trained
    only in the autoencoder phase, is the final checkpoint's); the classes' means differ."""
    ck = load_checkpoint(straight)
    _, nets = _nets(ck)
    x, y = npz_images(shapes_npz)
    with torch.no_grad():
        codes = nets["E"](x).double()
    mean, tril = ck["prior"]["mean"].double(), ck["prior"]["scale_tril"].double()
    for k in range(4):
        assert torch.allclose(mean[k], codes[y == k].mean(0), atol=1e-5)
        cov = torch.cov(codes[y == k].T)
        assert torch.allclose(tril[k] @ tril[k].T, cov, atol=1e-4 * float(cov.diagonal().mean()) + 1e-6)
    between = torch.cdist(mean, mean)[~torch.eye(4, dtype=bool)]
    within = torch.stack([codes[y == k].std(0).mean() for k in range(4)]).mean()
    assert between.min() > 0.1 * within, (between, within)
    assert torch.equal(ck["prior"]["class_freq"], torch.full((4,), 0.25))  # G's classes drawn uniformly


def test_transition_inits_d_from_the_encoder_and_g_is_the_trained_decoder(straight, shapes_npz):
    """Before the transition D's trunk is its initialisation; at it, a copy of E's trunk. G is the decoder
    the autoencoder phase trained: it reconstructs E's codes better than at the first checkpoint."""
    folder = straight.parent
    before, at = load_checkpoint(folder / "step-000002.pt"), load_checkpoint(folder / "step-000004.pt")
    assert before["phase"]["name"] == "autoencode" and at["phase"] == {"name": "adversarial", "index": 1, "step": 0}
    trunk = lambda ck, net: {k: v for k, v in ck["state"][net].items() if k.startswith("trunk.")}  # noqa: E731
    assert all(torch.equal(v, trunk(at, "E")[k]) for k, v in trunk(at, "D").items())
    assert not all(torch.equal(v, trunk(before, "E")[k]) for k, v in trunk(before, "D").items())
    assert before["optimizers"]["AE"] == ["E", "G"]
    x, _ = npz_images(shapes_npz)
    errors = []
    for ck in (before, at):
        _, nets = _nets(ck)
        with torch.no_grad():
            errors.append(float(F.mse_loss(nets["G"](nets["E"](x)), x)))
    assert errors[1] < errors[0]


def test_d_has_n_plus_1_outputs_and_the_papers_losses():
    """D's loss: N/(N+1) x its class cross-entropy on reals + 1/(N+1) x "fake" on fakes (the paper's batch of
    N reals to one fake); G's: the cross-entropy of D's answer against the drawn class."""
    data = {"kind": "image", "channels": 3, "resolution": 32, "num_classes": 4}
    hp = {**MODELS.get("bagan").defaults, **TINY, "dropout": 0.0}
    obj = BAGANObjective(MODELS.get("bagan"), hp, data, LOSSES.get("ns"))
    torch.manual_seed(0)
    nets = obj.build_networks()
    obj.build_prior()
    real, fake = torch.randn(6, 3, 32, 32), torch.randn(6, 3, 32, 32)
    labels, drawn = torch.tensor([0, 1, 2, 3, 0, 1]), torch.tensor([3, 2, 1, 0, 3, 2])
    out_real, out_fake = nets["D"](real), nets["D"](fake)
    assert out_real.shape == (6, 5)
    d = obj.d_step(nets, real, labels, fake, {"y": drawn}, with_g=True)
    want = (4 * F.cross_entropy(out_real, labels) + F.cross_entropy(out_fake, torch.full((6,), 4))) / 5
    assert torch.allclose(d.loss, want)
    assert torch.allclose(d.loss_g, F.cross_entropy(out_fake, drawn))
    loss_g, logs = obj.g_step(nets, fake, {"y": drawn})
    assert torch.allclose(loss_g, F.cross_entropy(out_fake, drawn))
    assert float(logs["fake_as_drawn"]) == float((out_fake.argmax(1) == drawn).float().mean())
    with pytest.raises(UsageError, match="--loss hinge"):
        BAGANObjective(MODELS.get("bagan"), hp, data, LOSSES.get("hinge"))


@pytest.mark.slow
def test_resume_is_exact_in_both_phases_and_across_the_transition(straight, tmp_path, monkeypatch):
    """Resumed from step 2 (autoencoder: the transition happens once, in the resumed run), 4 (the transition's
    checkpoint: not redone) and 6 (adversarial), each run ends bit for bit where the straight one does."""
    calls = []
    original = BAGANObjective.end_phase
    monkeypatch.setattr(BAGANObjective, "end_phase", lambda self, phase, *a: calls.append(phase) or original(self, phase, *a))
    ref = load_checkpoint(straight)
    for s, transitions in ((2, ["autoencode"]), (4, []), (6, [])):
        calls.clear()
        run = tmp_path / f"from-{s}"
        (run / "checkpoints").mkdir(parents=True)
        save_checkpoint(load_checkpoint(straight.parent / f"step-{s:06d}.pt"), run / "checkpoints" / "last.pt")
        got = load_checkpoint(resume(str(run), {}))
        assert calls == transitions, s
        assert got["step"] == AE_STEPS + STEPS
        for key in ("state", "prior", "rng"):
            for name, value in ref[key].items():
                if isinstance(value, dict):
                    assert all(torch.equal(v, got[key][name][k]) for k, v in value.items() if torch.is_tensor(v)), (s, key, name)
                elif torch.is_tensor(value):
                    assert torch.equal(value, got[key][name]), (s, key, name)


def test_sample_class_k_draws_from_class_k(straight, cli, tmp_path):
    """`sample --class 2`: every label is 2 and every image is G(mean_2 + L_2 z) for the written z."""
    out = tmp_path / "s.npz"
    r = cli("sample", straight, "-n", "5", "--class", "2", "--seed", "7", "-o", out, "--device", "cpu")
    assert r.code == 0, r.err
    got = np.load(out)
    assert (got["labels"] == 2).all()
    ck = load_checkpoint(straight)
    _, nets = _nets(ck)
    mean, tril = ck["prior"]["mean"][2], ck["prior"]["scale_tril"][2]
    z = torch.from_numpy(got["z"])
    with torch.no_grad():
        want = nets["G"](mean + z @ tril.T)
    want = ((want + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    assert np.abs(want.astype(int) - got["images"].astype(int)).max() <= 1


def test_temperature_widens_class_k_gaussian_around_its_mean(straight, cli, tmp_path):
    """`sample --class 2 --temperature 1.5`: the same seed's z times 1.5, so G's latents lie 1.5 times as far
    from class 2's mean (its covariance times 1.5^2); images change, labels do not."""
    plain, hot = tmp_path / "plain.npz", tmp_path / "hot.npz"
    for out, extra in ((plain, []), (hot, ["--temperature", "1.5"])):
        r = cli("sample", straight, "-n", "6", "--class", "2", "--seed", "7", "-o", out, "--device", "cpu", *extra)
        assert r.code == 0, r.err
    a, b = np.load(plain), np.load(hot)
    assert np.allclose(b["z"], 1.5 * a["z"]) and (b["labels"] == 2).all()
    ck = load_checkpoint(straight)
    mean, tril = ck["prior"]["mean"][2], ck["prior"]["scale_tril"][2]
    objective = BAGANObjective(MODELS.get("bagan"), ck["hparams"], ck["data"])
    prior = objective.build_prior()
    prior.load_state_dict(ck["prior"])
    y = torch.full((6,), 2)
    near = prior.latent(torch.from_numpy(a["z"]), y) - mean
    far = prior.latent(torch.from_numpy(b["z"]), y) - mean
    assert torch.allclose(far, 1.5 * near, atol=1e-5) and torch.allclose(near, torch.from_numpy(a["z"]) @ tril.T, atol=1e-5)
    assert not np.array_equal(a["images"], b["images"])


def test_small_classes_are_shrunk_with_one_warning_and_a_single_image_is_refused(capsys):
    prior = ClassGaussians(8, 3)
    g = torch.Generator().manual_seed(0)
    codes = torch.randn(40, 8, generator=g)
    labels = torch.tensor([0] * 30 + [1] * 5 + [2] * 5)
    prior.fit_codes(codes, labels)
    err = capsys.readouterr().err
    assert err.count("warning") == 1 and "class 1 (5), 2 (5)" in err
    prior.fit_codes(codes, labels, ["cat", "dog", "fox"])  # the data spec's names, when the prior is given them
    assert "class dog (5), fox (5) has at most z_dim" in capsys.readouterr().err
    tril = prior.tensors["scale_tril"]
    assert torch.linalg.eigvalsh(tril[1] @ tril[1].T).min() > 0  # 5 codes in 8 dimensions: regularised
    assert torch.allclose(tril[0] @ tril[0].T, torch.cov(codes[:30].T), atol=1e-4)  # enough codes: as measured
    with pytest.raises(GantoolsError, match="at least 2 images per class; too few in class 2 \\(1\\)"):
        prior.fit(torch.tensor([0, 0, 1, 1, 2]))
