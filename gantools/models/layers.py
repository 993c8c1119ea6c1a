"""Building blocks shared by models: class-conditional batch norm and the residual blocks of the
SNGAN/projection-discriminator ResNets at 32 px (Miyato et al. 2018; Miyato & Koyama 2018)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


def class_embedding(labels: torch.Tensor, embedding: nn.Embedding) -> torch.Tensor:
    """Rows of `embedding` for class indices; rows of class weights (N x num_classes, interpolate's
    class paths) give the same weights' mixture of rows."""
    if labels.is_floating_point():
        return labels.to(embedding.weight.dtype) @ embedding.weight
    return embedding(labels.long())


class ConditionalBatchNorm2d(nn.Module):
    """Batch norm without its own affine, then a per-class gain and bias (de Vries et al. 2017;
    Miyato & Koyama 2018): gamma[y] * BN(x) + beta[y], gains starting at 1 and biases at 0."""

    def __init__(self, num_features: int, num_classes: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(num_features, affine=False)
        self.gain = nn.Embedding(num_classes, num_features)
        self.bias = nn.Embedding(num_classes, num_features)
        nn.init.ones_(self.gain.weight)
        nn.init.zeros_(self.bias.weight)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        gamma = class_embedding(labels, self.gain)[:, :, None, None]
        beta = class_embedding(labels, self.bias)[:, :, None, None]
        return gamma * self.bn(x) + beta


def _conv(ch_in: int, ch_out: int, kernel: int, gain: float = 1.0, sn: bool = False) -> nn.Conv2d:
    """A same-padding convolution, Xavier-uniform initialised (as SNGAN's ResNets), optionally spectrally normalised."""
    conv = nn.Conv2d(ch_in, ch_out, kernel, 1, kernel // 2)
    nn.init.xavier_uniform_(conv.weight, gain)
    nn.init.zeros_(conv.bias)
    return spectral_norm(conv) if sn else conv


class GBlock(nn.Module):
    """G's residual block, doubling the resolution: (C)BN, ReLU, upsample, 3x3 conv, (C)BN, ReLU, 3x3
    conv, plus an upsampled 1x1-convolved shortcut. Batch norm is class-conditional when `num_classes`."""

    def __init__(self, ch_in: int, ch_out: int, num_classes: int = 0):
        super().__init__()
        norm = (lambda ch: ConditionalBatchNorm2d(ch, num_classes)) if num_classes else nn.BatchNorm2d
        self.norm1, self.norm2 = norm(ch_in), norm(ch_out)
        self.conv1 = _conv(ch_in, ch_out, 3, math.sqrt(2))
        self.conv2 = _conv(ch_out, ch_out, 3, math.sqrt(2))
        self.shortcut = _conv(ch_in, ch_out, 1)

    def _norm(self, norm: nn.Module, h: torch.Tensor, labels) -> torch.Tensor:
        return norm(h, labels) if isinstance(norm, ConditionalBatchNorm2d) else norm(h)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        h = F.interpolate(F.relu(self._norm(self.norm1, x, labels)), scale_factor=2)
        h = self.conv2(F.relu(self._norm(self.norm2, self.conv1(h), labels)))
        return h + self.shortcut(F.interpolate(x, scale_factor=2))


class DBlock(nn.Module):
    """D's residual block with spectral norm: ReLU, 3x3 conv, ReLU, 3x3 conv (then 2x2 average pooling
    if `down`), plus a 1x1-convolved shortcut where the shape changes. `first`: SNGAN's optimised first
    block, which convolves the image before any ReLU and pools the shortcut before its convolution."""

    def __init__(self, ch_in: int, ch_out: int, down: bool = True, first: bool = False):
        super().__init__()
        self.down, self.first = down, first
        self.conv1 = _conv(ch_in, ch_out, 3, math.sqrt(2), sn=True)
        self.conv2 = _conv(ch_out, ch_out, 3, math.sqrt(2), sn=True)
        self.shortcut = _conv(ch_in, ch_out, 1, sn=True) if (first or down or ch_in != ch_out) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv2(F.relu(self.conv1(x if self.first else F.relu(x))))
        if self.down:
            h = F.avg_pool2d(h, 2)
        s = x
        if self.first:
            s = self.shortcut(F.avg_pool2d(s, 2))
        elif self.shortcut is not None:
            s = self.shortcut(s)
            s = F.avg_pool2d(s, 2) if self.down else s
        return h + s
