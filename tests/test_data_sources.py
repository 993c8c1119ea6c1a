"""Every accepted data source, and the bad ones: one line, the right exit code, nothing written."""

from __future__ import annotations

import gzip
import io
import struct
import subprocess
import sys
import zipfile

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from conftest import shared
from gantools.data import open_source
from gantools.data.stream import StreamWriter
from gantools.errors import GantoolsError


def _png(path, value, size=(12, 10), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    Image.fromarray(np.full(shape, value, np.uint8), mode).save(path)


def test_folder_recursive_unlabelled(tmp_path):
    _png(tmp_path / "a.png", 10)
    _png(tmp_path / "deep" / "er" / "b.jpg", 200)
    (tmp_path / "notes.txt").write_text("not an image")
    ds = open_source(str(tmp_path))
    assert len(ds) == 2 and ds.labels is None and ds.class_names == []
    assert (ds.channels, ds.height, ds.width) == (3, 10, 12)
    assert ds.images.dtype == torch.uint8 and int(ds.images[0].float().mean()) == 10


def test_class_folders_give_labels_and_zip_is_the_same(tmp_path):
    root = tmp_path / "data"
    for cls, v in (("cat", 50), ("dog", 150)):
        for i in range(3):
            _png(root / cls / f"{i}.png", v, mode="L")
    ds = open_source(str(root))
    assert ds.class_names == ["cat", "dog"] and ds.channels == 1
    means = ds.images.float().mean((1, 2, 3))
    assert torch.equal(ds.labels, (means > 100).long())  # dog images are the bright ones
    z = tmp_path / "data.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for p in sorted(root.rglob("*.png")):
            zf.write(p, "train/" + str(p.relative_to(root)))
    dz = open_source(str(z))
    assert dz.class_names == ["cat", "dog"] and torch.equal(dz.images, ds.images) and torch.equal(dz.labels, ds.labels)
    inner = open_source(f"{z}/train/dog")
    assert len(inner) == 3 and inner.labels is None
    with pytest.raises(GantoolsError, match="no folder"):
        open_source(f"{z}/test")


@pytest.mark.parametrize("layout", ["nhwc", "nchw", "nhw"])
def test_h5_layouts_with_labels(tmp_path, layout):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (5, 8, 8, 3) if layout != "nhw" else (5, 8, 8), dtype=np.uint8)
    stored = imgs.transpose(0, 3, 1, 2) if layout == "nchw" else imgs
    p = tmp_path / "d.h5"
    with h5py.File(p, "w") as f:
        f["images"] = stored
        f["labels"] = np.array([0, 1, 2, 1, 0])
    ds = open_source(str(p))
    expect = imgs.transpose(0, 3, 1, 2) if layout != "nhw" else imgs[:, None]
    assert np.array_equal(ds.images.numpy(), expect)
    assert ds.labels.tolist() == [0, 1, 2, 1, 0] and ds.num_classes == 3


def test_npz_keys_and_float_ranges(tmp_path):
    x = np.linspace(-1, 1, 2 * 4 * 4).reshape(2, 4, 4).astype(np.float32)
    np.savez(tmp_path / "a.npz", x=x, y=np.array([1, 0]))
    ds = open_source(str(tmp_path / "a.npz"))
    assert ds.images[0, 0, 0, 0] == 0 and ds.images[1, 0, 3, 3] == 255 and ds.labels.tolist() == [1, 0]
    np.savez(tmp_path / "b.npz", images=np.zeros((3, 6, 6, 3), np.uint8))
    assert len(open_source(str(tmp_path / "b.npz"))) == 3
    vec = np.random.default_rng(0).standard_normal((50, 5)).astype(np.float32)
    np.savez(tmp_path / "v.npz", x=vec)
    vs = open_source(str(tmp_path / "v.npz"))
    assert vs.kind == "vector" and vs.dim == 5 and torch.equal(vs.data, torch.from_numpy(vec))


def _idx(path, arr):
    header = struct.pack(">HBB", 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def test_idx_files_with_sibling_labels(tmp_path):
    imgs = np.arange(3 * 5 * 5).reshape(3, 5, 5) % 256
    _idx(tmp_path / "train-images-idx3-ubyte.gz", imgs)
    _idx(tmp_path / "train-labels-idx1-ubyte.gz", np.array([2, 0, 1]))
    ds = open_source(str(tmp_path / "train-images-idx3-ubyte.gz"))
    assert np.array_equal(ds.images[:, 0].numpy(), imgs) and ds.labels.tolist() == [2, 0, 1]
    assert len(open_source(str(tmp_path))) == 3  # a folder of IDX files


def test_real_mnist_and_cifar_zip():
    mnist = open_source(str(shared("mnist", "t10k-images-idx3-ubyte.gz")))
    assert len(mnist) == 10000 and (mnist.channels, mnist.height) == (1, 28) and mnist.num_classes == 10
    cifar = open_source(str(shared("cifar10", "cifar10-jpeg.zip")) + "/test/cat")
    assert len(cifar) == 1000 and (cifar.channels, cifar.height, cifar.width) == (3, 32, 32)


def test_resolution_and_channel_overrides():
    ds = open_source("toy:shapes", resolution=16, channels=1)
    assert (ds.channels, ds.height, ds.width) == (1, 16, 16) and ds.num_classes == 4


def test_stream_round_trip():
    rng = np.random.default_rng(1)
    imgs = rng.integers(0, 256, (4, 6, 6, 3), dtype=np.uint8)
    buf = io.BytesIO()
    w = StreamWriter(buf, ["a", "b"])
    w.write(imgs[:3], np.array([0, 1, 1]), rng.standard_normal((3, 2)))
    w.write(imgs[3:], np.array([0]), rng.standard_normal((1, 2)))
    w.close()
    ds = open_source("-", stdin=io.BytesIO(buf.getvalue()))
    assert np.array_equal(ds.images.permute(0, 2, 3, 1).numpy(), imgs)
    assert ds.labels.tolist() == [0, 1, 1, 0] and ds.class_names == ["a", "b"] and ds.latents.shape == (4, 2)


def test_toy_sets_are_deterministic():
    a, b = open_source("toy:ring"), open_source("toy:ring")
    assert torch.equal(a.data, b.data) and a.dim == 2
    assert open_source("toy:grid").data.shape == (50000, 2)


# ---------------------------------------------------------------- bad sources through the CLI


def _assert_one_line_failure(r, code, *needles):
    assert r.code == code, (r.code, r.err)
    assert r.err.count("\n") == 1, r.err
    assert "Traceback" not in r.err
    for n in needles:
        assert n in r.err, (n, r.err)


def test_empty_folder(tmp_path, cli):
    (tmp_path / "empty").mkdir()
    r = cli("train", "dcgan", "--data", tmp_path / "empty", "--out", tmp_path / "run", "--steps", "1")
    _assert_one_line_failure(r, 1, "empty", "no images found")
    assert not (tmp_path / "run").exists()


def test_corrupt_images_skipped_with_one_warning_or_fail_when_all_bad(tmp_path, cli):
    root = tmp_path / "imgs"
    for i in range(4):
        _png(root / f"{i}.png", 60 * i)
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (root / "also.jpg").write_bytes(b"not a jpeg at all")
    ds = open_source(str(root))
    assert len(ds) == 4
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.png").write_bytes(b"junk")
    r = cli("train", "dcgan", "--data", bad, "--out", tmp_path / "run", "--steps", "1")
    _assert_one_line_failure(r, 1, "bad")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("budget", [None, 1], ids=["in-memory", "lazy"])
def test_files_say_which_file_each_row_came_from_skipping_unreadable_ones(tmp_path, budget):
    """`files` (what balance copies originals by) stays row for row with the images, in memory or lazy."""
    root = tmp_path / "imgs"
    for cls, v in (("a", 40), ("b", 200)):
        for i in range(3):
            _png(root / cls / f"{i}.png", v + 10 * i, mode="L")
    (root / "a" / "1b.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")  # sorts between 1.png and 2.png
    ds = open_source(str(root), budget=budget)
    assert (ds.images is None) == (budget is not None)
    ds = ds.in_memory()
    names = [f"{path.split('/')[-2]}/{path.split('/')[-1]}" for path, member in ds.files]
    assert names == ["a/0.png", "a/1.png", "a/2.png", "b/0.png", "b/1.png", "b/2.png"]
    assert all(member is None for _, member in ds.files)
    for (path, _), image in zip(ds.files, ds.images):
        assert int(image.float().mean()) == int(np.asarray(Image.open(path)).mean())
    z = tmp_path / "imgs.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for p in sorted(root.rglob("*.png")):
            zf.write(p, str(p.relative_to(root)))
    dz = open_source(str(z), budget=budget).in_memory()
    assert [(path, member) for path, member in dz.files] == [(str(z), n) for n in names]
    assert torch.equal(dz.images, ds.images) and torch.equal(dz.labels, ds.labels)


def test_corrupt_image_warning_is_one_line(tmp_path):
    root = tmp_path / "imgs"
    for i in range(2):
        _png(root / f"{i}.png", 100)
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    p = subprocess.run([sys.executable, "-c", f"from gantools.data import open_source; open_source({str(root)!r})"],
                       capture_output=True, text=True)
    assert p.returncode == 0
    warnings = [l for l in p.stderr.splitlines() if "warning" in l]
    assert len(warnings) == 1 and "skipped 1 unreadable file" in warnings[0] and "broken.png" in warnings[0]


def test_wrong_npz_keys(tmp_path, cli):
    np.savez(tmp_path / "w.npz", pixels=np.zeros((2, 4, 4)))
    r = cli("train", "dcgan", "--data", tmp_path / "w.npz", "--out", tmp_path / "run")
    _assert_one_line_failure(r, 1, "w.npz", "'images' or 'x'", "pixels")
    assert not (tmp_path / "run").exists()


def test_truncated_h5(tmp_path, cli):
    p = tmp_path / "t.h5"
    with h5py.File(p, "w") as f:
        f["images"] = np.zeros((64, 32, 32, 3), np.uint8) + 7
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    r = cli("train", "dcgan", "--data", p, "--out", tmp_path / "run")
    _assert_one_line_failure(r, 1, "t.h5")
    assert not (tmp_path / "run").exists()


def test_missing_and_unknown_sources(tmp_path, cli):
    r = cli("train", "dcgan", "--data", tmp_path / "nope")
    _assert_one_line_failure(r, 1, "nope", "no such file")
    (tmp_path / "table.csv").write_text("a,b\n1,2\n")
    r = cli("train", "dcgan", "--data", tmp_path / "table.csv")
    _assert_one_line_failure(r, 1, "table.csv", "unrecognised data source")
    r = cli("train", "dcgan", "--data", "toy:nope")
    _assert_one_line_failure(r, 2, "toy:nope")
    r = cli("train", "gan", "--data", "toy:shapes", "--steps", "1", "--out", tmp_path / "run")
    _assert_one_line_failure(r, 2, "takes vector data")
