"""Inception Score (Salimans et al. 2016), the published convention.

Logits of the 2015-12-05 graph's 1008-way layer without its bias, softmax in
float64, the images cut in `splits` consecutive parts (part i is
[i*N//splits, (i+1)*N//splits)), exp of the mean KL(p(y|x) || p(y)) per part;
reported as the mean and (population) standard deviation of the part scores.
Needs the full Inception weights (see gantools.metrics.inception).
"""

from __future__ import annotations

import numpy as np

from gantools.errors import GantoolsError
from gantools.registry import MetricSpec, register_metric

DEFAULT_SPLITS = 10


def inception_score(logits: np.ndarray, splits: int = DEFAULT_SPLITS) -> dict:
    x = np.asarray(logits, dtype=np.float64)
    n = len(x)
    if splits < 1:
        raise GantoolsError(f"IS needs at least one split, got {splits}")
    if n < splits:
        raise GantoolsError(f"IS with {splits} splits needs at least {splits} images, got {n}")
    x = x - x.max(axis=1, keepdims=True)
    logp = x - np.log(np.exp(x).sum(axis=1, keepdims=True))
    p = np.exp(logp)
    scores = []
    for i in range(splits):
        part_p, part_logp = p[i * n // splits:(i + 1) * n // splits], logp[i * n // splits:(i + 1) * n // splits]
        with np.errstate(divide="ignore", invalid="ignore"):
            log_py = np.log(part_p.mean(axis=0))
            # p log(p / p_y) with 0 log 0 = 0 (a class no image of the part gives any mass).
            terms = np.where(part_p > 0, part_p * (part_logp - log_py[None, :]), 0.0)
        kl = terms.sum(axis=1).mean()
        scores.append(np.exp(kl))
    s = np.asarray(scores)
    return {"mean": float(s.mean()), "std": float(s.std()), "splits": int(splits)}


def compute(fake, real=None, options: dict | None = None) -> dict:
    if fake.logits is None:
        raise GantoolsError(f"{fake.source}: no Inception logits (IS needs the full Inception weights)")
    return inception_score(fake.logits, (options or {}).get("is_splits", DEFAULT_SPLITS))


register_metric(MetricSpec(
    name="is",
    description="Inception Score: 1008-way logits without bias, 10 splits; higher is better (needs the full weights)",
    compute=compute,
    needs_real=False,
))
