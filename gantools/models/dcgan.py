"""`dcgan`: Radford et al. 2016. Strided (transposed) convolutions, batch norm, ReLU in G with a
tanh output, LeakyReLU(0.2) in D; 32, 64 or 128 pixels square, 1 or 3 channels. Options the lectures
discuss: G's upsampling (`upsample`: transposed convolution, resize-convolution or pixel shuffle; Odena
et al. 2016 on checkerboard artefacts) and ProGAN's minibatch standard deviation in D (`minibatch_std`)."""

from __future__ import annotations

import math

import torch
from torch import nn

from gantools.models.layers import MinibatchStd
from gantools.registry import ModelSpec, register_model

RESOLUTIONS = (32, 64, 128)


def _stages(resolution: int) -> int:
    if resolution not in RESOLUTIONS:
        raise ValueError(f"dcgan supports resolutions {RESOLUTIONS}, not {resolution}")
    return int(math.log2(resolution)) - 2  # 4x4 -> resolution in doublings


UPSAMPLE = ("deconv", "resize", "pixelshuffle")


def _up(kind: str, ch_in: int, ch_out: int) -> list[nn.Module]:
    """Layers that double the resolution: a 4x4 stride-2 transposed convolution ("deconv"), nearest-neighbour
    resize then a 3x3 convolution ("resize"), or a 3x3 convolution to 4 x ch_out channels rearranged into 2x2
    pixels ("pixelshuffle", ICNR-initialised by `_init_weights`: it starts as a 3x3 convolution, then a nearest-neighbour
    resize, free of checkerboard artefacts)."""
    if kind == "deconv":
        return [nn.ConvTranspose2d(ch_in, ch_out, 4, 2, 1, bias=False)]
    if kind == "resize":
        return [nn.Upsample(scale_factor=2), nn.Conv2d(ch_in, ch_out, 3, 1, 1, bias=False)]
    if kind == "pixelshuffle":
        return [nn.Conv2d(ch_in, 4 * ch_out, 3, 1, 1, bias=False), nn.PixelShuffle(2)]
    raise ValueError(f"unknown upsample {kind!r} ({', '.join(UPSAMPLE)})")


class DCGANGenerator(nn.Module):
    """z (N x z_dim) -> 4x4 -> ... -> resolution, channels halving each doubling (by `upsample`), tanh output."""

    def __init__(self, z_dim: int, channels: int, resolution: int, ngf: int, upsample: str = "deconv"):
        super().__init__()
        self.z_dim = z_dim
        n = _stages(resolution)
        ch = ngf * 2 ** (n - 1)
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(z_dim, ch, 4, 1, 0, bias=False), nn.BatchNorm2d(ch), nn.ReLU(True)
        ]
        for _ in range(n - 1):
            layers += [*_up(upsample, ch, ch // 2), nn.BatchNorm2d(ch // 2), nn.ReLU(True)]
            ch //= 2
        layers += [*_up(upsample, ch, channels), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.apply(_init_weights)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.net[1:](_dense_to_4x4(z.reshape(z.shape[0], -1), self.net[0].weight))


def _norm(kind: str, ch: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(ch)
    if kind == "layer":
        return nn.GroupNorm(1, ch)  # layer norm over C, H, W: WGAN-GP's advice for critics
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown d_norm {kind!r} (batch, layer, none)")


class DCGANDiscriminator(nn.Module):
    """image -> strided convolutions with LeakyReLU(0.2) down to 4x4 (then, if `minibatch_std` > 0, the
    minibatch standard deviation over groups of that many samples as one more feature map) -> one logit."""

    def __init__(self, channels: int, resolution: int, ndf: int, norm: str = "batch", minibatch_std: int = 0):
        super().__init__()
        n = _stages(resolution)
        layers: list[nn.Module] = [nn.Conv2d(channels, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True)]
        ch = ndf
        for _ in range(n - 1):
            layers += [nn.Conv2d(ch, ch * 2, 4, 2, 1, bias=False), _norm(norm, ch * 2), nn.LeakyReLU(0.2, True)]
            ch *= 2
        if minibatch_std < 0:
            raise ValueError(f"minibatch_std = {minibatch_std}: a group size, or 0 for none")
        if minibatch_std:
            layers.append(MinibatchStd(minibatch_std))
            ch += 1
        layers += [nn.Conv2d(ch, 1, 4, 1, 0, bias=False)]
        self.net = nn.Sequential(*layers)
        self.apply(_init_weights)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return _dense_from_4x4(self.net[:-1](x), self.net[-1].weight)


# The first layer of G (a 4x4 transposed convolution of a 1x1 input) and the last of D (a 4x4
# convolution of a 4x4 input down to 1x1) are fully connected layers in disguise. As one matrix
# product they give the same numbers as the convolutions and, on the CPU (oneDNN), run 4-6x
# faster forward and backward: about 3% of a DCGAN training step on the CPU (bench/RESULTS.md).
# The weights stay convolution weights, so checkpoints are unchanged.

def _nhwc(t: torch.Tensor) -> torch.Tensor:
    """A 4-D tensor as N x H x W x C: a view without a copy when `t` is channels_last."""
    return t.permute(0, 2, 3, 1)


def _dense_to_4x4(z: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """conv_transpose2d(z as N x Z x 1 x 1, weight Z x C x 4 x 4) as one matrix product."""
    zdim, c = weight.shape[:2]
    if weight.is_contiguous(memory_format=torch.channels_last):  # keep the model's layout
        return (z @ _nhwc(weight).reshape(zdim, -1)).view(-1, 4, 4, c).permute(0, 3, 1, 2)
    return (z @ weight.reshape(zdim, -1)).view(-1, c, 4, 4)


def _dense_from_4x4(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """conv2d(x N x C x 4 x 4, weight 1 x C x 4 x 4).flatten() as one matrix-vector product."""
    if x.shape[-2:] != (4, 4) or weight.shape[0] != 1:
        raise ValueError(f"expected N x C x 4 x 4 features and a 1 x C x 4 x 4 kernel, got {tuple(x.shape)}, {tuple(weight.shape)}")
    if x.is_contiguous():
        return x.flatten(1) @ weight.flatten()
    return _nhwc(x).reshape(x.shape[0], -1) @ _nhwc(weight).reshape(-1)


def _init_weights(m: nn.Module) -> None:
    """The DCGAN paper's initialisation: N(0, 0.02) weights, N(1, 0.02) norm scales; a convolution feeding a
    pixel shuffle draws a quarter of its kernels and repeats each for its 2x2 pixels (ICNR, Aitken et al. 2017)."""
    if isinstance(m, nn.Sequential):  # a pixel shuffle's convolution, once the whole net is built
        for conv, shuffle in zip(m, m[1:]):
            if isinstance(shuffle, nn.PixelShuffle):
                w = conv.weight
                with torch.no_grad():
                    w.copy_(w[: w.shape[0] // 4].repeat_interleave(4, 0))
    elif isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


def build_generator(hp: dict, data: dict) -> nn.Module:
    return DCGANGenerator(hp["z_dim"], data["channels"], data["resolution"], hp["ngf"], hp.get("upsample", "deconv"))


def _d_norm(hp: dict) -> str:
    """D's normalisation: `d_norm`, where "auto" is layer norm under WGAN-GP (batch norm breaks its
    per-sample gradient penalty) and batch norm otherwise."""
    norm = hp.get("d_norm", "auto")
    if norm == "auto":
        norm = "layer" if hp.get("loss") == "wgan-gp" else "batch"
    return norm


def build_discriminator(hp: dict, data: dict) -> nn.Module:
    return DCGANDiscriminator(data["channels"], data["resolution"], hp["ndf"], _d_norm(hp), hp.get("minibatch_std", 0))


register_model(ModelSpec(
    name="dcgan",
    description="DCGAN (Radford et al. 2016): strided convolutions, batch norm; 32, 64 or 128 px",
    data_kind="image",
    build_generator=build_generator,
    build_discriminator=build_discriminator,
    default_loss="ns",
    resolutions=RESOLUTIONS,
    # upsample: resize-convolution, not the paper's transposed convolution: on MNIST (ngf = ndf = 16, 3,000
    # steps) FID 63.6 and 49.9 against 97.8 and 96.5 (seeds 0 and 1), and 211 against 331-367 at 200 steps
    # (bench/RESULTS.md "quality"). Checkpoints without the key were trained with "deconv" (build_generator).
    defaults={"z_dim": 100, "ngf": 64, "ndf": 64, "d_norm": "auto", "upsample": "resize", "minibatch_std": 0,
              "batch_size": 64, "lr_g": 2e-4, "lr_d": 2e-4, "betas": [0.5, 0.999], "steps": 5000,
              # G and D from one forward pass of D on the fakes, as PyTorch-GAN's dcgan.py: ~9% less work
              "updates": "simultaneous"},
    hparam_min={"minibatch_std": 0},  # 0: no minibatch standard deviation
))
