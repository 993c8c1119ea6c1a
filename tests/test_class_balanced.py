"""`--class-balanced` (gantools.data.sampling.class_balanced_order): real batches with every class equally
often, a rare class's images repeated evenly, a common class's each at most once per epoch; bagan's default."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from gantools.data import toy
from gantools.data.sampling import class_balanced_order
from gantools.train import TrainConfig, Trainer


@pytest.mark.parametrize("counts", [[100, 10, 3], [5, 5], [7, 1, 20, 2]])
def test_an_epoch_draws_every_class_equally_often(counts):
    labels = torch.cat([torch.full((n,), k) for k, n in enumerate(counts)])[torch.randperm(sum(counts))]
    order = class_balanced_order(labels, torch.Generator().manual_seed(1))
    assert len(order) == len(labels)
    per_class = torch.bincount(labels[order], minlength=len(counts))
    assert int(per_class.max() - per_class.min()) <= 1
    share = len(labels) // len(counts)
    for k, n in enumerate(counts):
        seen = torch.bincount(order[labels[order] == k], minlength=len(labels))[labels == k]
        if n >= share + 1:  # a common class: no image twice, none of them more than its share
            assert int(seen.max()) <= 1
        else:  # a rare class: every image, as evenly as the places allow
            assert int(seen.min()) >= 1 and int(seen.max() - seen.min()) <= 1


def test_the_order_is_the_generators():
    labels = torch.tensor([0] * 30 + [1] * 4)
    a, b, c = (class_balanced_order(labels, torch.Generator().manual_seed(s)) for s in (3, 3, 4))
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.fixture(scope="module")
def skewed(tmp_path_factory) -> Path:
    """toy:shapes with class 0 kept at 6 of its images, against ~50 in each of the 3 others."""
    images, labels = toy.shapes(n=200, seed=5)
    keep = np.flatnonzero(labels != 0).tolist() + np.flatnonzero(labels == 0)[:6].tolist()
    path = tmp_path_factory.mktemp("skewed") / "skewed.npz"
    np.savez(path, images=images[keep], labels=labels[keep])
    return path


def _share_of_rare(tmp_path, data: Path, **extra) -> float:
    cfg = TrainConfig(model="dcgan", data=str(data), steps=1, batch_size=16, device="cpu", sample_every=0,
                      out=str(tmp_path / f"run-{len(list(tmp_path.iterdir()))}"), hparams={"ngf": 8, "ndf": 8}, **extra)
    batches = Trainer(cfg)._real_batches()
    labels = torch.cat([next(batches)[1].cpu() for _ in range(40)])
    return float((labels == 0).float().mean())


def test_the_trainer_draws_real_batches_balanced_only_when_asked(tmp_path, skewed):
    with np.load(skewed) as f:
        k, rare = len(np.unique(f["labels"])), float((f["labels"] == 0).mean())
    assert _share_of_rare(tmp_path, skewed) == pytest.approx(rare, abs=0.02)
    assert _share_of_rare(tmp_path, skewed, class_balanced=True) == pytest.approx(1 / k, abs=0.03)


def test_bagan_balances_by_default_and_the_option_turns_it_off(cli):
    assert "class_balanced = true" in cli("train", "bagan", "--data", "toy:shapes", "--dry-run").out.decode()
    assert "class_balanced = false" in cli("train", "bagan", "--data", "toy:shapes", "--no-class-balanced", "--dry-run").out.decode()
    assert "class_balanced = false" in cli("train", "dcgan", "--data", "toy:shapes", "--dry-run").out.decode()


def test_unlabelled_data_is_refused_in_one_line(cli, tmp_path):
    r = cli("train", "gan", "--data", "toy:ring", "--class-balanced", "--steps", "1", "--out", str(tmp_path / "run"))
    assert r.code == 2
    assert r.err.strip().count("\n") == 0 and "--class-balanced" in r.err and "no labels" in r.err
    assert not (tmp_path / "run").exists()
