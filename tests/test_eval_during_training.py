"""--eval-every / --eval-real / --patience: a metric during training, checkpoints/best.pt, early stopping."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import TINY_DCGAN
from gantools.checkpoint import load_checkpoint
from gantools.errors import UsageError
from gantools.metrics import inception
from gantools.metrics.training import TrainingEvaluator
from gantools.train import TrainConfig, resume, train


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> str:
    from gantools.data import toy

    path = tmp_path_factory.mktemp("data") / "shapes.npz"
    np.savez(path, images=toy.shapes(n=40, seed=1)[0])
    return str(path)


class TinyFeatures(torch.nn.Module):
    """A stand-in for the Inception trunk: 2048 fixed random projections of the 8x8-pooled image."""

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(3 * 8 * 8, 2048)
        torch.nn.init.normal_(self.proj.weight, generator=torch.Generator().manual_seed(0))

    def forward(self, x):
        return self.proj(torch.nn.functional.adaptive_avg_pool2d(x, 8).flatten(1))


@pytest.fixture
def tiny_features(monkeypatch):
    net = TinyFeatures().eval()
    monkeypatch.setattr(inception, "load_trunk", lambda *a, **k: net)
    return net


def _cfg(tmp_path, data: str, name: str = "run", **extra) -> TrainConfig:
    return TrainConfig(**{"model": "dcgan", "data": data, "batch_size": 8, "seed": 2, "device": "cpu",
                          "sample_every": 0, "log_every": 1, "ckpt_every": 100, "out": str(tmp_path / name),
                          "hparams": dict(TINY_DCGAN), "eval_real": data, "eval_n": 12, **extra})


def _evaluations(run) -> list[dict]:
    return [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "fid" in r]


def _scores(monkeypatch, values):
    """TrainingEvaluator.score returns `values` in turn (to steer improvement and patience)."""
    it = iter(values)
    monkeypatch.setattr(TrainingEvaluator, "score", lambda self, G, model: next(it))


@pytest.mark.slow  # ~30 s on a loaded 2-core CPU: four feature passes at 299 px
def test_the_metric_is_logged_and_best_pt_is_what_evaluate_scores(tmp_path, shapes, tiny_features, capfd):
    from gantools.metrics.evaluate import evaluate

    last = train(_cfg(tmp_path, shapes, steps=4, eval_every=2, ema=True))
    run = tmp_path / "run"
    evals = _evaluations(run)
    assert [r["step"] for r in evals] == [2, 4]
    assert all(r["eval_seconds"] > 0 and np.isfinite(r["fid"]) for r in evals)
    best = min(evals, key=lambda r: r["fid"])
    assert evals[-1]["best_fid"] == best["fid"]
    ck = load_checkpoint(run / "checkpoints" / "best.pt")
    assert ck["step"] == best["step"] and ck["eval"]["best"] == best["fid"]
    assert load_checkpoint(last)["eval"]["best_step"] == best["step"]
    # the training-time score is `gantools evaluate best.pt` on the EMA generator, same n and seed
    stats = tmp_path / "real.npz"  # all 40 real images' statistics, as the run read them
    evaluate(shapes, save_stats=stats)
    again = evaluate(str(run / "checkpoints" / "best.pt"), str(stats), ["fid"], n=12, seed=2)["metrics"]["fid"]
    assert again == pytest.approx(best["fid"], rel=1e-6)
    assert "evaluation took" in capfd.readouterr().err


def test_patience_stops_after_k_evaluations_without_improvement(tmp_path, shapes, monkeypatch):
    _scores(monkeypatch, [5.0, 4.0, 4.5, 4.2, 3.0])
    last = train(_cfg(tmp_path, shapes, steps=20, eval_every=2, patience=2))
    ck = load_checkpoint(last)
    assert ck["step"] == 8  # evaluations at 2, 4 (best), 6, 8: two without a better score
    assert (ck["eval"]["best"], ck["eval"]["best_step"], ck["eval"]["since_best"]) == (4.0, 4, 2)
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")["step"] == 4


def test_resume_keeps_the_best_so_far(tmp_path, shapes, monkeypatch):
    _scores(monkeypatch, [3.0, 2.0])
    train(_cfg(tmp_path, shapes, steps=4, eval_every=2, patience=3))
    _scores(monkeypatch, [2.5, 2.2])  # worse than 2.0: best.pt stays step 4's, the count goes on
    ck = load_checkpoint(resume(str(tmp_path / "run"), {"steps": 8}))
    assert (ck["eval"]["best"], ck["eval"]["best_step"], ck["eval"]["since_best"]) == (2.0, 4, 2)
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")["step"] == 4
    assert [r["fid"] for r in _evaluations(tmp_path / "run")] == [3.0, 2.0, 2.5, 2.2]


@pytest.mark.parametrize("extra, message", [
    ({"eval_every": 2, "eval_real": None}, "--eval-every 2: give the real images"),
    ({"eval_every": 0}, "say how often to evaluate"),
    ({"eval_every": 0, "eval_real": None, "patience": 2}, "--patience 2: early stopping needs evaluations"),
])
def test_incomplete_evaluation_options_are_refused(tmp_path, shapes, extra, message):
    with pytest.raises(UsageError, match=message):
        train(_cfg(tmp_path, shapes, steps=2, **extra))
    assert not (tmp_path / "run").exists()


def test_kid_needs_images_not_a_statistics_file(tmp_path, shapes, monkeypatch):
    monkeypatch.setattr("gantools.metrics.stats.is_stats_file", lambda path: True)
    with pytest.raises(UsageError, match="--eval-metric kid needs images"):
        train(_cfg(tmp_path, shapes, steps=2, eval_every=2, eval_metric="kid"))


@pytest.mark.slow
def test_fid_with_the_inception_network_matches_evaluate(tmp_path, shapes, inception_trunk):
    from gantools.metrics.evaluate import evaluate

    train(_cfg(tmp_path, shapes, steps=2, eval_every=2, eval_n=16))
    (rec,) = _evaluations(tmp_path / "run")
    stats = tmp_path / "real.npz"
    evaluate(shapes, save_stats=stats)
    again = evaluate(str(tmp_path / "run" / "checkpoints" / "best.pt"), str(stats), ["fid"], n=16, seed=2)
    assert again["metrics"]["fid"] == pytest.approx(rec["fid"], rel=1e-6)
