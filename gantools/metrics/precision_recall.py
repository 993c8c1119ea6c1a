"""Improved precision and recall (Kynkäänniemi et al. 2019), k = 3.

Each set's manifold is the union of balls around its samples whose radius is
the distance to the sample's k-th nearest neighbour in the same set.
Precision: the share of fake samples inside the real manifold; recall: the
share of real samples inside the fake manifold.

The paper used VGG16 fc2 features; gantools uses the same Inception pool3
features as FID, so the numbers are comparable with each other but not with
the paper's.
"""

from __future__ import annotations

import numpy as np

from gantools.errors import GantoolsError
from gantools.registry import MetricSpec, register_metric

DEFAULT_K = 3


def _sq_dists(a, b, a2, b2):
    return (a2[:, None] + b2[None, :] - 2.0 * (a @ b.T)).clamp_(min=0)


def _row_step(n_cols: int, budget_bytes: int = 256 << 20) -> int:
    return max(1, min(4096, budget_bytes // (4 * max(n_cols, 1))))


def knn_radii(x, k: int):
    """Squared distance from each row of x to its k-th nearest other row."""
    import torch

    x2 = (x * x).sum(1)
    out = torch.empty(len(x), dtype=x.dtype, device=x.device)
    step = _row_step(len(x))
    for s in range(0, len(x), step):
        d = _sq_dists(x[s:s + step], x, x2[s:s + step], x2)
        # k + 1 smallest: the first is the point itself (distance 0).
        out[s:s + step] = d.topk(k + 1, dim=1, largest=False).values[:, k]
    return out


def coverage(queries, support, radii):
    """Share of query rows within radius of at least one support row."""
    import torch

    q2, s2 = (queries * queries).sum(1), (support * support).sum(1)
    inside = torch.zeros(len(queries), dtype=torch.bool, device=queries.device)
    step = _row_step(len(support))
    for s in range(0, len(queries), step):
        d = _sq_dists(queries[s:s + step], support, q2[s:s + step], s2)
        inside[s:s + step] = (d <= radii[None, :]).any(1)
    return float(inside.double().mean())


def precision_recall(fake: np.ndarray, real: np.ndarray, k: int = DEFAULT_K, device: str = "cpu") -> dict:
    import torch

    if len(fake) <= k or len(real) <= k:
        raise GantoolsError(f"precision/recall with k={k} needs more than {k} images on each side, "
                            f"got {len(fake)} and {len(real)}")
    f = torch.from_numpy(np.ascontiguousarray(fake, dtype=np.float32)).to(device)
    r = torch.from_numpy(np.ascontiguousarray(real, dtype=np.float32)).to(device)
    with torch.inference_mode():
        precision = coverage(f, r, knn_radii(r, k))
        recall = coverage(r, f, knn_radii(f, k))
    return {"precision": precision, "recall": recall, "k": int(k)}


def compute(fake, real, options: dict | None = None) -> dict:
    o = options or {}
    return precision_recall(fake.features, real.features, o.get("pr_k", DEFAULT_K), o.get("device", "cpu"))


register_metric(MetricSpec(
    name="pr",
    description="Improved precision and recall (k=3) on Inception pool3 features (the paper used VGG16)",
    compute=compute,
))
