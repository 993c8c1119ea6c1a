"""`gantools balance`: the output holds every original unchanged plus exactly the requested generated images
per class; the generated flags, the manifest and the files agree; --model reproduces an output; bad input is
one line and writes nothing; --evaluate reports the three classifiers side by side. The balancer is the
default, bagan, with tiny networks, and once acgan (--gan-model: any registered conditional model)."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest

from conftest import TINY_DCGAN, run_cli

COUNTS = [12, 9, 4, 3]  # a skewed toy:shapes: circle, square, triangle, cross
TINY = ["--batch-size", "8", "--set", "ngf=8", "--set", "ndf=8"]
TRAIN = ["--steps", "2", *TINY, "--set", "ae_steps=2", "--set", "hidden=32"]  # bagan, the default
ACGAN = ["--gan-model", "acgan", "--steps", "2", *TINY]


def _skewed(n_per_class=COUNTS):
    from gantools.data.toy import SHAPE_CLASSES, shapes

    x, y = shapes(400, seed=3)
    keep = np.sort(np.concatenate([np.flatnonzero(y == k)[:n] for k, n in enumerate(n_per_class)]))
    return x[keep], y[keep], list(SHAPE_CLASSES)


@pytest.fixture(scope="module")
def skewed(tmp_path_factory) -> dict:
    """The skewed set as an .npz and as a class-folder tree (PNG files), and a balancer trained on it."""
    from PIL import Image

    root = tmp_path_factory.mktemp("skewed")
    x, y, names = _skewed()
    np.savez(root / "skew.npz", images=x, labels=y, class_names=np.array(names))
    for i, (img, k) in enumerate(zip(x, y)):
        (root / "tree" / names[k]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(root / "tree" / names[k] / f"shape{i:03d}.png")
    r = run_cli("balance", root / "skew.npz", "-o", root / "first.npz", "--save-model", root / "bal.pt", "--seed", "5",
                *TRAIN)
    assert r.code == 0, r.err
    return {"npz": root / "skew.npz", "tree": root / "tree", "ckpt": root / "bal.pt", "first": root / "first.npz",
            "x": x, "y": y, "names": names}


def _manifest(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_a_folder_out_holds_every_original_unchanged_and_the_generated_images(skewed, tmp_path):
    out = tmp_path / "balanced"
    r = run_cli("balance", skewed["tree"], "-o", out, "--model", skewed["ckpt"], "--json")
    assert r.code == 0, r.err
    summary = json.loads(r.text)
    want = max(COUNTS)
    rows = _manifest(out / "manifest.csv")
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*.png"))
    assert sorted(row["image"] for row in rows) == files  # the manifest lists exactly the images in OUT
    for k, name in enumerate(skewed["names"]):
        originals = sorted((skewed["tree"] / name).iterdir())
        for p in originals:  # byte for byte, under the same name
            assert (out / name / p.name).read_bytes() == p.read_bytes()
        generated = sorted((out / name).glob("gen-*.png"))
        assert len(generated) == want - COUNTS[k]
        assert len(list((out / name).glob("*.png"))) == want
        mine = [row for row in rows if row["class"] == name]
        assert {row["image"] for row in mine if row["generated"] == "1"} == {f"{name}/{p.name}" for p in generated}
        label = sorted(skewed["names"]).index(name)  # a folder tree's classes are its sorted folder names
        assert all(row["label"] == str(label) for row in mine)
        assert summary["classes"][label] == {"class": name, "label": label, "in_data": COUNTS[k], "real": COUNTS[k], "copied": 0,
                                             "generated": want - COUNTS[k], "total": want}


def test_an_npz_out_keeps_the_originals_first_and_flags_each_row(skewed, tmp_path):
    out, manifest = tmp_path / "b.npz", tmp_path / "b.csv"
    r = run_cli("balance", skewed["npz"], "-o", out, "--model", skewed["ckpt"], "--target", "cross=10,triangle=5",
                "--manifest", manifest)
    assert r.code == 0, r.err
    with np.load(out) as f:
        images, labels, generated = f["images"], f["labels"], f["generated"]
        assert [str(s) for s in f["class_names"]] == skewed["names"]
    n = len(skewed["y"])
    assert np.array_equal(images[:n], skewed["x"]) and np.array_equal(labels[:n], skewed["y"])
    assert not generated[:n].any() and generated[n:].all()
    assert np.bincount(labels[n:], minlength=4).tolist() == [0, 0, 1, 7]
    rows = _manifest(manifest)
    assert [row["generated"] == "1" for row in rows] == generated.tolist()
    assert [int(row["label"]) for row in rows] == labels.tolist()
    # the table on stdout: per class real, generated, total
    cells = [[c.strip() for c in ln.strip("│").split("│")] for ln in r.text.splitlines() if ln.startswith("│")]
    lines = {c[0]: c[1:] for c in cells}
    assert lines["cross"] == ["3", "7", "10"] and lines["circle"] == ["12", "0", "12"]


def test_model_reproduces_the_output_for_the_same_seed(skewed, tmp_path):
    again, other = tmp_path / "again.npz", tmp_path / "other.npz"
    assert run_cli("balance", skewed["npz"], "-o", again, "--model", skewed["ckpt"], "--seed", "5").code == 0
    assert run_cli("balance", skewed["npz"], "-o", other, "--model", skewed["ckpt"], "--seed", "6").code == 0
    with np.load(skewed["first"]) as a, np.load(again) as b, np.load(other) as c:
        assert np.array_equal(a["images"], b["images"]) and np.array_equal(a["labels"], b["labels"])
        n = len(skewed["y"])
        assert not np.array_equal(a["images"][n:], c["images"][n:])  # the seed draws the generated images


def test_temperature_changes_only_the_generated_images_and_is_reported(skewed, tmp_path):
    one, hot = tmp_path / "one.npz", tmp_path / "hot.npz"
    assert run_cli("balance", skewed["npz"], "-o", one, "--model", skewed["ckpt"], "--seed", "5",
                   "--temperature", "1").code == 0
    r = run_cli("balance", skewed["npz"], "-o", hot, "--model", skewed["ckpt"], "--seed", "5", "--temperature", "2",
                "--json")
    assert r.code == 0, r.err
    assert json.loads(r.text)["temperature"] == 2
    n = len(skewed["y"])
    with np.load(skewed["first"]) as a, np.load(one) as b, np.load(hot) as c:
        assert np.array_equal(a["images"], b["images"])  # temperature 1 is the default sampling
        assert np.array_equal(c["images"][:n], a["images"][:n]) and np.array_equal(c["labels"], a["labels"])
        assert not np.array_equal(c["images"][n:], a["images"][n:])


def test_only_generated_writes_the_new_images_alone(skewed, tmp_path):
    out = tmp_path / "new"
    r = run_cli("balance", skewed["tree"], "-o", out, "--model", skewed["ckpt"], "--only-generated",
                "--target", "triangle=6,cross=6")
    assert r.code == 0, r.err
    rows = _manifest(out / "manifest.csv")
    assert all(row["generated"] == "1" for row in rows)
    assert [len(list((out / n).glob("*.png"))) for n in skewed["names"]] == [0, 0, 2, 3]


def test_the_stream_carries_the_images_and_the_manifest_says_which_are_generated(skewed, tmp_path):
    from gantools.data.stream import read_stream

    manifest = tmp_path / "m.csv"
    r = run_cli("balance", skewed["npz"], "-o", "-", "--model", skewed["ckpt"], "--manifest", manifest)
    assert r.code == 0, r.err
    items = list(read_stream(io.BytesIO(r.out), "<stdout>"))
    images = [v for kind, v in items if kind == "image"]
    meta = next(v for kind, v in items if kind == "meta")
    rows = _manifest(manifest)
    assert len(images) == len(rows) == 4 * max(COUNTS)
    assert [int(row["label"]) for row in rows] == meta["labels"].tolist()
    assert np.array_equal(np.asarray(images[0]), skewed["x"][0])
    assert "generated" in r.err  # the table goes to stderr: stdout is the stream


def test_an_error_while_writing_leaves_nothing(skewed, tmp_path, monkeypatch):
    import gantools.data.stream
    from gantools.balance import Training, balance

    calls = []

    def failing(image):
        calls.append(1)
        if len(calls) > 5:
            raise OSError("disk full")
        return b"png"

    monkeypatch.setattr(gantools.data.stream, "encode_png", failing)
    out = tmp_path / "out"
    with pytest.raises(OSError):
        balance(str(skewed["npz"]), str(out), training=Training(), checkpoint=str(skewed["ckpt"]), device="cpu")
    assert not out.exists()


def _bad_sets(root: Path) -> dict:
    x, y, names = _skewed()
    np.savez(root / "unlabelled.npz", images=x)
    np.savez(root / "one.npz", images=x[y == 0], labels=y[y == 0])
    tiny_x, tiny_y, _ = _skewed([5, 4, 1, 3])
    np.savez(root / "small.npz", images=tiny_x, labels=tiny_y, class_names=np.array(names))
    np.savez(root / "three.npz", images=x[y < 3], labels=y[y < 3], class_names=np.array(names[:3]))
    return {"unlabelled": root / "unlabelled.npz", "one": root / "one.npz", "small": root / "small.npz",
            "three": root / "three.npz"}


@pytest.mark.parametrize("case, code, words", [
    ("unlabelled", 1, "has no labels"),
    ("one", 1, "has one class"),
    ("small", 1, "class triangle has 1 image; each class needs at least 2"),
    ("below-n", 2, "--target 10: 10 is below the 12 images class circle has"),
    ("below-class", 2, "--target square=2: 2 is below the 9 images class square has"),
    ("unknown-class", 2, "--target star=20: no class 'star'"),
    ("bad-target", 2, "--target lots: expected max, a number, or CLASS=N"),
    ("stream-without-manifest", 2, "give --manifest FILE.csv"),
    ("model-and-steps", 2, "--steps train a new balancer"),
    ("model-and-no-class-balanced", 2, "--no-class-balanced train a new balancer"),
    ("model-other-classes", 1, "trained on classes circle, square, triangle, cross; DATA has circle, square, triangle"),
    ("test-without-evaluate", 2, "--test-split go with --evaluate"),
    ("out-inside-data", 2, "inside DATA"),
    ("unknown-suffix", 2, "balance writes a folder of class subfolders, x.npz, x.h5 or -"),
    ("nothing-to-generate", 2, "--only-generated: nothing to generate"),
    ("bad-temperature", 2, "--temperature 0: must be"),
])
def test_bad_input_is_one_line_and_writes_nothing(skewed, tmp_path, case, code, words):
    sets = _bad_sets(tmp_path)
    out = tmp_path / "out"
    data = sets.get(case, skewed["npz"])
    args = {"below-n": ["--target", "10"], "below-class": ["--target", "square=2"],
            "unknown-class": ["--target", "star=20"], "bad-target": ["--target", "lots"],
            "model-and-steps": ["--model", skewed["ckpt"], "--steps", "3"],
            "model-and-no-class-balanced": ["--model", skewed["ckpt"], "--no-class-balanced"],
            "model-other-classes": ["--model", skewed["ckpt"]], "test-without-evaluate": ["--test-split", "0.3"],
            "nothing-to-generate": ["--only-generated", "--target", "circle=12", *TRAIN],
            "bad-temperature": ["--temperature", "0", *TRAIN],
            }.get(case, TRAIN)
    if case == "model-other-classes":
        data = sets["three"]
    if case == "stream-without-manifest":
        out = "-"
    if case == "out-inside-data":
        data, out = skewed["tree"], skewed["tree"] / "balanced"
    if case == "unknown-suffix":
        out = tmp_path / "out.tar"
    before = sorted(p.name for p in tmp_path.iterdir())
    save = [] if "--model" in args else ["--save-model", tmp_path / "m.pt"]
    r = run_cli("balance", data, "-o", out, *save, *args)
    assert r.code == code and r.out == b"", r.err
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], r.err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no OUT, no m.pt
    if case == "out-inside-data":
        assert not out.exists()


@pytest.mark.parametrize("flag, want", [("--no-class-balanced", False), ("--class-balanced", True)])
def test_class_balanced_reaches_the_balancers_training(skewed, tmp_path, flag, want):
    from gantools.checkpoint import load_checkpoint

    r = run_cli("balance", skewed["npz"], "-o", tmp_path / "b.npz", "--save-model", tmp_path / "m.pt", flag, *TRAIN)
    assert r.code == 0, r.err
    assert load_checkpoint(tmp_path / "m.pt")["config"]["class_balanced"] is want
    if want:  # BAGAN's training names the classes it fits from few images (z_dim 100 here) by name
        assert "class circle (12), square (9), triangle (4), cross (3) has at most z_dim" in r.err, r.err


def test_an_existing_output_is_refused_before_any_work(skewed, tmp_path):
    out = tmp_path / "b.npz"
    out.write_bytes(b"mine")
    r = run_cli("balance", skewed["npz"], "-o", out, *TRAIN)
    assert r.code == 1 and "exists; give --overwrite" in r.err and "train " not in r.err  # before training
    assert out.read_bytes() == b"mine"


def test_evaluate_reports_the_three_classifiers_side_by_side(skewed, tmp_path):
    r = run_cli("balance", skewed["npz"], "--evaluate", "--test-split", "0.25", "--classifier-epochs", "1",
                "--json", *ACGAN)
    assert r.code == 0, r.err
    report = json.loads(r.text)
    assert set(report["columns"]) == {"as_is", "balanced", "oversampled"} and report["model"] == "acgan"
    assert report["classifier"].startswith("small CNN")
    assert report["minority_classes"] == ["triangle", "cross"]
    for c in report["classes"]:
        assert c["train"] + c["test"] == COUNTS[skewed["names"].index(c["class"])]
        assert all(0 <= c["accuracy"][m] <= 1 for m in report["columns"])
        assert 0 <= c["generated_accuracy"] <= 1
        assert c["ssim_generated"] <= 1 and c["ssim_real"] <= 1
    sizes = {m: v["train_images"] for m, v in report["columns"].items()}
    train_total = sum(c["train"] for c in report["classes"])
    assert sizes["as_is"] == train_total and sizes["balanced"] == sizes["oversampled"] == 4 * max(
        c["train"] for c in report["classes"])
    for m, v in report["columns"].items():
        accs = [c["accuracy"][m] for c in report["classes"]]
        assert v["macro"] == pytest.approx(np.mean(accs))
        assert v["minority"] == pytest.approx(np.mean(accs[2:]))


def test_evaluate_prints_tables_and_takes_a_test_set(skewed, tmp_path):
    r = run_cli("balance", skewed["npz"], "--evaluate", "--test", skewed["tree"], "--model", skewed["ckpt"],
                "--classifier-epochs", "1")
    assert r.code == 0, r.err
    for words in ("(a) as-is", "(b) bagan", "(c) oversampled", "minority *", "macro", "SSIM generated", "SSIM real"):
        assert words in r.text


# ----------------------------------------------------------------------------- the API's pieces


def test_ssim_is_one_for_identical_images_and_falls_with_noise():
    import torch

    from gantools.balance import ssim

    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 32, 32, generator=g)
    assert torch.allclose(ssim(x, x), torch.ones(4), atol=1e-6)
    scores = [float(ssim(x, (x + s * torch.randn(x.shape, generator=g)).clamp(0, 1)).mean()) for s in (0.02, 0.1, 0.3)]
    assert 1 > scores[0] > scores[1] > scores[2]
    y = torch.rand(4, 3, 32, 32, generator=g)
    assert torch.allclose(ssim(x, y), ssim(y, x))


def test_pair_ssim_compares_different_images():
    import torch

    from gantools.balance import pair_ssim

    same = torch.full((5, 1, 16, 16), 100, dtype=torch.uint8)
    assert pair_ssim(same, 20) == pytest.approx(1.0)
    noise = torch.randint(0, 256, (5, 1, 16, 16), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    assert pair_ssim(noise, 20) < 0.2 and pair_ssim(noise[:1], 20) is None


def test_targets():
    from gantools.balance import parse_target
    from gantools.errors import UsageError

    names = ["a", "b", "c"]
    assert parse_target("max", [5, 2, 9], names) == [9, 9, 9]
    assert parse_target("9", [5, 2, 9], names) == [9, 9, 9]
    assert parse_target("b=4,0=6", [5, 2, 9], names) == [6, 4, 9]
    with pytest.raises(UsageError, match="given twice"):
        parse_target("a=6,0=7", [5, 2, 9], names)


def test_oversampling_fills_each_class_with_copies_of_its_own_images():
    import torch

    from gantools.balance import LabelledImages, oversample

    x, y, names = _skewed()
    data = LabelledImages(torch.from_numpy(x).permute(0, 3, 1, 2), torch.from_numpy(y), names, "toy")
    filled = oversample(data, [12, 12, 12, 12], seed=0)
    assert filled.counts() == [12] * 4
    n = len(y)
    flipped = 0
    for img, k in zip(filled.images[n:], filled.labels[n:]):
        own = data.images[data.labels == k]
        if not (own == img).flatten(1).all(1).any():
            assert (own == img.flip(-1)).flatten(1).all(1).any()
            flipped += 1
    assert 0 < flipped < len(filled.labels) - n


def test_split_per_class_holds_out_each_class(tmp_path):
    import torch

    from gantools.balance import LabelledImages, split_per_class

    x, y, names = _skewed()
    data = LabelledImages(torch.from_numpy(x).permute(0, 3, 1, 2), torch.from_numpy(y), names, "toy")
    train, test = split_per_class(data, 0.25, seed=0)
    assert test.counts() == [3, 2, 1, 1] and train.counts() == [9, 7, 3, 2]
    assert split_per_class(data, 0.25, seed=0)[1].images.equal(test.images)


@pytest.mark.slow
@pytest.mark.skipif(__import__("sys").platform == "win32", reason="POSIX signals")
def test_ctrl_c_while_training_exits_130_and_writes_nothing(skewed, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    from conftest import ROOT

    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    args = ["balance", str(skewed["npz"]), "-o", "out", "--save-model", "m.pt", "--steps", "1000000", *TINY,
            "--set", "ae_steps=2", "--set", "hidden=32"]
    p = subprocess.Popen([sys.executable, "-m", "gantools", *args], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    time.sleep(12)
    assert p.poll() is None, p.communicate()[1].decode()
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    lines = [ln for ln in err.decode().splitlines() if "error" in ln or "interrupted" in ln]
    assert p.returncode == 130 and out == b""
    # before training: Ctrl-C's own line; while training: the trainer stops and balance says so
    assert lines in (["gantools: interrupted"],
                     ["gantools: error: interrupted while training the bagan balancer; nothing was written"]), err
    assert sorted(os.listdir(tmp_path)) == []


@pytest.mark.parametrize("channels, size, kind", [(1, 28, "SmallCNN"), (3, 32, "SmallCNN"), (1, 64, "_Grey3"),
                                                  (3, 96, "_Grey3")])
def test_the_classifier_is_a_small_cnn_under_64_px_and_resnet18_from_64(channels, size, kind):
    import torch

    from gantools.balance import build_classifier, classifier_name

    net = build_classifier(channels, size, 5).eval()
    assert type(net).__name__ == kind
    assert classifier_name(size).startswith("ResNet-18" if size >= 64 else "small CNN")
    if kind == "_Grey3":
        blocks = [m for m in net.net.modules() if type(m).__name__ == "BasicBlock"]
        assert type(net.net).__name__ == "ResNet" and len(blocks) == 8  # ResNet-18: 4 stages of 2 blocks
    with torch.no_grad():
        assert net(torch.zeros(2, channels, size, size)).shape == (2, 5)


def test_a_zip_of_class_folders_is_copied_member_by_member_and_h5_flags_rows(skewed, tmp_path):
    import zipfile

    import h5py

    archive = tmp_path / "skew.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(skewed["tree"].rglob("*.png")):
            zf.write(p, f"set/{p.relative_to(skewed['tree'])}")
    out = tmp_path / "out"
    assert run_cli("balance", f"{archive}/set", "-o", out, "--model", skewed["ckpt"]).code == 0
    with zipfile.ZipFile(archive) as zf:
        for member in zf.namelist():
            assert (out / member.removeprefix("set/")).read_bytes() == zf.read(member)
    h5 = tmp_path / "b.h5"
    assert run_cli("balance", archive, "-o", h5, "--model", skewed["ckpt"], "--target", "cross=5").code == 0
    with h5py.File(h5) as f:
        assert f["generated"][()].tolist() == [False] * len(skewed["y"]) + [True] * 2
        assert f["labels"][()][-2:].tolist() == [list(f.attrs["class_names"]).index("cross")] * 2


def test_a_balancer_of_another_size_is_used_with_a_warning(skewed, tmp_path):
    """The fill is resized to DATA's size, and the user is told: resized fills differ from the real images."""
    small = tmp_path / "small.npz"
    np.savez(small, images=skewed["x"][:, 2:30, 2:30], labels=skewed["y"], class_names=np.array(skewed["names"]))
    r = run_cli("balance", small, "-o", tmp_path / "out.npz", "--model", skewed["ckpt"])
    assert r.code == 0, r.err
    assert "32x32 images and DATA's are 28x28" in r.err
    with np.load(tmp_path / "out.npz") as out:
        assert out["images"].shape[1:3] == (28, 28)
    same = run_cli("balance", skewed["npz"], "-o", tmp_path / "same.npz", "--model", skewed["ckpt"])
    assert same.code == 0 and "resized" not in same.err


def test_a_rerun_into_its_own_folder_is_gantools_output_and_overwrite_spares_a_users_file(skewed, tmp_path):
    out = tmp_path / "sb2"
    args = ("balance", skewed["tree"], "-o", out, "--model", skewed["ckpt"])
    assert run_cli(*args, "--seed", "1").code == 0
    r = run_cli(*args, "--seed", "1")
    assert r.code == 1 and r.out == b"", r.err
    line = r.err.strip()
    assert "earlier gantools run" in line and "--overwrite" in line and "did not write" not in line, line
    mine = out / "cross" / "mine.png"  # a user's file dropped into a class folder
    mine.write_bytes(b"not gantools'")
    before = {p.name: p.read_bytes() for p in (out / "cross").glob("gen-*.png")}
    r = run_cli(*args, "--seed", "2", "--overwrite")
    assert r.code == 0, r.err
    assert mine.read_bytes() == b"not gantools'"  # untouched
    after = {p.name: p.read_bytes() for p in (out / "cross").glob("gen-*.png")}
    assert after.keys() == before.keys() and after != before  # gantools' generated images replaced
    rows = _manifest(out / "manifest.csv")
    assert "cross/mine.png" not in {row["image"] for row in rows}
    r = run_cli(*args, "--seed", "2")  # still gantools' output beside the user's file: --overwrite again
    assert r.code == 1 and "earlier gantools run" in r.err, r.err


def test_overwrite_clears_an_earlier_class_folder_the_new_run_does_not_write(tmp_path):
    from gantools.fsutil import OutputFolder

    top = OutputFolder(tmp_path / "o", "balance")
    for name in ("a", "b"):
        sub = top.subfolder(name)
        sub.path("x.png").write_bytes(b"gantools'")
        sub.commit()
    top.commit()
    (tmp_path / "o" / "b" / "user.txt").write_text("mine")
    top = OutputFolder(tmp_path / "o", "balance", overwrite=True)
    sub = top.subfolder("a")
    sub.path("y.png").write_bytes(b"new")
    sub.commit()
    top.commit()
    assert sorted(p.name for p in (tmp_path / "o" / "a").iterdir()) == [".gantools-manifest.json", "y.png"]
    assert sorted(p.name for p in (tmp_path / "o" / "b").iterdir()) == ["user.txt"]  # gantools' x.png went
    assert OutputFolder(tmp_path / "o", "balance", overwrite=True)._our_folders == {"a"}  # b is no longer listed


def test_the_tables_show_class_names_and_paths_as_written(capsys):
    from gantools.cli.balance import _print_evaluation, _print_summary

    cls = {"class": "[b]bold[/b]", "real": 3, "generated": 1, "total": 4}
    _print_summary({"out": "out[1]", "images": 4, "model": "bagan", "seed": 0, "classes": [cls]}, to_stderr=False)
    acc = {"as_is": 0.5, "balanced": 0.5, "oversampled": 0.5}
    _print_evaluation({"classifier": "small CNN", "classifier_epochs": 1, "model": "bagan", "test": "t[est]",
                       "seed": 0, "columns": {m: {"minority": 0.5, "macro": 0.5} for m in acc},
                       "classes": [{"class": "[b]bold[/b]", "minority": True, "train": 3, "test": 1, "generated": 1,
                                    "accuracy": acc, "generated_accuracy": 1.0, "ssim_generated": 0.1,
                                    "ssim_real": 0.1}], "minority_rule": "rule", "minority_classes": ["[b]bold[/b]"],
                       "judge_count": 4, "ssim_pairs": 2, "real_share": 0.5, "min_generated": 7})
    out = capsys.readouterr().out
    assert "out[1]" in out and "test: t[est]" in out
    assert "balanced by bagan, 0.5 of each gap copied, at least 7 generated per class," in out
    assert out.count("[b]bold[/b]") == 4  # the summary, both evaluation tables and the minority line


def test_the_manifest_source_is_the_originals_file_or_the_array_files_row(skewed, tmp_path):
    """README: `source` is the original's file when DATA is a folder or zip of files, FILE#ROW for an array
    file, whatever OUT is."""
    from PIL import Image

    for out in (tmp_path / "t.npz", "-"):
        manifest = tmp_path / f"m{len(str(out))}.csv"
        r = run_cli("balance", skewed["tree"], "-o", out, "--model", skewed["ckpt"], "--manifest", manifest)
        assert r.code == 0, r.err
        rows = _manifest(manifest)
        real = [row for row in rows if row["generated"] == "0"]
        assert len(real) == sum(COUNTS) and all(row["source"] == "" for row in rows if row["generated"] == "1")
        for row in real:
            path = Path(row["source"])
            assert path.is_file() and path.parent.name == row["class"] and path.parent.parent == skewed["tree"], row
        if out != "-":
            with np.load(out) as f:
                images = f["images"]
            for k, row in enumerate(rows[:len(real)]):
                assert np.array_equal(np.asarray(Image.open(row["source"])), images[k])
    manifest = tmp_path / "a.csv"
    r = run_cli("balance", skewed["npz"], "-o", tmp_path / "a.npz", "--model", skewed["ckpt"], "--manifest", manifest)
    assert r.code == 0, r.err
    real = [row["source"] for row in _manifest(manifest) if row["generated"] == "0"]
    assert real == [f"{skewed['npz']}#{i}" for i in range(sum(COUNTS))]


def test_a_failure_writing_out_leaves_no_saved_model(skewed, tmp_path, monkeypatch):
    """--save-model appears only with a complete OUT: Ctrl-C while OUT is written leaves neither."""
    import gantools.balance

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(gantools.balance, "write_arrays", interrupted)
    r = run_cli("balance", skewed["npz"], "-o", tmp_path / "b.npz", "--save-model", tmp_path / "bal.pt", *TRAIN)
    assert r.code == 130 and r.err.strip().splitlines()[-1] == "gantools: interrupted", r.err
    assert os.listdir(tmp_path) == []
    monkeypatch.undo()
    r = run_cli("balance", skewed["npz"], "-o", tmp_path / "b.npz", "--save-model", tmp_path / "bal.pt", *TRAIN)
    assert r.code == 0, r.err
    assert sorted(os.listdir(tmp_path)) == ["b.npz", "bal.pt"] and "saved the balancer to" in r.err


def test_the_classifiers_rate_decays_linearly_to_zero(monkeypatch):
    """--evaluate's classifiers end on a settled model: at a constant rate the last weights were one noisy
    iterate (bench/RESULTS.md, balance, tenth session)."""
    import torch

    from gantools.balance import LabelledImages, train_classifier

    rates = []
    step = torch.optim.Adam.step

    def recording_step(self, *args, **kwargs):
        rates.append(self.param_groups[0]["lr"])
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", recording_step)
    x, y, names = _skewed()
    data = LabelledImages(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(y).long(), names, "toy")
    train_classifier(data, epochs=2, seed=0)
    assert len(rates) == 2 * -(-len(y) // 64)
    assert rates[0] == pytest.approx(1e-3) and rates[-1] == pytest.approx(1e-3 / len(rates))
    assert all(a > b for a, b in zip(rates, rates[1:]))


# --real-share and --min-generated: the fill measured to beat oversampling (bench/RESULTS.md, balance)
SHARE = ["--real-share", "0.5", "--min-generated", "2"]
# COUNTS [12, 9, 4, 3] filled to 12: gaps 0, 3, 8, 9; copies half of each gap rounded half up: 0, 2, 4, 5; the rest
# generated, at least 2 per class: 2, 2, 4, 4 (circle and square end above 12)
SHARE_COPIES, SHARE_GENERATED = [0, 2, 4, 5], [2, 2, 4, 4]


def test_plan_fill_splits_each_gap_and_gives_every_class_its_minimum():
    from gantools.balance import plan_fill
    from gantools.errors import UsageError

    plan = plan_fill(COUNTS, [12] * 4, 0.5, 2)
    assert plan.copies == SHARE_COPIES and plan.generated == SHARE_GENERATED
    assert plan.generated_labels().tolist() == [0, 0, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3]
    paper = plan_fill(COUNTS, [12] * 4)
    assert paper.copies == [0] * 4 and paper.generated == [0, 3, 8, 9]
    assert plan_fill([5, 1], [5, 9], 0.25, 0).copies == [0, 2]  # 0.25 x 8 = 2
    with pytest.raises(UsageError, match="--real-share 1: must be"):
        plan_fill(COUNTS, [12] * 4, 1.0)
    with pytest.raises(UsageError, match="--min-generated -1: must be"):
        plan_fill(COUNTS, [12] * 4, 0.0, -1)


def _is_copy(row: dict, image: np.ndarray, original: np.ndarray) -> bool:
    """Whether `image` is `original`, mirrored left-right when the manifest row says flipped."""
    return np.array_equal(image, original[:, ::-1] if row["flipped"] == "1" else original)


def test_real_share_writes_copies_of_each_classs_own_images_beside_the_generated(skewed, tmp_path):
    from PIL import Image

    out = tmp_path / "mixed"
    r = run_cli("balance", skewed["tree"], "-o", out, "--model", skewed["ckpt"], *SHARE, "--json")
    assert r.code == 0, r.err
    summary = json.loads(r.text)
    rows = _manifest(out / "manifest.csv")
    assert sorted(row["image"] for row in rows) == sorted(str(p.relative_to(out)) for p in out.rglob("*.png"))
    names = sorted(skewed["names"])  # a folder tree's classes are its sorted folder names
    flips = []
    for k, name in enumerate(skewed["names"]):
        copies, generated = sorted((out / name).glob("copy-*.png")), sorted((out / name).glob("gen-*.png"))
        assert (len(copies), len(generated)) == (SHARE_COPIES[k], SHARE_GENERATED[k])
        assert len(list((out / name).glob("*.png"))) == COUNTS[k] + SHARE_COPIES[k] + SHARE_GENERATED[k]
        c = summary["classes"][names.index(name)]
        assert (c["real"], c["copied"], c["generated"]) == (COUNTS[k], SHARE_COPIES[k], SHARE_GENERATED[k])
        mine = {row["image"]: row for row in rows if row["class"] == name}
        for p in copies:  # a copy of one of its own class's originals, which the manifest names
            row = mine[f"{name}/{p.name}"]
            assert (row["generated"], row["copy"]) == ("0", "1")
            source = Path(row["source"])
            assert source.parent == skewed["tree"] / name
            assert _is_copy(row, np.asarray(Image.open(p)), np.asarray(Image.open(source)))
            flips.append(row["flipped"])
        assert all(mine[f"{name}/{p.name}"]["copy"] == "0" for p in generated)
    assert set(flips) == {"0", "1"}  # each copy mirrored with probability 1/2: 11 copies show both


def test_real_share_in_an_npz_flags_the_copies_and_evaluate_trains_on_the_same_fill(skewed, tmp_path):
    out, manifest = tmp_path / "m.npz", tmp_path / "m.csv"
    r = run_cli("balance", skewed["npz"], "-o", out, "--model", skewed["ckpt"], *SHARE, "--manifest", manifest)
    assert r.code == 0, r.err
    rows, n, copies = _manifest(manifest), len(skewed["y"]), sum(SHARE_COPIES)
    with np.load(out) as f:
        images, labels, generated, copied = f["images"], f["labels"], f["generated"], f["copied"]
    assert np.array_equal(images[:n], skewed["x"])  # the originals first, then the copies, then the generated
    assert copied.tolist() == [False] * n + [True] * copies + [False] * sum(SHARE_GENERATED)
    assert generated.tolist() == [False] * (n + copies) + [True] * sum(SHARE_GENERATED)
    assert [row["copy"] == "1" for row in rows] == copied.tolist()
    for i in range(n, n + copies):
        source = int(rows[i]["source"].rpartition("#")[2])
        assert labels[i] == skewed["y"][source] and _is_copy(rows[i], images[i], skewed["x"][source])
    assert np.bincount(labels[n:], minlength=4).tolist() == [a + b for a, b in zip(SHARE_COPIES, SHARE_GENERATED)]
    # --evaluate's arm (b) is this fill of its training split
    r = run_cli("balance", skewed["npz"], "--evaluate", "--model", skewed["ckpt"], "--test-split", "0.25",
                "--classifier-epochs", "1", *SHARE, "--json")
    assert r.code == 0, r.err
    report = json.loads(r.text)
    assert (report["real_share"], report["min_generated"]) == (0.5, 2)
    from gantools.balance import plan_fill

    train = [c["train"] for c in report["classes"]]
    plan = plan_fill(train, [max(train)] * 4, 0.5, 2)
    assert [c["copied"] for c in report["classes"]] == plan.copies
    assert [c["generated"] for c in report["classes"]] == plan.generated
    assert report["columns"]["balanced"]["train_images"] == sum(train) + sum(plan.copies) + sum(plan.generated)


@pytest.mark.parametrize("args, words", [
    (["--real-share", "1"], "--real-share 1: must be a number in [0, 1)"),
    (["--min-generated", "-3"], "--min-generated -3: must be an integer >= 0"),
    (["--real-share", "0.5", "--only-generated"], "--only-generated and --real-share"),
])
def test_real_share_and_min_generated_out_of_range_are_refused(skewed, tmp_path, args, words):
    r = run_cli("balance", skewed["npz"], "-o", tmp_path / "o.npz", "--model", skewed["ckpt"], *args)
    assert r.code == 2 and r.out == b"", r.err
    assert len(r.err.strip().splitlines()) == 1 and words in r.err, r.err
    assert list(tmp_path.iterdir()) == []
