"""A metric during training (`gantools train --eval-every N --eval-real REAL`): FID or KID of the
sampling generator against REAL's features or statistics, read once per run, and the best score so
far, which the trainer keeps in its checkpoints (checkpoints/best.pt) and stops on (--patience)."""

from __future__ import annotations

import math
import time

import torch

from gantools.errors import GantoolsError, UsageError
from gantools.log import info


class TrainingEvaluator:
    """Scores a generator against REAL (a data source or, for FID, a statistics file) with `n`
    images generated from `seed` exactly as `gantools evaluate CKPT -n N --seed SEED` draws them."""

    def __init__(self, real: str, metric: str, n: int, seed: int, device: torch.device, patience: int | None):
        from gantools.metrics.stats import is_stats_file
        from gantools.registry import METRICS

        self.metric, self.n, self.seed, self.device, self.patience = metric, n, seed, device, patience
        self.spec = METRICS.get(metric)
        self.best, self.best_step, self.since_best = math.inf, None, 0
        if is_stats_file(real):
            if metric != "fid":
                raise UsageError(f"--eval-real {real}: a statistics file holds FID's mean and covariance; "
                                 f"--eval-metric {metric} needs images")
            self._source = None
        else:
            self._source = self._open(real)  # a bad source is refused before training, on every rank
        self._real_spec, self._real = real, None

    @property
    def real(self):
        """REAL's features or statistics, read at the first score: under torchrun rank 0 alone scores,
        so the other ranks never extract them."""
        if self._real is None:
            start = time.perf_counter()
            self._real = (self._stats_side(self._real_spec) if self._source is None
                          else self._data_side(self._source, self._real_spec))
            info(f"--eval-real {self._real_spec}: {self._real.count} real images' features read in "
                 f"{time.perf_counter() - start:.1f} s")
        return self._real

    def _extractor(self):
        from gantools.metrics.features import Extractor

        return Extractor(self.device)

    def _stats_side(self, path: str):
        from gantools.metrics.features import FeatureSet
        from gantools.metrics.stats import load_stats

        st = load_stats(path)
        return FeatureSet(source=path, count=st.count, network=st.network, preprocessing=st.preprocessing, stats=st)

    @staticmethod
    def _open(spec: str):
        from gantools.data import open_source

        try:
            s = open_source(spec)
        except GantoolsError as e:
            raise UsageError(f"--eval-real: {e}") from None
        if getattr(s, "kind", "image") != "image":
            raise UsageError(f"--eval-real {spec}: holds {s.kind}s, not images")
        return s

    def _data_side(self, source, spec: str):
        ex = self._extractor()
        return ex.run(source.batches(max(ex.batch_size, 64)), spec, len(source), progress=False)

    @torch.no_grad()
    def score(self, G: torch.nn.Module, model: dict) -> float:
        """The metric of G's samples; `model` holds a checkpoint's model, hparams, data and prior."""
        from gantools.generate import generate_batches

        ex = self._extractor()
        was_training = G.training
        G.eval()
        try:
            batches = generate_batches(model, self.n, self.seed, max(ex.batch_size, 64), self.device, G=G)
            fake = ex.run(((x, y) for x, y, _z in batches), "G", self.n, progress=False)
        finally:
            G.train(was_training)
        value = self.spec.compute(fake, self.real, {"device": "cpu", "seed": self.seed})
        return float(value["mean"] if isinstance(value, dict) else value)

    def record(self, step: int, value: float) -> bool:
        """Note a score at `step`; True when it is the best so far."""
        if value < self.best:
            self.best, self.best_step, self.since_best = value, step, 0
            return True
        self.since_best += 1
        return False

    def out_of_patience(self) -> bool:
        return self.patience is not None and self.since_best >= self.patience

    def state(self) -> dict:
        return {"metric": self.metric, "best": self.best, "best_step": self.best_step, "since_best": self.since_best}

    def load_state(self, state: dict) -> None:
        if state.get("metric") == self.metric:
            self.best, self.best_step = float(state["best"]), state["best_step"]
            self.since_best = int(state["since_best"])
