"""`projection`: cGAN with a projection discriminator (Miyato & Koyama 2018) on SNGAN's ResNets at 32 px.
G's batch norms are class-conditional (a gain and bias per class); D, spectrally normalised, scores
linear(phi(x)) + <embed(y), phi(x)>, phi(x) its ReLU'd features summed over positions. Hinge loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from gantools.models.dcgan import RESOLUTIONS, _stages
from gantools.models.layers import DBlock, GBlock, class_embedding
from gantools.registry import ModelSpec, register_model


class ProjectionGenerator(nn.Module):
    """z -> linear to 4x4 x ngf -> one residual up-block (conditional batch norm) per doubling -> BN,
    ReLU, 3x3 conv, tanh."""

    class_weights = True  # takes rows of class weights too: `interpolate --class-path` walks between classes

    def __init__(self, z_dim: int, num_classes: int, channels: int, resolution: int, ngf: int):
        super().__init__()
        self.z_dim, self.ngf = z_dim, ngf
        self.dense = nn.Linear(z_dim, 16 * ngf)
        nn.init.xavier_uniform_(self.dense.weight)
        self.blocks = nn.ModuleList(GBlock(ngf, ngf, num_classes) for _ in range(_stages(resolution)))
        self.out = nn.Sequential(nn.BatchNorm2d(ngf), nn.ReLU(), nn.Conv2d(ngf, channels, 3, 1, 1), nn.Tanh())
        nn.init.xavier_uniform_(self.out[2].weight)

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = self.dense(z.flatten(1)).view(-1, self.ngf, 4, 4)
        for block in self.blocks:
            h = block(h, labels)
        return self.out(h)


class ProjectionDiscriminator(nn.Module):
    """image -> spectrally normalised residual down-blocks to 8x8, two more at 8x8 -> ReLU, sum over
    positions = phi(x) -> linear(phi) + <embed(y), phi>."""

    def __init__(self, channels: int, resolution: int, ndf: int, num_classes: int):
        super().__init__()
        downs = _stages(resolution) - 1  # to 8x8, as SNGAN's 32 px D
        self.blocks = nn.Sequential(DBlock(channels, ndf, first=True),
                                    *(DBlock(ndf, ndf) for _ in range(downs - 1)),
                                    DBlock(ndf, ndf, down=False), DBlock(ndf, ndf, down=False))
        self.linear = nn.Linear(ndf, 1)
        self.embed = nn.Embedding(num_classes, ndf)
        nn.init.xavier_uniform_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)
        nn.init.xavier_uniform_(self.embed.weight)
        self.linear, self.embed = spectral_norm(self.linear), spectral_norm(self.embed)

    def phi(self, x: torch.Tensor) -> torch.Tensor:
        """D's features: N x ndf."""
        return F.relu(self.blocks(x)).sum(dim=(2, 3))

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = self.phi(x)
        return self.linear(h).squeeze(1) + (class_embedding(labels, self.embed) * h).sum(1)


def build_generator(hp: dict, data: dict) -> nn.Module:
    return ProjectionGenerator(hp["z_dim"], int(data["num_classes"]), data["channels"], data["resolution"], hp["ngf"])


def build_discriminator(hp: dict, data: dict) -> nn.Module:
    return ProjectionDiscriminator(data["channels"], data["resolution"], hp["ndf"], int(data["num_classes"]))


register_model(ModelSpec(
    name="projection",
    description="cGAN with a projection discriminator (Miyato & Koyama 2018): conditional batch norm in G, "
                "<embed(y), phi(x)> in a spectrally normalised ResNet D; hinge loss",
    data_kind="image",
    build_generator=build_generator,
    build_discriminator=build_discriminator,
    conditional=True,
    default_loss="hinge",
    resolutions=RESOLUTIONS,
    # the 32 px recipe of Mimicry's cGAN-PD (SNGAN's CIFAR-10 ResNets, as the paper's code): z 128, G 256 and
    # D 128 channels, Adam 2e-4 with betas (0, 0.9), 5 D steps per G step (n_dis, also the paper's), batch 64.
    # steps: the toolkit's usual 5000 G steps (Mimicry trains 100k).
    defaults={"z_dim": 128, "ngf": 256, "ndf": 128, "batch_size": 64, "lr_g": 2e-4, "lr_d": 2e-4,
              "betas": [0.0, 0.9], "n_critic": 5, "steps": 5000, "updates": "alternating"},
))
