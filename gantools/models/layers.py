"""Building blocks shared by models: class-conditional batch norm, the residual blocks and networks of
the SNGAN/projection-discriminator ResNets at 32 px (Miyato et al. 2018; Miyato & Koyama 2018), SAGAN's
self-attention (Zhang et al. 2019) and ProGAN's minibatch standard deviation (Karras et al. 2018)."""

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
    conv, plus an upsampled 1x1-convolved shortcut. Batch norm is class-conditional when `num_classes`;
    `sn` normalises the convolutions spectrally (SAGAN's G)."""

    def __init__(self, ch_in: int, ch_out: int, num_classes: int = 0, sn: bool = False):
        super().__init__()
        norm = (lambda ch: ConditionalBatchNorm2d(ch, num_classes)) if num_classes else nn.BatchNorm2d
        self.norm1, self.norm2 = norm(ch_in), norm(ch_out)
        self.conv1 = _conv(ch_in, ch_out, 3, math.sqrt(2), sn)
        self.conv2 = _conv(ch_out, ch_out, 3, math.sqrt(2), sn)
        self.shortcut = _conv(ch_in, ch_out, 1, sn=sn)

    def _norm(self, norm: nn.Module, h: torch.Tensor, labels) -> torch.Tensor:
        return norm(h, labels) if isinstance(norm, ConditionalBatchNorm2d) else norm(h)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        h = F.interpolate(F.relu(self._norm(self.norm1, x, labels)), scale_factor=2)
        h = self.conv2(F.relu(self._norm(self.norm2, self.conv1(h), labels)))
        return h + self.shortcut(F.interpolate(x, scale_factor=2))


class DBlock(nn.Module):
    """D's residual block, spectrally normalised unless `sn` is False: ReLU, 3x3 conv, ReLU, 3x3 conv (then
    2x2 average pooling if `down`), plus a 1x1-convolved shortcut where the shape changes. `first`: SNGAN's
    optimised first block, which convolves the image before any ReLU and pools the shortcut before its convolution."""

    def __init__(self, ch_in: int, ch_out: int, down: bool = True, first: bool = False, sn: bool = True):
        super().__init__()
        self.down, self.first = down, first
        self.conv1 = _conv(ch_in, ch_out, 3, math.sqrt(2), sn)
        self.conv2 = _conv(ch_out, ch_out, 3, math.sqrt(2), sn)
        self.shortcut = _conv(ch_in, ch_out, 1, sn=sn) if (first or down or ch_in != ch_out) else None

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


class SelfAttention(nn.Module):
    """SAGAN's self-attention over positions (Zhang et al. 2019): x + gamma * v(attention(q(x), k(x), h(x))),
    unscaled dot-product attention of every position on every other, 1x1 convolutions to C/8 channels for
    query, key and value and back to C (spectrally normalised when `sn`). gamma starts at 0: the block
    starts as the identity and learns how much non-local evidence to mix in."""

    def __init__(self, ch: int, sn: bool = True):
        super().__init__()
        inner = max(ch // 8, 1)
        self.query, self.key, self.value = (_conv(ch, inner, 1, sn=sn) for _ in range(3))
        self.out = _conv(inner, ch, 1, sn=sn)
        self.gamma = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        q, k, v = (f(x).flatten(2).transpose(1, 2) for f in (self.query, self.key, self.value))  # N x HW x C/8
        o = F.scaled_dot_product_attention(q, k, v, scale=1.0)
        return x + self.gamma * self.out(o.transpose(1, 2).reshape(n, -1, h, w))


class MinibatchStd(nn.Module):
    """ProGAN's minibatch standard deviation (Karras et al. 2018): the batch is split into groups of
    `group_size` samples (sample i in group i mod N/group_size; the largest divisor of the batch up to
    group_size), each feature's standard deviation over a group is averaged into one number per group,
    and that number is appended to each of its samples as one more constant feature map."""

    def __init__(self, group_size: int = 4):
        super().__init__()
        self.group_size = group_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = math.gcd(n, self.group_size)
        std = (x.view(g, n // g, c, h, w).float().var(0, unbiased=False) + 1e-8).sqrt().mean(dim=(1, 2, 3))
        return torch.cat([x, std.to(x.dtype).repeat(g)[:, None, None, None].expand(n, 1, h, w)], 1)


def _stages_to(resolution: int) -> list[int]:
    """The resolutions of the ResNets' blocks: 8, 16, ... up to `resolution` (32, 64 or 128)."""
    from gantools.models.dcgan import _stages

    return [2 ** (3 + i) for i in range(_stages(resolution))]


def _check_attention(attention: int, resolution: int, where: list[int]) -> None:
    if attention and attention not in where:
        raise ValueError(f"attention = {attention}: self-attention goes at one of {', '.join(map(str, sorted(where)))} px "
                         f"at resolution {resolution} (0: none)")


class ResNetGenerator(nn.Module):
    """SNGAN's 32 px ResNet G: z -> linear to 4x4 x ngf -> one residual up-block per doubling -> BN, ReLU,
    3x3 conv, tanh. `num_classes`: class-conditional batch norm in the blocks; `sn`: spectral norm on every
    linear map (SAGAN); `attention`: a self-attention block after the up-block that reaches that many pixels."""

    class_weights = True  # a conditional G takes rows of class weights too: `interpolate --class-path`

    def __init__(self, z_dim: int, channels: int, resolution: int, ngf: int, num_classes: int = 0,
                 sn: bool = False, attention: int = 0):
        super().__init__()
        self.ngf = ngf
        sizes = _stages_to(resolution)
        _check_attention(attention, resolution, sizes)
        dense = nn.Linear(z_dim, 16 * ngf)
        nn.init.xavier_uniform_(dense.weight)
        self.dense = spectral_norm(dense) if sn else dense
        self.blocks = nn.ModuleList()
        for size in sizes:
            self.blocks.append(GBlock(ngf, ngf, num_classes, sn))
            if size == attention:
                self.blocks.append(SelfAttention(ngf, sn))
        self.out = nn.Sequential(nn.BatchNorm2d(ngf), nn.ReLU(), _conv(ngf, channels, 3, sn=sn), nn.Tanh())

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        h = self.dense(z.flatten(1)).view(-1, self.ngf, 4, 4)
        for block in self.blocks:
            h = block(h, labels) if isinstance(block, GBlock) else block(h)
        return self.out(h)


class ResNetDiscriminator(nn.Module):
    """SNGAN's 32 px ResNet D: residual down-blocks to 8x8 and two more at 8x8 -> ReLU, sum over positions
    = phi(x) -> linear(phi), plus <embed(y), phi> (the projection of Miyato & Koyama 2018) when
    `num_classes`. Spectrally normalised unless `sn` is False; `attention`: a self-attention block after
    the down-block that reaches that many pixels."""

    def __init__(self, channels: int, resolution: int, ndf: int, num_classes: int = 0, sn: bool = True,
                 attention: int = 0):
        super().__init__()
        sizes = _stages_to(resolution)[::-1][1:]  # each down-block's output: resolution / 2 ... 8
        _check_attention(attention, resolution, sizes)
        blocks: list[nn.Module] = []
        for i, size in enumerate(sizes):
            blocks.append(DBlock(channels, ndf, first=True, sn=sn) if i == 0 else DBlock(ndf, ndf, sn=sn))
            if size == attention:
                blocks.append(SelfAttention(ndf, sn))
        blocks += [DBlock(ndf, ndf, down=False, sn=sn), DBlock(ndf, ndf, down=False, sn=sn)]
        self.blocks = nn.Sequential(*blocks)
        self.linear = nn.Linear(ndf, 1)
        nn.init.xavier_uniform_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)
        self.embed = nn.Embedding(num_classes, ndf) if num_classes else None
        if self.embed is not None:
            nn.init.xavier_uniform_(self.embed.weight)
        if sn:
            self.linear = spectral_norm(self.linear)
            self.embed = spectral_norm(self.embed) if self.embed is not None else None

    def phi(self, x: torch.Tensor) -> torch.Tensor:
        """D's features: N x ndf."""
        return F.relu(self.blocks(x)).sum(dim=(2, 3))

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        h = self.phi(x)
        out = self.linear(h).squeeze(1)
        if self.embed is not None:
            out = out + (class_embedding(labels, self.embed) * h).sum(1)
        return out
