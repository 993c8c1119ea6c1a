"""The registry, the checkpoint format, atomic writes and the refusal of pickled code."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest
import torch

from gantools import checkpoint as ck
from gantools.errors import GantoolsError, UsageError
from gantools.registry import LOSSES, MODELS


def test_registry_lists_models_and_losses(cli):
    assert {"gan", "dcgan"} <= set(MODELS.names())
    assert set(LOSSES.names()) >= {"ns", "ns-gp", "minimax", "lsgan", "hinge", "wgan-gp"}
    assert LOSSES.get("wgan-gp").gradient_penalty == LOSSES.get("ns-gp").gradient_penalty == 10.0
    assert LOSSES.get("wgan-gp").default_n_critic == LOSSES.get("ns-gp").default_n_critic == 5
    with pytest.raises(UsageError, match="unknown model 'nope'"):
        MODELS.get("nope")
    r = cli("models", "--json")
    assert r.code == 0
    table = json.loads(r.out)
    assert {m["name"] for m in table["models"]} >= {"gan", "dcgan"}
    dc = next(m for m in table["models"] if m["name"] == "dcgan")
    assert dc["data"] == "image" and dc["loss"] == "ns" and not dc["conditional"]


def test_the_models_table_shows_every_description_word_for_word(cli):
    r = cli("models")  # rich would read "[data, mask]" as markup and drop it
    assert r.code == 0, r.err
    shown = r.text.split()
    for _, spec in [*MODELS, *LOSSES]:
        words = spec.description.split()
        assert all(w in shown for w in words), (spec.description, [w for w in words if w not in shown])


def test_losses_have_the_right_optimum_direction():
    real, fake = torch.tensor([3.0]), torch.tensor([-3.0])
    for name in ("ns", "minimax", "lsgan", "hinge", "wgan-gp"):
        spec = LOSSES.get(name)
        # a discriminator that separates well has a lower loss than one fooled both ways
        assert spec.d_loss(real, fake) < spec.d_loss(fake, real), name
        # the generator's loss falls when D scores its samples as real
        assert spec.g_loss(real) < spec.g_loss(fake), name


def test_loss_values_are_the_published_formulas():
    """Each loss at a few D outputs against its paper's formula, written with math (not torch)."""
    import math

    real = [2.0, -0.5, 0.3]
    fake = [-1.5, 0.7, 4.0]
    sig = [1 / (1 + math.exp(-v)) for v in (*real, *fake)]
    s_real, s_fake = sig[:3], sig[3:]

    def mean(xs):
        return sum(xs) / len(xs)

    want = {  # name: (D loss, G loss)
        "ns": (mean([-math.log(p) for p in s_real]) + mean([-math.log(1 - q) for q in s_fake]),
               mean([-math.log(q) for q in s_fake])),
        "minimax": (mean([-math.log(p) for p in s_real]) + mean([-math.log(1 - q) for q in s_fake]),
                    mean([math.log(1 - q) for q in s_fake])),
        "lsgan": (0.5 * mean([(r - 1) ** 2 for r in real]) + 0.5 * mean([f ** 2 for f in fake]),
                  0.5 * mean([(f - 1) ** 2 for f in fake])),
        "hinge": (mean([max(0.0, 1 - r) for r in real]) + mean([max(0.0, 1 + f) for f in fake]),
                  -mean(fake)),
        "wgan-gp": (mean(fake) - mean(real), -mean(fake)),
    }
    want["ns-gp"] = want["ns"]  # its penalty is the training loop's, as wgan-gp's
    assert set(want) == set(LOSSES.names())  # a new loss needs its formula here
    r, f = torch.tensor(real, dtype=torch.float64), torch.tensor(fake, dtype=torch.float64)
    for name, (d_want, g_want) in want.items():
        spec = LOSSES.get(name)
        assert float(spec.d_loss(r, f)) == pytest.approx(d_want, rel=1e-12), name
        assert float(spec.g_loss(f)) == pytest.approx(g_want, rel=1e-12), name


def test_checkpoint_round_trip_and_info(tiny_dcgan, cli):
    data = ck.load_checkpoint(tiny_dcgan)
    assert data["format"] == ck.FORMAT and data["version"] == ck.VERSION
    assert data["model"] == "dcgan" and data["step"] == 3
    assert data["data"]["channels"] == 3 and data["data"]["resolution"] == 32
    assert data["data"]["class_names"] == ["circle", "square", "triangle", "cross"]
    assert {"G", "D", "opt_G", "opt_D"} <= set(data["state"])
    assert set(data["rng"]) >= {"z", "torch"}
    assert data["config"]["batch_size"] == 16 and data["metrics"]
    # plain torch can read it with weights_only=True: nothing but tensors and plain data
    torch.load(tiny_dcgan, weights_only=True)
    r = cli("info", tiny_dcgan, "--json")
    assert r.code == 0
    s = json.loads(r.out)
    assert s["model"] == "dcgan" and s["step"] == 3 and s["parameters"]["G"] > 0
    r = cli("info", tiny_dcgan)
    assert r.code == 0 and "dcgan" in r.text and "data.resolution" in r.text


class _Evil:
    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def test_malicious_checkpoint_is_refused_without_running_code(tmp_path, cli):
    marker = tmp_path / "pwned"
    evil = ck.new_checkpoint("dcgan", {}, {"kind": "image"}, {})
    evil["payload"] = _Evil(str(marker))
    path = tmp_path / "evil.pt"
    torch.save(evil, path)
    with pytest.raises(GantoolsError, match="refused"):
        ck.load_checkpoint(path)
    assert not marker.exists()
    r = cli("info", path)
    assert r.code == 1
    assert r.err.count("\n") == 1 and "evil.pt" in r.err and "refused" in r.err
    assert not marker.exists()
    # a plain pickle file (not even a torch zip) is refused before unpickling too
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps(_Evil(str(marker))))
    r = cli("sample", raw, "-n", "2", "-o", tmp_path / "x.npz")
    assert r.code == 1 and not marker.exists() and not (tmp_path / "x.npz").exists()


@pytest.mark.parametrize("content,needle", [
    (os.urandom(4096), "not a gantools checkpoint"),
    (b"", "not a gantools checkpoint"),
])
def test_not_a_checkpoint(tmp_path, cli, content, needle):
    p = tmp_path / "junk.pt"
    p.write_bytes(content)
    r = cli("info", p)
    assert r.code == 1 and needle in r.err and r.err.count("\n") == 1 and "junk.pt" in r.err
    out = tmp_path / "out.png"
    r = cli("sample", p, "-n", "2", "-o", out)
    assert r.code == 1 and not out.exists()


def test_unknown_version_and_foreign_torch_file(tmp_path, cli):
    p = tmp_path / "future.pt"
    future = ck.new_checkpoint("dcgan", {}, {"kind": "image"}, {})
    future["version"] = 99
    torch.save(future, p)
    r = cli("info", p)
    assert r.code == 1 and "version 99" in r.err
    q = tmp_path / "state_dict.pt"
    torch.save({"weight": torch.zeros(2)}, q)
    r = cli("info", q)
    assert r.code == 1 and "not a gantools checkpoint" in r.err


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    target = tmp_path / "c.pt"
    good = ck.new_checkpoint("gan", {"z_dim": 2}, {"kind": "vector"}, {"G": {"w": torch.ones(3)}})
    ck.save_checkpoint(good, target)
    before = target.read_bytes()

    def broken_save(obj, f, *a, **k):
        Path(f).write_bytes(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError):
        ck.save_checkpoint(good, target, overwrite=True)
    assert target.read_bytes() == before  # the old file is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]  # no temporary left behind


def _v1_checkpoint(tmp_path: Path, model: str, hparams: dict, data: dict, ema: bool) -> tuple[Path, torch.nn.Module]:
    """A checkpoint laid out as version 1 was (state G, D, opt_G, opt_D, G_ema; no networks, prior or
    phase keys), with freshly initialised networks; returns its path and the generator it holds."""
    spec = MODELS.get(model)
    torch.manual_seed(1)
    G, D = spec.build_generator(hparams, data), spec.build_discriminator(hparams, data)
    opt_G, opt_D = torch.optim.Adam(G.parameters()), torch.optim.Adam(D.parameters())
    state = {"G": G.state_dict(), "D": D.state_dict(), "opt_G": opt_G.state_dict(), "opt_D": opt_D.state_dict()}
    if ema:
        with torch.no_grad():  # an EMA copy that differs from G, to see which one sampling uses
            G_ema = spec.build_generator(hparams, data)
            G_ema.load_state_dict(G.state_dict())
            for p in G_ema.parameters():
                p.mul_(0.5)
        state["G_ema"] = G_ema.state_dict()
        G = G_ema
    v1 = {"format": ck.FORMAT, "version": 1, "gantools_version": "0.1.0", "created": "2026-11-01T00:00:00+00:00",
          "model": model, "hparams": hparams, "data": data, "state": state, "step": 7, "rng": {},
          "config": {}, "metrics": []}
    path = tmp_path / f"{model}-v1.pt"
    torch.save(v1, path)
    return path, G.eval()


def test_a_version_1_checkpoint_loads_as_version_2(tmp_path, cli):
    data = {"kind": "image", "channels": 1, "resolution": 32, "value_range": [-1, 1], "num_classes": 0,
            "class_names": [], "source": "test"}
    path, _ = _v1_checkpoint(tmp_path, "dcgan", {"z_dim": 8, "ngf": 4, "ndf": 4, "d_norm": "auto", "loss": "ns"},
                             data, ema=True)
    c = ck.load_checkpoint(path)
    assert c["version"] == 1 and c["networks"] == ["G", "D"] and c["generator"] == "G"
    assert c["optimizers"] == {"G": ["G"], "D": ["D"]} and c["prior"] == {}
    assert c["phase"] == {"name": "adversarial", "index": 0, "step": 7}
    r = cli("info", path, "--json")
    assert r.code == 0, r.err
    s = json.loads(r.out)
    assert s["networks"] == ["G", "D"] and s["parameters"]["G"] > 0 and s["parameters"]["D"] > 0
    r = cli("info", path)
    assert r.code == 0 and "G (generator)" in r.text and "G over G" in r.text and "standard normal" in r.text


@pytest.mark.parametrize("model,hparams,data,truncation", [
    ("dcgan", {"z_dim": 8, "ngf": 4, "ndf": 4, "d_norm": "auto", "loss": "ns"},
     {"kind": "image", "channels": 3, "resolution": 32, "value_range": [-1, 1], "num_classes": 0,
      "class_names": [], "source": "test"}, None),
    ("gan", {"z_dim": 4, "hidden": 16, "depth": 2, "loss": "ns"},  # no `pack`: declared after version 1
     {"kind": "vector", "dim": 2, "num_classes": 0, "source": "test"}, 1.5),
])
def test_sample_seed_of_a_version_1_checkpoint_is_what_it_was(tmp_path, cli, model, hparams, data, truncation):
    """`sample --seed S` draws the latents it always drew: row i of the seed's numpy PCG64 standard
    normal stream (or the inverse-CDF truncated normal), fed to the EMA generator; bit for bit."""
    import numpy as np
    from scipy.special import ndtr, ndtri

    path, G = _v1_checkpoint(tmp_path, model, hparams, data, ema=True)
    rng = np.random.default_rng(11)
    if truncation is None:
        z = rng.standard_normal((10, hparams["z_dim"]), dtype=np.float32)
    else:
        lo = ndtr(-truncation)
        z = ndtri(lo + rng.random((10, hparams["z_dim"])) * (1 - 2 * lo)).astype(np.float32)
    with torch.no_grad():
        want = G(torch.from_numpy(z))
    if model == "dcgan":
        want = ((want + 1) * 127.5).round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    out = tmp_path / "s.npz"
    args = ["--truncation", str(truncation)] if truncation else []
    r = cli("sample", path, "-n", "10", "--seed", "11", "-b", "10", "-o", out, "--device", "cpu", *args)
    assert r.code == 0, r.err
    got = np.load(out)
    assert np.array_equal(got["z"], z)
    assert np.array_equal(got["images" if model == "dcgan" else "x"], np.asarray(want))


@pytest.mark.parametrize("damage,needle", [
    (lambda c: c["hparams"].update(z_dim="abc"), "hparams.z_dim = 'abc'"),
    (lambda c: c["hparams"].update(ngf=0), "hparams.ngf = 0"),
    (lambda c: c.update(data=[1, 2]), "data is list"),
    (lambda c: c.update(hparams="x"), "hparams is str"),
    (lambda c: c.update(state=None), "state is NoneType"),
    (lambda c: c.update(model=3), "model is int"),
    (lambda c: c.update(config=5), "config is int"),
])
def test_a_damaged_checkpoint_is_one_line_naming_it(tiny_dcgan, tmp_path, cli, damage, needle):
    c = ck.load_checkpoint(tiny_dcgan)
    damage(c)
    p = tmp_path / "damaged.pt"
    torch.save(c, p)
    for args in (["info", p], ["info", "--json", p], ["sample", p, "-n", "2", "-o", tmp_path / "x.npz"]):
        r = cli(*args)
        assert r.code == 1 and r.err.count("\n") == 1 and "damaged.pt" in r.err and needle in r.err, (args, r.err)
    assert not (tmp_path / "x.npz").exists()


def test_a_checkpoint_whose_generator_cannot_be_built_is_one_line(tiny_dcgan, tmp_path, cli):
    c = ck.load_checkpoint(tiny_dcgan)
    c["data"]["channels"] = "three"
    p = tmp_path / "damaged.pt"
    torch.save(c, p)
    r = cli("sample", p, "-n", "2", "-o", tmp_path / "x.npz")
    assert r.code == 1 and r.err.count("\n") == 1 and "damaged checkpoint" in r.err, r.err
    assert not (tmp_path / "x.npz").exists()


def test_a_bit_flipped_checkpoint_is_refused_with_one_line_naming_it(tiny_dcgan, tmp_path, cli):
    import zipfile

    data = bytearray(Path(tiny_dcgan).read_bytes())
    mid = len(data) // 2
    data[mid:mid + 2000] = bytes(b ^ 0xFF for b in data[mid:mid + 2000])  # 2,000 bytes inverted mid-file
    p = tmp_path / "flipped.pt"
    p.write_bytes(bytes(data))
    with zipfile.ZipFile(p) as zf:
        assert zf.testzip() is not None  # the damage is in a member's data: its CRC no longer matches
    for args in (["info", p], ["sample", p, "-n", "2", "-o", tmp_path / "x.npz"],
                 ["interpolate", p, "--steps", "2", "-o", tmp_path / "y.npz"]):
        r = cli(*args)
        assert r.code == 1 and r.err.count("\n") == 1 and "flipped.pt" in r.err and "damaged" in r.err, (args, r.err)
    assert not (tmp_path / "x.npz").exists() and not (tmp_path / "y.npz").exists()
    with pytest.raises(GantoolsError, match="CRC"):
        ck.load_checkpoint(p)
