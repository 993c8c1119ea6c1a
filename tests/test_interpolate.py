"""`gantools interpolate` and gantools.interpolate: slerp/lerp, paths, every output kind, errors.

Uses the shared fixtures of tests/conftest.py (`cli`, `tiny_dcgan`); the conditional model
used for --class / --class-path is defined and registered here, for the tests only.
"""

from __future__ import annotations

import io
import os
import pty
import subprocess
import sys
import tarfile

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from gantools.errors import UsageError
from gantools.generate import latents
from gantools.interpolate import fractions, latent_path, lerp, parse_seeds, plan, slerp

GANTOOLS = [sys.executable, "-m", "gantools"]


def _angle(u: np.ndarray, v: np.ndarray) -> float:
    u, v = u.astype(np.float64), v.astype(np.float64)
    return float(np.arccos(np.clip(u @ v / np.linalg.norm(u) / np.linalg.norm(v), -1, 1)))


# ------------------------------------------------------------------------- slerp and lerp


@settings(max_examples=40, deadline=None, database=None, derandomize=True)
@given(seed_a=st.integers(0, 2**32 - 1), seed_b=st.integers(0, 2**32 - 1), d=st.sampled_from([256, 512, 1024]))
def test_slerp_keeps_gaussian_norm_while_lerp_dips(seed_a, seed_b, d):
    a, b = latents(seed_a, 1, d)[0], latents(seed_b, 1, d)[0]
    if seed_a == seed_b:
        b = latents(seed_b + 1, 1, d)[0]
    # two draws are nearly orthogonal (|cos| ~ 1/sqrt(d)); the rare pair at |cos| > 0.2 (seeds 410 and 1744190
    # at d = 256: 0.23) dips less under lerp than the bound below, so it is not the case this test is about
    assume(abs(float(a @ b) / float(np.linalg.norm(a) * np.linalg.norm(b))) < 0.2)
    t = np.linspace(0, 1, 33)
    ratio_s = np.linalg.norm(slerp(a, b, t).astype(np.float64), axis=1) / np.sqrt(d)
    ratio_l = np.linalg.norm(lerp(a, b, t).astype(np.float64), axis=1) / np.sqrt(d)
    ends = max(abs(ratio_s[0] - 1), abs(ratio_s[-1] - 1))
    # Slerp adds (almost) nothing to the endpoints' own distance from sqrt(d), which is a
    # few percent for a Gaussian in these dimensions ...
    assert np.abs(ratio_s - 1).max() <= ends + 0.005
    # ... while lerp between two nearly orthogonal Gaussians sinks to about 1/sqrt(2) midway.
    assert ratio_l[16] < 0.8
    assert ratio_l[16] < ratio_s[16] - 0.15


def test_slerp_norm_stays_within_a_few_percent_of_sqrt_d_for_the_pairs_of_seeds_0_to_99():
    d, t = 512, np.linspace(0, 1, 17)
    dev_s, mid_l = [], []
    for s in range(0, 100, 2):
        a, b = latents(s, 1, d)[0], latents(s + 1, 1, d)[0]
        dev_s.append(np.abs(np.linalg.norm(slerp(a, b, t), axis=1) / np.sqrt(d) - 1).max())
        mid_l.append(np.linalg.norm(lerp(a, b, [0.5])[0]) / np.sqrt(d))
    assert max(dev_s) < 0.1 and np.mean(dev_s) < 0.04  # the norm of one Gaussian varies ~3%
    assert max(mid_l) < 0.8 and 0.68 < np.mean(mid_l) < 0.74  # lerp dips to ~1/sqrt(2) midway


@settings(max_examples=30, deadline=None, database=None)
@given(seed_a=st.integers(0, 10**6), seed_b=st.integers(0, 10**6))
def test_slerp_moves_at_constant_angular_speed_in_the_plane_of_the_endpoints(seed_a, seed_b):
    # on the unit sphere (for endpoints of unequal norm the angle is not linear in t)
    a, b = latents(seed_a, 1, 64)[0], latents(seed_b + 10**6 + 1, 1, 64)[0]
    a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
    t = np.linspace(0, 1, 9)
    path = slerp(a, b, t)
    omega = _angle(a, b)
    for ti, p in zip(t, path):
        assert _angle(a, p) == pytest.approx(ti * omega, abs=1e-4)
    # every point is a combination of a and b: the least-squares residual is ~0
    basis = np.stack([a, b], 1).astype(np.float64)
    coef, *_ = np.linalg.lstsq(basis, path.T.astype(np.float64), rcond=None)
    assert np.abs(basis @ coef - path.T).max() < 1e-4


def test_interpolation_is_exact_at_the_endpoints_and_keeps_float32():
    a, b = latents(3, 1, 100)[0], latents(17, 1, 100)[0]
    for f in (slerp, lerp):
        out = f(a, b, fractions(7))
        assert out.dtype == np.float32
        assert np.array_equal(out[0], a) and np.array_equal(out[-1], b)
        assert not np.array_equal(out[3], a) and not np.array_equal(out[3], b)


def test_slerp_falls_back_to_lerp_for_nearly_parallel_endpoints():
    a = latents(1, 1, 32)[0].astype(np.float64)
    t = np.linspace(0, 1, 5)
    for b in (2.5 * a, -a, a + 1e-9):
        out = slerp(a, b, t)
        assert np.all(np.isfinite(out))
        assert np.allclose(out, lerp(a, b, t))
    # not parallel: slerp really differs from lerp
    c = latents(2, 1, 32)[0].astype(np.float64)
    assert not np.allclose(slerp(a, c, t), lerp(a, c, t))


# ------------------------------------------------------------------------- paths


def test_path_frame_counts_share_endpoints_and_loop_back():
    pts = [latents(s, 1, 8)[0] for s in (3, 17, 42)]
    k = 5
    open_ = latent_path(pts, k)
    assert len(open_) == (k - 1) * 2 + 1
    looped = latent_path(pts, k, loop=True)
    assert len(looped) == (k - 1) * 3
    for i, p in enumerate(pts):  # each endpoint sits at the start of its segment
        assert np.array_equal(looped.z[i * (k - 1)], p)
        assert looped.t[i * (k - 1)] == 0 and looped.segment[i * (k - 1)] == i
    assert np.array_equal(open_.z[-1], pts[-1]) and open_.t[-1] == 1
    # the looped path's last frame is one step before the first endpoint again
    assert np.allclose(looped.z[-1], slerp(pts[2], pts[0], [(k - 2) / (k - 1)])[0], atol=1e-6)


def test_rows_plan_uses_sample_latents_and_is_prefix_stable():
    p3 = plan(16, 4, rows=3, seed=7)
    p1 = plan(16, 4, rows=1, seed=7)
    ends = latents(7, 6, 16)
    for r, row in enumerate(p3.rows):
        assert np.array_equal(row.z[0], ends[2 * r]) and np.array_equal(row.z[-1], ends[2 * r + 1])
    assert np.array_equal(p1.rows[0].z, p3.rows[0].z)


@pytest.mark.parametrize("text", ["3;17", "a,b", "3,,4", "5", "3,-1", ""])
def test_parse_seeds_rejects_bad_formats(text):
    with pytest.raises(UsageError):
        parse_seeds(text)


def test_parse_seeds_accepts_spaces():
    assert parse_seeds("3, 17,42") == [3, 17, 42]


# ------------------------------------------------------------------------- the command


def _npz(path):
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def test_endpoint_frames_equal_sample_images(cli, tiny_dcgan, tmp_path):
    """Seed s's endpoint frame is image 0 of `gantools sample --seed s`, bit for bit.

    Both sides use the same latent (checked) and, with `-b 1`, the same batch composition
    (one latent per forward pass, like `sample -n 1`), so the CPU computes identical
    numbers; frames between the endpoints are generated too and differ from both ends.
    """
    seeds, k = (3, 17, 42), 5
    r = cli("interpolate", tiny_dcgan, "--seeds", "3,17,42", "--steps", k, "-b", "1", "--device", "cpu",
            "-o", tmp_path / "walk.npz")
    assert r.code == 0, r.err
    walk = _npz(tmp_path / "walk.npz")
    assert walk["images"].shape[0] == (k - 1) * 2 + 1
    for i, s in enumerate(seeds):
        r = cli("sample", tiny_dcgan, "-n", "1", "--seed", s, "--device", "cpu", "-o", tmp_path / f"s{s}.npz")
        assert r.code == 0, r.err
        ref = _npz(tmp_path / f"s{s}.npz")
        j = i * (k - 1)
        assert np.array_equal(walk["z"][j], ref["z"][0])
        assert np.array_equal(walk["images"][j], ref["images"][0])
        assert walk["t"][j] == (0 if i < 2 else 1)
    assert not np.array_equal(walk["images"][2], walk["images"][0])
    assert not np.array_equal(walk["images"][2], walk["images"][4])


def test_rows_endpoints_equal_sample_images(cli, tiny_dcgan, tmp_path):
    """--rows R --seed S: row r runs from image 2r to image 2r+1 of `sample -n 2R --seed S`.
    Both commands run with -b 1 (one image per forward pass) so the computations match bit for bit."""
    assert cli("interpolate", tiny_dcgan, "--rows", 2, "--seed", 5, "--steps", 3, "-b", 1, "--device", "cpu",
               "-o", tmp_path / "rows.npz").code == 0
    assert cli("sample", tiny_dcgan, "-n", 4, "--seed", 5, "-b", 1, "--device", "cpu",
               "-o", tmp_path / "ref.npz").code == 0
    rows, ref = _npz(tmp_path / "rows.npz"), _npz(tmp_path / "ref.npz")
    assert list(rows["row"]) == [0, 0, 0, 1, 1, 1]
    for r in range(2):
        assert np.array_equal(rows["images"][3 * r], ref["images"][2 * r])
        assert np.array_equal(rows["images"][3 * r + 2], ref["images"][2 * r + 1])
    assert np.allclose(rows["t"], [0, 0.5, 1, 0, 0.5, 1])


def test_generator_runs_in_eval_mode(cli, tiny_dcgan, tmp_path):
    """Row 0 looks the same whether it is generated with 0 or 5 other rows in the batch
    (batch norm in train mode would mix the batch's statistics into every frame)."""
    assert cli("interpolate", tiny_dcgan, "--rows", 1, "--steps", 4, "--device", "cpu", "-o", tmp_path / "a.npz").code == 0
    assert cli("interpolate", tiny_dcgan, "--rows", 6, "--steps", 4, "--device", "cpu", "-o", tmp_path / "b.npz").code == 0
    a, b = _npz(tmp_path / "a.npz")["images"], _npz(tmp_path / "b.npz")["images"][:4]
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_slerp_and_lerp_give_different_middles_same_ends(cli, tiny_dcgan, tmp_path):
    for m in ("--slerp", "--lerp"):
        assert cli("interpolate", tiny_dcgan, m, "--seeds", "1,2", "--steps", 5, "--device", "cpu",
                   "-o", tmp_path / f"{m[2:]}.npz").code == 0
    s, l = _npz(tmp_path / "slerp.npz")["z"], _npz(tmp_path / "lerp.npz")["z"]
    assert np.array_equal(s[[0, -1]], l[[0, -1]])
    assert np.linalg.norm(s[2]) > np.linalg.norm(l[2]) * 1.2


def test_png_grid_has_one_row_per_path_one_column_per_step(cli, tiny_dcgan, tmp_path):
    r = cli("interpolate", tiny_dcgan, "--rows", 3, "--steps", 6, "--device", "cpu", "-o", tmp_path / "g.png")
    assert r.code == 0, r.err
    assert r.out == b""  # data goes to the file, talk to stderr
    w, h = Image.open(tmp_path / "g.png").size
    assert (w, h) == (6 * 34 + 2, 3 * 34 + 2)  # 32 px frames, torchvision's 2 px padding


@pytest.mark.parametrize("loop", [False, True])
def test_gif_has_k_frames_per_segment_and_loops_when_asked(cli, tiny_dcgan, tmp_path, loop):
    k = 6
    args = ["--seeds", "3,17,42", "--steps", k, "--fps", 10, "--device", "cpu"]
    out = tmp_path / "walk.gif"
    r = cli("interpolate", tiny_dcgan, *args, *(["--loop"] if loop else []), "-o", out)
    assert r.code == 0, r.err
    gif = Image.open(out)
    # open path: 2 segments of k frames sharing the middle one; looped: 3 segments of k
    # frames, each sharing its ends with its neighbours (the last frame leads into the first)
    assert gif.n_frames == ((k - 1) * 3 if loop else (k - 1) * 2 + 1)
    assert gif.size == (32, 32)
    assert gif.info.get("duration") == 100
    if loop:
        assert gif.info.get("loop") == 0  # NETSCAPE extension: loop forever
    else:
        assert "loop" not in gif.info  # plays once


def test_gif_frames_show_all_rows_side_by_side(cli, tiny_dcgan, tmp_path):
    r = cli("interpolate", tiny_dcgan, "--rows", 4, "--steps", 5, "--zoom", 2, "--device", "cpu", "-o", tmp_path / "r.gif")
    assert r.code == 0, r.err
    gif = Image.open(tmp_path / "r.gif")
    assert gif.n_frames == 5
    assert gif.size == (2 * (4 * 34 + 2), 2 * 36)


def test_folder_npz_h5_outputs(cli, tiny_dcgan, tmp_path):
    import h5py

    common = ["--seeds", "1,2", "--steps", 4, "--loop", "--device", "cpu"]
    assert cli("interpolate", tiny_dcgan, *common, "-o", tmp_path / "frames").code == 0
    assert sorted(os.listdir(tmp_path / "frames")) == [".gantools-manifest.json"] + [f"{i:06d}.png" for i in range(6)]
    assert cli("interpolate", tiny_dcgan, *common, "-o", tmp_path / "w.npz").code == 0
    assert cli("interpolate", tiny_dcgan, *common, "-o", tmp_path / "w.h5").code == 0
    n = _npz(tmp_path / "w.npz")
    assert n["images"].shape == (6, 32, 32, 3) and n["images"].dtype == np.uint8
    assert n["z"].shape == (6, 100) and n["z"].dtype == np.float32
    assert np.allclose(n["t"], [0, 1 / 3, 2 / 3] * 2) and list(n["segment"]) == [0, 0, 0, 1, 1, 1]
    with h5py.File(tmp_path / "w.h5") as f:
        assert np.array_equal(f["images"][:], n["images"])
        assert np.array_equal(f["z"][:], n["z"]) and np.array_equal(f["t"][:], n["t"])
    first = np.asarray(Image.open(tmp_path / "frames" / "000000.png"))
    assert np.array_equal(first, n["images"][0])


def test_stream_to_stdout_lists_with_tar(tiny_dcgan, tmp_path):
    cmd = f"{' '.join(GANTOOLS)} interpolate {tiny_dcgan} --seeds 1,2 --steps 4 --device cpu -o - | tar -t"
    r = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    names = r.stdout.split()
    assert names == ["stream.json", "000000.png", "000001.png", "000002.png", "000003.png", "meta.npz"]


def test_no_out_with_a_pipe_writes_the_stream(tiny_dcgan):
    r = subprocess.run([*GANTOOLS, "interpolate", str(tiny_dcgan), "--rows", "2", "--steps", "3", "--device", "cpu"],
                       capture_output=True, timeout=300)
    assert r.returncode == 0, r.stderr
    with tarfile.open(fileobj=io.BytesIO(r.stdout), mode="r|") as tar:
        names = [m.name for m in tar]
    assert names[0] == "stream.json" and names[-1] == "meta.npz" and len(names) == 2 + 6


def test_no_out_on_a_terminal_asks_for_o(tiny_dcgan):
    master, slave = pty.openpty()
    try:
        r = subprocess.run([*GANTOOLS, "interpolate", str(tiny_dcgan), "--device", "cpu"],
                           stdout=slave, stderr=subprocess.PIPE, text=True, timeout=300)
    finally:
        os.close(slave)
        os.close(master)
    assert r.returncode == 2
    assert "-o" in r.stderr and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args, words", [
    (["--steps", "1"], "--steps 1"),
    (["--steps", "0"], "--steps 0"),
    (["--seeds", "3;17"], "comma-separated"),
    (["--seeds", "a,b"], "comma-separated"),
    (["--seeds", "5"], "at least two"),
    (["--seeds", "1,2", "--rows", "3"], "cannot be combined"),
    (["--rows", "0"], "--rows 0"),
    (["--class", "1"], "not conditional"),
    (["--class-path", "0:1"], "not conditional"),
    (["-o", "x.bmpx"], "unknown output kind"),
])
def test_bad_options_end_in_one_line_and_exit_2(cli, tiny_dcgan, tmp_path, args, words):
    r = cli("interpolate", tiny_dcgan, "--device", "cpu", *(args if "-o" in args else [*args, "-o", tmp_path / "x.png"]))
    assert r.code == 2
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], r.err
    assert not (tmp_path / "x.png").exists()


def test_missing_checkpoint_is_exit_1(cli, tmp_path):
    r = cli("interpolate", tmp_path / "nope.pt", "-o", tmp_path / "x.png")
    assert r.code == 1 and "no such checkpoint" in r.err


def test_cli_import_does_not_import_torch():
    code = "import sys, gantools.cli.interpolate; sys.exit('torch' in sys.modules or 'numpy' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


# ------------------------------------------------------------------------- conditional models


@pytest.fixture
def cond_ckpt(tmp_path, monkeypatch):
    """Checkpoints of a tiny conditional model registered for this test only: one whose
    generator embeds labels (accepts class weights), one that does not."""
    import torch
    from torch import nn

    from gantools.checkpoint import new_checkpoint, save_checkpoint
    from gantools.registry import MODELS, ModelSpec

    class CondG(nn.Module):
        def __init__(self, hp, data):
            super().__init__()
            self.class_weights = bool(hp["embeds"])
            self.embed = nn.Embedding(data["num_classes"], 8)
            self.fc = nn.Linear(hp["z_dim"] + 8, data["channels"] * 8 * 8)

        def forward(self, z, labels=None):
            e = labels @ self.embed.weight if labels.is_floating_point() else self.embed(labels)
            return torch.tanh(self.fc(torch.cat([z, e], 1))).view(len(z), -1, 8, 8)

    MODELS.names()  # load the real models first, then add ours for this test only
    spec = ModelSpec(name="test-cond", description="test", data_kind="image", build_generator=CondG,
                     build_discriminator=lambda hp, data: nn.Identity(), conditional=True)
    monkeypatch.setitem(MODELS._entries, "test-cond", spec)
    data = {"kind": "image", "channels": 1, "resolution": 8, "value_range": [-1, 1], "num_classes": 3,
            "class_names": ["cat", "dog", "fox"], "source": "test"}
    paths = {}
    for embeds in (True, False):
        hp = {"z_dim": 6, "embeds": embeds}
        torch.manual_seed(0)
        G = CondG(hp, data)
        with torch.no_grad():
            G.embed.weight.mul_(3)  # make classes look clearly different
        paths[embeds] = save_checkpoint(new_checkpoint("test-cond", hp, data, {"G": G.state_dict()}),
                                        tmp_path / f"cond-{embeds}.pt")
    return paths


def test_class_stays_fixed_with_class(cli, cond_ckpt, tmp_path):
    r = cli("interpolate", cond_ckpt[True], "--seeds", "1,2", "--steps", 4, "--class", "dog", "--device", "cpu",
            "-o", tmp_path / "c.npz")
    assert r.code == 0, r.err
    c = _npz(tmp_path / "c.npz")
    assert list(c["labels"]) == [1] * 4
    assert list(c["class_names"]) == ["cat", "dog", "fox"]
    assert cli("sample", cond_ckpt[True], "-n", 1, "--seed", 2, "--class", "dog", "-b", 1, "--device", "cpu",
               "-o", tmp_path / "s.npz").code == 0
    assert np.array_equal(_npz(tmp_path / "s.npz")["images"][0], c["images"][-1])


def test_default_class_is_the_one_sample_gives_the_first_seed(cli, cond_ckpt, tmp_path):
    assert cli("interpolate", cond_ckpt[True], "--seeds", "4,9", "--steps", 3, "--device", "cpu",
               "-o", tmp_path / "c.npz").code == 0
    assert cli("sample", cond_ckpt[True], "-n", 1, "--seed", 4, "--device", "cpu", "-o", tmp_path / "s.npz").code == 0
    c, s = _npz(tmp_path / "c.npz"), _npz(tmp_path / "s.npz")
    assert set(c["labels"]) == {int(s["labels"][0])}
    assert np.array_equal(c["images"][0], s["images"][0])


def test_class_path_interpolates_the_embedding_at_fixed_z(cli, cond_ckpt, tmp_path):
    import torch

    from gantools.checkpoint import load_checkpoint
    from gantools.generate import load_generator

    k = 5
    r = cli("interpolate", cond_ckpt[True], "--class-path", "cat:fox", "--rows", 1, "--seed", 3, "--steps", k,
            "-b", 1, "--device", "cpu", "-o", tmp_path / "cp.npz")
    assert r.code == 0, r.err
    cp = _npz(tmp_path / "cp.npz")
    assert np.array_equal(cp["z"], np.repeat(latents(3, 1, 6), k, 0))  # z stays fixed
    w = cp["class_weights"]
    assert np.allclose(w[:, 0], np.linspace(1, 0, k)) and np.allclose(w[:, 2], np.linspace(0, 1, k))
    assert np.all(w[:, 1] == 0)
    # the ends are the sample images of classes cat and fox for that z
    for cls, j in (("cat", 0), ("fox", -1)):
        assert cli("sample", cond_ckpt[True], "-n", 1, "--seed", 3, "--class", cls, "-b", 1, "--device", "cpu",
                   "-o", tmp_path / f"{cls}.npz").code == 0
        assert np.array_equal(_npz(tmp_path / f"{cls}.npz")["images"][0], cp["images"][j])
    # the middle frame is G at the mean of the two class embeddings
    G = load_generator(load_checkpoint(cond_ckpt[True]))
    z = torch.from_numpy(latents(3, 1, 6))
    e = (G.embed.weight[0] + G.embed.weight[2]) / 2
    mid = torch.tanh(G.fc(torch.cat([z, e[None]], 1))).view(1, 1, 8, 8)
    expect = ((mid + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()[0]
    assert np.abs(expect.astype(int) - cp["images"][k // 2]).max() <= 1
    assert not np.array_equal(cp["images"][0], cp["images"][-1])


@pytest.mark.parametrize("args, words", [
    (["--class-path", "cat"], "A:B"),
    (["--class-path", "cat:wolf"], "wolf"),
    (["--class", "7"], "0..2"),
    (["--class", "dog", "--class-path", "cat:fox"], "cannot be combined"),
])
def test_bad_class_options_exit_2(cli, cond_ckpt, tmp_path, args, words):
    r = cli("interpolate", cond_ckpt[True], *args, "--device", "cpu", "-o", tmp_path / "x.png")
    assert r.code == 2 and len(r.err.strip().splitlines()) == 1 and words in r.err, r.err


def test_class_path_needs_a_model_that_embeds_labels(cli, cond_ckpt, tmp_path):
    r = cli("interpolate", cond_ckpt[False], "--class-path", "0:1", "--device", "cpu", "-o", tmp_path / "x.png")
    assert r.code == 2 and "does not embed its labels" in r.err
    assert not (tmp_path / "x.png").exists()


def test_class_on_an_unconditional_model_with_class_names_is_exit_2(cli, tmp_path):
    """A dcgan trained on a labelled set keeps the class names but does not take labels."""
    from gantools.checkpoint import new_checkpoint, save_checkpoint
    from gantools.registry import MODELS

    spec = MODELS.get("dcgan")
    hp = dict(spec.defaults, ngf=8, ndf=8, z_dim=8)
    data = {"kind": "image", "channels": 1, "resolution": 32, "value_range": [-1, 1], "num_classes": 10,
            "class_names": [str(i) for i in range(10)], "source": "test"}
    ck = save_checkpoint(new_checkpoint("dcgan", hp, data, {"G": spec.build_generator(hp, data).state_dict()}),
                         tmp_path / "labelled.pt")
    r = cli("interpolate", ck, "--class", "3", "--device", "cpu", "-o", tmp_path / "x.png")
    assert r.code == 2 and "not conditional" in r.err and len(r.err.strip().splitlines()) == 1
    r = cli("interpolate", ck, "--rows", 1, "--steps", 2, "--device", "cpu", "-o", tmp_path / "ok.npz")
    assert r.code == 0, r.err
    assert (_npz(tmp_path / "ok.npz")["labels"] == -1).all()  # -1: none, as sample and the stream write


def test_vector_model_is_refused_with_exit_2(cli, tmp_path):
    from gantools.checkpoint import new_checkpoint, save_checkpoint
    from gantools.registry import MODELS

    spec = MODELS.get("gan")
    hp = dict(spec.defaults, hidden=8, depth=1)
    data = {"kind": "vector", "dim": 2, "num_classes": 0, "class_names": [], "source": "toy:ring"}
    ck = save_checkpoint(new_checkpoint("gan", hp, data, {"G": spec.build_generator(hp, data).state_dict()}),
                         tmp_path / "gan.pt")
    r = cli("interpolate", ck, "--device", "cpu", "-o", tmp_path / "x.npz")
    assert r.code == 2 and "draws images" in r.err and not (tmp_path / "x.npz").exists()


@pytest.mark.parametrize("args, words", [
    (["--zoom", "100000", "-k", "2", "--rows", "1"], "--zoom 100000: must be an integer in [1, 64]"),
    (["--zoom", "64", "-k", "8", "--rows", "4"], "--zoom 64: the png would be 16402x8202 pixels; at most 16384"),
])
def test_a_zoom_too_large_is_refused_before_any_work(cli, tiny_dcgan, tmp_path, args, words):
    """--zoom has an upper bound (a huge one passed the range check, then failed allocating the picture)."""
    r = cli("interpolate", tiny_dcgan, *args, "--device", "cpu", "-o", tmp_path / "big.png")
    assert r.code == 2 and "Traceback" not in r.err
    assert r.err.strip().splitlines() == [f"gantools interpolate: error: {words} a side (a smaller --zoom, or fewer "
                                          "--rows/--steps)" if "pixels" in words else
                                          f"gantools interpolate: error: {words}"]
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("out, args, warned", [
    ("x.npz", ["--fps", "5"], "--fps 5: only a .gif has a frame rate"),
    ("x.png", ["--fps", "5"], "--fps 5: only a .gif has a frame rate"),
    ("x.npz", ["--zoom", "3"], "--zoom 3: only .png and .gif pictures are enlarged"),
    ("x.gif", ["--fps", "5", "--zoom", "2"], None),
])
def test_options_an_output_ignores_are_warned_about(cli, tiny_dcgan, tmp_path, out, args, warned):
    """--fps outside a .gif and --zoom outside .png/.gif change nothing: the user hears so on stderr."""
    r = cli("interpolate", tiny_dcgan, "--rows", 1, "-k", 2, *args, "--device", "cpu", "-o", tmp_path / out)
    assert r.code == 0, r.err
    assert (tmp_path / out).is_file()
    warnings = [line for line in r.err.splitlines() if "warning:" in line]
    assert warnings == ([f"gantools: warning: {warned}; {tmp_path / out} " +
                         ("ignores it" if "fps" in warned else "keeps the model's size")] if warned else [])
