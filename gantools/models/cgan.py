"""`cgan`: the conditional GAN (Mirza & Osindero 2014) on DCGAN's networks, as the lectures teach it: the
one-hot label is concatenated to G's input z and, as constant maps, to D's feature maps after its first
convolution. Trains on labelled data (class folders, IDX labels, npz/h5 `labels`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gantools.models.dcgan import RESOLUTIONS, DCGANGenerator, _d_norm, _dense_from_4x4, _init_weights, _norm, _stages
from gantools.registry import ModelSpec, register_model


def _one_hot(labels: torch.Tensor, num_classes: int, dtype: torch.dtype) -> torch.Tensor:
    """Class indices -> one-hot rows; rows of class weights (interpolate's class paths) pass as they are."""
    return labels.to(dtype) if labels.is_floating_point() else F.one_hot(labels.long(), num_classes).to(dtype)


class CGANGenerator(nn.Module):
    """[z, one_hot(y)] -> DCGAN's generator."""

    class_weights = True  # takes rows of class weights too: `interpolate --class-path` walks between classes

    def __init__(self, z_dim: int, num_classes: int, channels: int, resolution: int, ngf: int):
        super().__init__()
        self.num_classes = num_classes
        self.net = DCGANGenerator(z_dim + num_classes, channels, resolution, ngf)

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([z, _one_hot(labels, self.num_classes, z.dtype)], 1))


class CGANDiscriminator(nn.Module):
    """image -> strided convolution -> [features, one_hot(y) as maps] -> DCGAN's strided convolutions -> one logit."""

    def __init__(self, channels: int, resolution: int, ndf: int, num_classes: int, norm: str = "batch"):
        super().__init__()
        self.num_classes = num_classes
        self.first = nn.Sequential(nn.Conv2d(channels, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True))
        layers: list[nn.Module] = []
        ch_in, ch = ndf + num_classes, ndf
        for _ in range(_stages(resolution) - 1):
            layers += [nn.Conv2d(ch_in, ch * 2, 4, 2, 1, bias=False), _norm(norm, ch * 2), nn.LeakyReLU(0.2, True)]
            ch_in = ch = ch * 2
        self.trunk = nn.Sequential(*layers)
        self.head = nn.Conv2d(ch, 1, 4, 1, 0, bias=False)
        self.apply(_init_weights)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = self.first(x)
        maps = _one_hot(labels, self.num_classes, h.dtype)[:, :, None, None].expand(-1, -1, *h.shape[2:])
        h = torch.cat([h, maps], 1)
        return _dense_from_4x4(self.trunk(h), self.head.weight)


def build_generator(hp: dict, data: dict) -> nn.Module:
    return CGANGenerator(hp["z_dim"], int(data["num_classes"]), data["channels"], data["resolution"], hp["ngf"])


def build_discriminator(hp: dict, data: dict) -> nn.Module:
    return CGANDiscriminator(data["channels"], data["resolution"], hp["ndf"], int(data["num_classes"]), _d_norm(hp))


register_model(ModelSpec(
    name="cgan",
    description="conditional GAN (Mirza & Osindero 2014) on DCGAN: one-hot labels joined to z and to D's feature maps",
    data_kind="image",
    build_generator=build_generator,
    build_discriminator=build_discriminator,
    conditional=True,
    default_loss="ns",
    resolutions=RESOLUTIONS,
    # DCGAN's recipe (Radford et al.), which the conditional DCGANs of the public reimplementations keep
    defaults={"z_dim": 100, "ngf": 64, "ndf": 64, "d_norm": "auto", "batch_size": 64, "lr_g": 2e-4,
              "lr_d": 2e-4, "betas": [0.5, 0.999], "steps": 5000, "updates": "simultaneous"},
))
