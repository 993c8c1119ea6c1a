"""Kernel Inception Distance (Bińkowski et al. 2018).

The unbiased estimate of the squared MMD with the cubic polynomial kernel
k(x, y) = (x . y / d + 1)^3 on pool3 features, over `subsets` random subsets
of m = min(subset_size, n_fake, n_real) images of each set (drawn without
replacement, seeded), reported as the mean and standard deviation over subsets.

The Gram products run in float32 through torch (MKL / cuBLAS); the kernel,
the sums and the result are float64.
"""

from __future__ import annotations

import numpy as np

from gantools.errors import GantoolsError
from gantools.registry import MetricSpec, register_metric

DEFAULT_SUBSETS = 100
DEFAULT_SUBSET_SIZE = 1000


def kid(fake: np.ndarray, real: np.ndarray, subsets: int = DEFAULT_SUBSETS,
        subset_size: int = DEFAULT_SUBSET_SIZE, seed: int = 0, device: str = "cpu") -> dict:
    """KID mean and std of the unbiased polynomial-kernel MMD^2 over seeded subsets."""
    import torch

    n1, n2 = len(fake), len(real)
    m = min(subset_size, n1, n2)
    if m < 2:
        raise GantoolsError(f"KID needs at least 2 images on each side, got {n1} and {n2}")
    if subsets < 1:
        raise GantoolsError(f"KID needs at least one subset, got {subsets}")
    d = fake.shape[1]
    rng = np.random.default_rng(seed)
    x_all = torch.from_numpy(np.ascontiguousarray(fake, dtype=np.float32)).to(device)
    y_all = torch.from_numpy(np.ascontiguousarray(real, dtype=np.float32)).to(device)
    values = []
    for _ in range(subsets):
        ix = torch.from_numpy(rng.choice(n1, m, replace=False)).to(device)
        iy = torch.from_numpy(rng.choice(n2, m, replace=False)).to(device)
        x, y = x_all[ix], y_all[iy]

        def kernel(a, b):
            return ((a @ b.T).double() / d + 1.0) ** 3

        kxx, kyy, kxy = kernel(x, x), kernel(y, y), kernel(x, y)
        sxx = (kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))
        syy = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
        values.append(float(sxx + syy - 2.0 * kxy.mean()))
    v = np.asarray(values, dtype=np.float64)
    return {"mean": float(v.mean()), "std": float(v.std()), "subsets": int(subsets), "subset_size": int(m)}


def compute(fake, real, options: dict | None = None) -> dict:
    o = options or {}
    return kid(fake.features, real.features, o.get("kid_subsets", DEFAULT_SUBSETS),
               o.get("kid_subset_size", DEFAULT_SUBSET_SIZE), o.get("seed", 0), o.get("device", "cpu"))


register_metric(MetricSpec(
    name="kid",
    description="Kernel Inception Distance: unbiased cubic-kernel MMD^2, 100 subsets of min(1000, n); lower is better",
    compute=compute,
))
