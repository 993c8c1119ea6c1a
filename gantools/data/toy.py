"""Built-in generated data sets: `toy:ring`, `toy:grid` (2-D mixtures) and `toy:shapes` (images).

They need no download and are deterministic for a given seed, so the README's
first command and the tests can train on them anywhere.
"""

from __future__ import annotations

import math

import numpy as np

RING_MODES = 8
RING_RADIUS = 2.0
RING_STD = 0.02
GRID_STD = 0.05
SHAPE_CLASSES = ["circle", "square", "triangle", "cross"]


def ring_centers() -> np.ndarray:
    """The 8 mode centres of `toy:ring` on a circle of radius 2."""
    angles = 2 * math.pi * np.arange(RING_MODES) / RING_MODES
    return np.stack([RING_RADIUS * np.cos(angles), RING_RADIUS * np.sin(angles)], 1).astype(np.float32)


def grid_centers() -> np.ndarray:
    """The 25 mode centres of `toy:grid` at (-4, -2, 0, 2, 4)^2 (scaled by 1/2)."""
    g = np.arange(-2, 3, dtype=np.float32)
    return np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)


def mixture(centers: np.ndarray, std: float, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n points from an isotropic Gaussian mixture with equal weights; returns (points, mode index)."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(len(centers), size=n)
    pts = centers[idx] + std * rng.standard_normal((n, 2)).astype(np.float32)
    return pts.astype(np.float32), idx


def ring(n: int = 50_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    return mixture(ring_centers(), RING_STD, n, seed)


def grid(n: int = 50_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    return mixture(grid_centers(), GRID_STD, n, seed)


def shapes(n: int = 10_000, size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n RGB images (uint8 NHWC) of one coloured shape on a dark background, with class labels.

    Classes: circle, square, triangle, cross; position, size and colour vary.
    """
    rng = np.random.default_rng(seed)
    labels = rng.integers(len(SHAPE_CLASSES), size=n)
    r = (rng.uniform(0.18, 0.32, size=n) * size)[:, None, None]
    cx = rng.uniform(0, 1, size=n)[:, None, None] * (size - 2 * r - 2) + r + 1
    cy = rng.uniform(0, 1, size=n)[:, None, None] * (size - 2 * r - 2) + r + 1
    color = rng.integers(96, 256, size=(n, 1, 1, 3))
    background = rng.integers(0, 48, size=(n, 1, 1, 3))
    noise = 4 * rng.standard_normal(size=(n, size, size, 3), dtype=np.float32)
    grid = np.arange(size, dtype=np.float32) + 0.5
    dx = grid[None, None, :] - cx
    dy = grid[None, :, None] - cy
    adx, ady = np.abs(dx), np.abs(dy)
    w = 0.3 * r
    masks = np.stack([
        dx * dx + dy * dy <= r * r,                                       # circle
        (adx <= 0.8 * r) & (ady <= 0.8 * r),                              # square
        (dy <= 0.7 * r) & (dy >= -0.9 * r + 1.8 * adx),                   # triangle
        ((adx <= w) & (ady <= r)) | ((ady <= w) & (adx <= r)),            # cross
    ])
    mask = masks[labels, np.arange(n)][..., None]
    img = np.where(mask, color, background) + noise
    return np.clip(img, 0, 255).astype(np.uint8), labels


TOY_SETS = {
    "ring": "8 Gaussians on a circle (2-D points)",
    "grid": "25 Gaussians on a 5x5 grid (2-D points)",
    "shapes": "RGB 32x32 images of 4 labelled shape classes",
}


def mode_coverage(points: np.ndarray, centers: np.ndarray, std: float, min_count: int | None = None):
    """The usual mode-coverage measure for toy mixtures.

    A sample is high quality when it lies within 3 std of its nearest mode; a
    mode is covered when at least `min_count` (default: 1/4 of a uniform share,
    at least 1) high-quality samples fall on it. Returns (modes covered, fraction
    of samples that are high quality).
    """
    d = np.linalg.norm(points[:, None, :] - centers[None, :, :], axis=2)
    nearest, dist = d.argmin(1), d.min(1)
    good = dist <= 3 * std
    counts = np.bincount(nearest[good], minlength=len(centers))
    threshold = min_count if min_count is not None else max(1, len(points) // (4 * len(centers)))
    return int((counts >= threshold).sum()), float(good.mean())
