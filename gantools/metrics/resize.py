"""The reference FID preprocessing: uint8 -> float32 -> TF1 bilinear resize to 299x299 -> (x - 128) / 128.

TensorFlow 1's `tf.image.resize_bilinear` (align_corners=False, no half-pixel
centres), which the 2015-12-05 Inception graph was fed through, samples
output pixel i at source coordinate i * in / out, interpolates between
floor(s) and floor(s) + 1, and clamps the upper neighbour at the border.
stylegan2-ada and torch-fidelity emulate it with affine_grid/grid_sample
(border padding); `torch.nn.functional.interpolate` uses half-pixel centres
and gives different pixels (up to 159 levels on 32x32 noise), which would
shift FID.

We write this one ourselves because it is measurably better here: the
resize is separable and each output row depends on two input rows, so the
whole resize is two small matrix products per image,
`R_h @ x @ R_w^T`, with R a (299, in) matrix holding (1 - f, f) on each row.
That is exact for TF1 bilinear and, for the small inputs GANs produce
(28..256 px), several times faster than grid_sample on the CPU (see
bench/eval_throughput.py). For inputs larger than `GATHER_ABOVE` px the dense
matrix wastes work, and the same weights are applied by gathering the two
neighbours and blending them (still exact).
"""

from __future__ import annotations

import functools

import numpy as np
import torch

SIZE = 299
# Names what the features were made from; stored in statistics files and checked on reuse.
PREPROCESSING_ID = "uint8>float32>tf1-bilinear-299(align_corners=False,no-half-pixel)>(x-128)/128>grey-to-rgb"
GATHER_ABOVE = 512


def tf1_bilinear_weights(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each output index: the lower source index, the upper (clamped) one, and the upper weight f."""
    scale = in_size / out_size
    src = np.arange(out_size, dtype=np.float64) * scale
    lo = np.floor(src).astype(np.int64)
    lo = np.minimum(lo, in_size - 1)
    hi = np.minimum(lo + 1, in_size - 1)
    frac = src - lo
    return lo, hi, frac


def tf1_bilinear_matrix(in_size: int, out_size: int) -> np.ndarray:
    """The (out, in) float64 matrix R with resized = R @ x along one axis."""
    lo, hi, frac = tf1_bilinear_weights(in_size, out_size)
    r = np.zeros((out_size, in_size), dtype=np.float64)
    rows = np.arange(out_size)
    np.add.at(r, (rows, lo), 1.0 - frac)
    np.add.at(r, (rows, hi), frac)
    return r


@functools.lru_cache(maxsize=32)
def _matrix(in_size: int, out_size: int, device: str) -> torch.Tensor:
    return torch.from_numpy(tf1_bilinear_matrix(in_size, out_size)).to(device=device, dtype=torch.float32)


@functools.lru_cache(maxsize=32)
def _gather(in_size: int, out_size: int, device: str):
    lo, hi, frac = tf1_bilinear_weights(in_size, out_size)
    return (torch.from_numpy(lo).to(device), torch.from_numpy(hi).to(device),
            torch.from_numpy(frac).to(device=device, dtype=torch.float32))


def _resize_gather(x: torch.Tensor, out_size: int, axis: int) -> torch.Tensor:
    """One axis by gathering the two neighbours and blending them (large inputs)."""
    in_size = x.shape[axis]
    if in_size == out_size:
        return x
    lo, hi, frac = _gather(in_size, out_size, str(x.device))
    if axis == -1:
        return torch.lerp(x.index_select(-1, lo), x.index_select(-1, hi), frac)
    return torch.lerp(x.index_select(-2, lo), x.index_select(-2, hi), frac[:, None])


def tf1_resize(x: torch.Tensor, size: int = SIZE) -> torch.Tensor:
    """Float NCHW -> float32 N x C x size x size with TF1 bilinear sampling (no normalisation)."""
    x = x.to(torch.float32)
    n, c, h, w = x.shape
    if h == size and w == size:
        return x
    if max(h, w) > GATHER_ABOVE:
        return _resize_gather(_resize_gather(x, size, -2), size, -1)
    dev = str(x.device)
    b = n * c
    # Two plain GEMMs over the whole batch: (S x H) @ (H x B*W), then (B*S x W) @ (W x S).
    # The reshapes between them copy only the small intermediate (B x S x W).
    t = x.reshape(b, h, w).permute(1, 0, 2).reshape(h, b * w)
    t = _matrix(h, size, dev) @ t if h != size else t
    t = t.reshape(size, b, w).permute(1, 0, 2).reshape(b * size, w)
    t = t @ _matrix(w, size, dev).T if w != size else t
    return t.reshape(n, c, size, size)


def preprocess(images: torch.Tensor, size: int = SIZE) -> torch.Tensor:
    """uint8 (or 0..255 float) N x C x H x W, C in {1, 3} -> the network's float32 N x 3 x 299 x 299 input.

    (x - 128) / 128 commutes with the resize (each row of R sums to one), so it
    is applied on the small input; 1/128 is a power of two, so it is exact.
    Grey images are resized once and repeated to three channels.
    """
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected N x 1 or N x 3 x H x W images, got shape {tuple(images.shape)}")
    x = (images.to(torch.float32) - 128.0) * (1.0 / 128.0)
    x = tf1_resize(x, size)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    return x.contiguous()
