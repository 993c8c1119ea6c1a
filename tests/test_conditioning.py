"""The commands know conditioning (issue 12, item 6): `sample --class` lists and the default spread of
classes, `evaluate --per-class` on a conditional checkpoint, the training grid's row per class."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from gantools.data import toy

CLASSES = ["cat", "dog", "fox"]  # folder names: circles, squares, triangles of toy:shapes


def _class_folders(root: Path, counts: dict[str, int], seed: int = 0) -> Path:
    """Class folders of toy shapes (folder i of CLASSES holds shape i)."""
    images, labels = toy.shapes(n=400, seed=seed)
    for name, count in counts.items():
        (root / name).mkdir(parents=True)
        shape = CLASSES.index(name) if name in CLASSES else 3
        for i, img in enumerate(images[labels == shape][:count]):
            Image.fromarray(img).save(root / name / f"{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def cgan_ckpt(tmp_path_factory) -> Path:
    """A cgan (8 base channels) trained 2 steps on three class folders."""
    from gantools.train import TrainConfig, train

    tmp = tmp_path_factory.mktemp("cgan")
    data = _class_folders(tmp / "data", {name: 8 for name in CLASSES})
    return Path(train(TrainConfig(model="cgan", data=str(data), steps=2, batch_size=8, device="cpu", sample_every=0,
                                  out=str(tmp / "run"), hparams={"ngf": 8, "ndf": 8})))


def _sample(cli, ckpt, out, *args):
    r = cli("sample", ckpt, "--device", "cpu", "-o", out, *args)
    assert r.code == 0, r.err
    return r


def test_sample_spreads_the_classes_in_turn_by_default(cli, cgan_ckpt, tmp_path):
    """Without --class image i is labelled i mod C, in the npz, the h5 and the stream alike, and a
    prefix of a longer draw is the shorter draw."""
    _sample(cli, cgan_ckpt, tmp_path / "a.npz", "-n", 8, "--seed", 4)
    _sample(cli, cgan_ckpt, tmp_path / "a.h5", "-n", 8, "--seed", 4, "-b", 3)
    stream = _sample(cli, cgan_ckpt, "-", "-n", 5, "--seed", 4).out
    a = np.load(tmp_path / "a.npz")
    assert a["labels"].tolist() == [0, 1, 2, 0, 1, 2, 0, 1]
    with h5py.File(tmp_path / "a.h5") as f:
        assert f["labels"][:].tolist() == a["labels"].tolist()
        assert np.array_equal(f["images"][:], a["images"])
    with tarfile.open(fileobj=io.BytesIO(stream)) as tar:
        assert json.load(tar.extractfile("stream.json"))["class_names"] == CLASSES
        assert np.load(io.BytesIO(tar.extractfile("meta.npz").read()))["labels"].tolist() == [0, 1, 2, 0, 1]


def test_sample_takes_a_list_of_classes_by_index_or_name(cli, cgan_ckpt, tmp_path):
    """`--class fox,1` labels the images fox, dog, fox, ... and G draws each with its label: image i
    of a list equals image i of the default spread where both give it the same class."""
    _sample(cli, cgan_ckpt, tmp_path / "spread.npz", "-n", 6)
    _sample(cli, cgan_ckpt, tmp_path / "list.npz", "-n", 6, "--class", "fox,1")
    _sample(cli, cgan_ckpt, tmp_path / "same.npz", "-n", 6, "--class", "2,dog")
    spread, chosen, same = (np.load(tmp_path / f"{k}.npz") for k in ("spread", "list", "same"))
    assert chosen["labels"].tolist() == [2, 1, 2, 1, 2, 1]
    assert np.array_equal(chosen["images"], same["images"]) and np.array_equal(chosen["z"], spread["z"])
    agree = chosen["labels"] == spread["labels"]  # images 1 and 2 (dog, fox in both)
    assert agree.tolist() == [False, True, True, False, False, False]
    assert np.array_equal(chosen["images"][agree], spread["images"][agree])
    assert not np.array_equal(chosen["images"][0], spread["images"][0])  # same z, fox instead of cat


@pytest.mark.parametrize("value, words", [("1,", "an empty class"), ("3", "must be in 0..2"),
                                          ("cat,wolf", "not a class index or one of: cat, dog, fox")])
def test_a_bad_class_list_is_one_line_and_writes_nothing(cli, cgan_ckpt, tmp_path, value, words):
    r = cli("sample", cgan_ckpt, "-n", 2, "--class", value, "--device", "cpu", "-o", tmp_path / "x.npz")
    assert r.code == 2 and r.err.count("\n") == 1 and words in r.err, r.err
    assert not (tmp_path / "x.npz").exists()


@pytest.mark.slow
def test_evaluate_per_class_on_a_conditional_checkpoint(cli, cgan_ckpt, tmp_path):
    """A conditional FAKE checkpoint gets n/C images of each class, each class's FID is taken against
    REAL's images of the class of that name (REAL's extra class shifts its indices), and equals the
    FID of the same images sampled, sorted into class folders and scored as a labelled source."""
    real = _class_folders(tmp_path / "real", {"aardvark": 2, "cat": 2, "dog": 2, "fox": 3}, seed=1)
    r = cli("evaluate", cgan_ckpt, "--real", real, "-n", 9, "--per-class", "--json", "--device", "cpu")
    assert r.code == 0, r.err
    direct = json.loads(r.out)["per_class"]["classes"]
    assert {k: (v["fake_count"], v["real_count"]) for k, v in direct.items()} == {"cat": (3, 2), "dog": (3, 2),
                                                                                   "fox": (3, 3)}
    _sample(cli, cgan_ckpt, tmp_path / "fake.npz", "-n", 9)
    fake = np.load(tmp_path / "fake.npz")
    for i, (img, label) in enumerate(zip(fake["images"], fake["labels"])):
        (tmp_path / "fake" / CLASSES[label]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(tmp_path / "fake" / CLASSES[label] / f"{i}.png")
    r = cli("evaluate", tmp_path / "fake", "--real", real, "--per-class", "--json", "--device", "cpu")
    assert r.code == 0, r.err
    via_folders = json.loads(r.out)["per_class"]["classes"]
    for name, v in direct.items():
        assert v["fid"] == pytest.approx(via_folders[name]["fid"], rel=1e-5)
    assert len({round(v["fid"], 3) for v in direct.values()}) == 3  # three different comparisons


def test_training_grid_shows_one_row_per_class(cgan_ckpt, tmp_path):
    """A conditional model's grid: 8 images per class, row r labelled r, from the latents of
    `gantools sample --seed SEED`; an unconditional one keeps 64 images."""
    from gantools.data.writers import make_grid
    from gantools.generate import latents
    from gantools.train import TrainConfig, Trainer

    data = str(cgan_ckpt.parent.parent.parent / "data")
    tr = Trainer(TrainConfig(model="cgan", data=data, steps=1, batch_size=8, device="cpu", seed=7,
                             hparams={"ngf": 8, "ndf": 8}), run_dir=tmp_path / "c")
    assert tr.fixed_inputs["y"].tolist() == [r for r in range(3) for _ in range(8)]
    assert torch.equal(tr.fixed_inputs["z"], torch.from_numpy(latents(7, 24, 100)))
    grid = np.asarray(Image.open(tr.save_samples()))
    assert grid.shape[:2] == make_grid(np.zeros((24, 32, 32, 3), np.uint8), nrow=8).shape[:2]
    plain = Trainer(TrainConfig(model="dcgan", data=data, steps=1, batch_size=8, device="cpu", seed=7,
                                hparams={"ngf": 8, "ndf": 8}), run_dir=tmp_path / "d")
    assert set(plain.fixed_inputs) == {"z"} and len(plain.fixed_inputs["z"]) == 64
