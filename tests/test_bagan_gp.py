"""bagan-gp (gantools/models/bagan_gp.py): the class-conditional autoencoder (L1, the decoder reads the label),
the transition (D's trunk from the encoder, class Gaussians of the codes), D's loss with real images under
wrong labels counted as fakes (and wgan-gp refused), `sample --class K`, and `balance --gan-model bagan-gp`.
The registry contract (tests/test_model_contract.py) covers its checkpoint, exact resume and commands."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import npz_images, run_cli
from gantools.checkpoint import load_checkpoint
from gantools.data import toy
from gantools.errors import UsageError
from gantools.models.bagan_gp import BAGANGPObjective
from gantools.registry import LOSSES, MODELS
from gantools.train import TrainConfig, train

TINY = {"ngf": 8, "ndf": 8}
AE_STEPS, STEPS = 20, 2


@pytest.fixture(scope="module")
def straight(shapes_npz, tmp_path_factory) -> Path:
    """AE_STEPS autoencoder steps and STEPS adversarial ones, a checkpoint halfway through the autoencoder."""
    cfg = TrainConfig(model="bagan-gp", data=str(shapes_npz), steps=STEPS, batch_size=16, device="cpu", seed=3, z_dim=8,
                      hparams={**TINY, "ae_steps": AE_STEPS}, sample_every=0, log_every=1, ckpt_every=AE_STEPS // 2, keep=10,
                      out=str(tmp_path_factory.mktemp("bagan-gp") / "run"))
    return train(cfg)


def _nets(ck: dict, batch_stats: bool = False) -> dict:
    """The checkpoint's networks; G's batch norm in eval mode, or with `batch_stats` on the batch's own
    statistics (a few steps leave its running ones near their start)."""
    nets = BAGANGPObjective(MODELS.get("bagan-gp"), ck["hparams"], ck["data"]).build_networks()
    for name, net in nets.items():
        net.load_state_dict(ck["state"][name])
        net.train(batch_stats and name == "G")
    return nets


def test_the_autoencoder_reads_the_label_and_the_transition_starts_d_from_the_encoder(straight, shapes_npz):
    """At the transition D's trunk is a copy of E's and the class Gaussians are those of E's codes; the
    decoder's L1 error fell during the autoencoder phase, which trained its label embedding too; and its
    reconstruction depends on the label."""
    folder = straight.parent
    before, at = (load_checkpoint(folder / f"step-{s:06d}.pt") for s in (AE_STEPS // 2, AE_STEPS))
    assert before["phase"]["name"] == "autoencode" and at["phase"] == {"name": "adversarial", "index": 1, "step": 0}
    trunk = lambda ck, net: {k: v for k, v in ck["state"][net].items() if k.startswith("trunk.")}  # noqa: E731
    assert all(torch.equal(v, trunk(at, "E")[k]) for k, v in trunk(at, "D").items())
    assert not all(torch.equal(v, trunk(before, "E")[k]) for k, v in trunk(before, "D").items())
    x, y = npz_images(shapes_npz)
    errors = []
    for ck in (before, at):
        nets = _nets(ck, batch_stats=True)
        with torch.no_grad():
            errors.append(float(F.l1_loss(nets["G"](nets["E"](x), y), x)))
    assert errors[1] < errors[0]
    nets = _nets(at, batch_stats=True)
    with torch.no_grad():
        codes = nets["E"](x).double()
        assert not torch.allclose(nets["G"](codes.float(), y), nets["G"](codes.float(), (y + 1) % 4))
    assert not torch.equal(before["state"]["G"]["embed.weight"], at["state"]["G"]["embed.weight"])
    for k in range(4):
        assert torch.allclose(at["prior"]["mean"][k].double(), codes[y == k].mean(0), atol=1e-5)


def test_the_critic_counts_real_images_under_wrong_labels_as_fakes():
    """D's loss is the registry loss with G's images and the real images under a wrong label as the fakes;
    the wrong label is the drawn one unless it is the image's own, then the next class."""
    data = {"kind": "image", "channels": 3, "resolution": 32, "num_classes": 4}
    hp = {**MODELS.get("bagan-gp").defaults, **TINY, "z_dim": 8}
    obj = BAGANGPObjective(MODELS.get("bagan-gp"), hp, data, LOSSES.get("ns-gp"))
    torch.manual_seed(0)
    nets = obj.build_networks()
    real, fake = torch.randn(6, 3, 32, 32), torch.randn(6, 3, 32, 32)
    labels, drawn = torch.tensor([0, 1, 2, 3, 0, 1]), torch.tensor([3, 1, 1, 0, 0, 2])
    wrong = torch.tensor([3, 2, 1, 0, 1, 2])
    assert not (wrong == labels).any()
    with torch.no_grad():
        d = obj.d_step(nets, real, labels, fake, {"y": drawn}, with_g=True)
        out_real, out_fake, out_wrong = nets["D"](real, labels), nets["D"](fake, drawn), nets["D"](real, wrong)
    want = F.softplus(-out_real).mean() + (F.softplus(out_fake).mean() + F.softplus(out_wrong).mean()) / 2
    assert torch.allclose(d.loss, want, atol=1e-5)
    assert torch.allclose(d.loss_g, F.softplus(-out_fake).mean(), atol=1e-5)
    assert torch.allclose(d.real_scores, out_real, atol=1e-5)
    assert float(d.logs["d_mismatch"]) == pytest.approx(float(torch.sigmoid(out_wrong).mean()), abs=1e-5)
    assert not torch.allclose(nets["D"](real, labels), nets["D"](real, wrong))  # the label reaches the score
    with pytest.raises(UsageError, match="--loss wgan-gp"):
        BAGANGPObjective(MODELS.get("bagan-gp"), hp, data, LOSSES.get("wgan-gp"))


def test_sample_class_k_is_g_of_class_k_gaussian_and_label(straight, tmp_path):
    out = tmp_path / "s.npz"
    r = run_cli("sample", straight, "-n", "5", "--class", "2", "--seed", "7", "-o", out, "--device", "cpu")
    assert r.code == 0, r.err
    got = np.load(out)
    assert (got["labels"] == 2).all()
    ck = load_checkpoint(straight)
    G = _nets(ck)["G"]
    mean, tril = ck["prior"]["mean"][2], ck["prior"]["scale_tril"][2]
    with torch.no_grad():
        want = G(mean + torch.from_numpy(got["z"]) @ tril.T, torch.full((5,), 2))
    want = ((want + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    assert np.abs(want.astype(int) - got["images"].astype(int)).max() <= 1


def test_balance_fills_each_class_with_bagan_gp(tmp_path):
    x, y = toy.shapes(n=200, seed=5)
    keep = np.sort(np.concatenate([np.flatnonzero(y == k)[:n] for k, n in enumerate([10, 6, 3, 2])]))
    np.savez(tmp_path / "skew.npz", images=x[keep], labels=y[keep])
    out = tmp_path / "out.npz"
    r = run_cli("balance", tmp_path / "skew.npz", "-o", out, "--gan-model", "bagan-gp", "--steps", "2", "--batch-size",
                "8", "--set", "ngf=8", "--set", "ndf=8", "--set", "ae_steps=2", "--json", "--manifest", tmp_path / "m.csv")
    assert r.code == 0, r.err
    got = np.load(out)
    assert np.bincount(got["labels"]).tolist() == [10] * 4
    assert np.bincount(got["labels"][got["generated"]], minlength=4).tolist() == [0, 4, 7, 8]
    assert [row["generated"] for row in json.loads(r.text)["classes"]] == [0, 4, 7, 8]


def test_one_class_is_refused_in_one_line(tmp_path):
    x, _ = toy.shapes(n=16, seed=1)
    np.savez(tmp_path / "one.npz", images=x, labels=np.zeros(16, dtype=np.int64))
    r = run_cli("train", "bagan-gp", "--data", tmp_path / "one.npz", "--steps", "1", "-b", "8", "-o", tmp_path / "run")
    assert r.code == 1 and len(r.err.strip().splitlines()) == 1, r.err
    assert "bagan-gp needs at least 2 classes" in r.err and not (tmp_path / "run").exists()
