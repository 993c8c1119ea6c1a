"""`bagan-gp`: BAGAN with a supervised autoencoder and a gradient-penalty critic (Huang & Jafari 2021,
"Enhanced Balancing GAN: Minority-class Image Generation", arXiv 2011.00189; the authors' Keras code is
GH920/improved-bagan-gp). What it changes in `bagan` (gantools/models/bagan.py), whose phases it keeps:

- The decoder, which is G, gets the class too: its input is the code times a learned embedding of the
  label (the authors' "intermediate embedding"), so the autoencoder learns the labels directly and the
  classes' codes need not be told apart by the encoder alone. Reconstruction loss: L1 (theirs).
- D is a conditional critic with one output: its trunk's features times a gate computed from the label's
  embedding, then two dense layers (the authors' layout). It learns to score real images with their own
  class high, and G's images and real images paired with another class's label low (the mismatched
  pairs count as fakes beside G's), under the registry loss: `ns-gp` by default (the authors' sigmoid
  cross-entropy with a gradient penalty, five critic steps per G step). `wgan-gp` is refused: the penalty
  does not reach the wrong-label pairs, whose unbounded scores ran away (bench/RESULTS.md, balance).
  After the autoencoder D's trunk starts from the encoder's.
- DCGAN-style networks: 4x4 stride-2 convolutions with LeakyReLU(0.2) down to 4x4 pixels, transposed ones
  with batch norm up from there.

G's latent for class c is drawn from the Gaussian of the encoder's codes of class c, as in `bagan` (the
authors' script draws N(0, I) instead; the codes' Gaussians are what the decoder was trained on, and they
make `sample --temperature` mean the same for both models)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gantools.errors import GantoolsError, UsageError
from gantools.models.bagan import AutoencoderInit
from gantools.models.layers import class_embedding
from gantools.objective import DStep
from gantools.registry import ModelSpec, register_model

RESOLUTIONS = (32, 64, 128)
BASE = 4  # the smallest grid (pixels) of the encoder, D and G
LEAK = 0.2
GATE = 512  # width of D's label embedding and of its dense layer (the authors')


def _widths(resolution: int, width: int) -> list[int]:
    """Channels of the stride-2 convolutions from the image down to BASE pixels: width, 2 width, 4 width, 8
    width, then 8 width again."""
    steps = (resolution // BASE).bit_length() - 1
    return [width * 2 ** min(i, 3) for i in range(steps)]


def _init(module: nn.Module) -> None:
    """N(0, 0.02) convolutions (the authors'), zero biases; dense layers keep torch's initialisation."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        nn.init.zeros_(module.bias)


def _trunk(channels: int, resolution: int, ndf: int) -> nn.Sequential:
    """The encoder's convolutions, shared by E and D: 4x4 stride-2 convolutions with LeakyReLU(0.2) down to
    BASE pixels, no normalisation (a gradient penalty is taken per sample); flattened."""
    layers: list[nn.Module] = []
    ch = channels
    for out in _widths(resolution, ndf):
        layers += [nn.Conv2d(ch, out, 4, 2, 1), nn.LeakyReLU(LEAK, True)]
        ch = out
    return nn.Sequential(*layers, nn.Flatten())


class BAGANGPEncoder(nn.Module):
    """image -> trunk -> dense code of width z_dim, LeakyReLU(0.2) (the authors')."""

    def __init__(self, channels: int, resolution: int, ndf: int, z_dim: int):
        super().__init__()
        self.trunk = _trunk(channels, resolution, ndf)
        self.head = nn.Sequential(nn.Linear(_widths(resolution, ndf)[-1] * BASE * BASE, z_dim), nn.LeakyReLU(LEAK))
        self.apply(_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x))


class BAGANGPGenerator(nn.Module):
    """The decoder: (z, class) -> z times the class's embedding -> dense to BASE x BASE (LeakyReLU) -> per
    doubling a 4x4 stride-2 transposed convolution, batch norm and LeakyReLU(0.2), the encoder's widths in
    reverse -> the last one to the image, tanh."""

    class_weights = True  # rows of class weights mix the embeddings (interpolate --class-path)

    def __init__(self, z_dim: int, num_classes: int, channels: int, resolution: int, ngf: int):
        super().__init__()
        widths = _widths(resolution, ngf)[::-1]
        self.embed = nn.Embedding(num_classes, z_dim)
        self.dense = nn.Sequential(nn.Linear(z_dim, widths[0] * BASE * BASE), nn.LeakyReLU(LEAK, True),
                                   nn.Unflatten(1, (widths[0], BASE, BASE)))
        layers: list[nn.Module] = []
        for ch, out in zip(widths, widths[1:]):
            layers += [nn.ConvTranspose2d(ch, out, 4, 2, 1), nn.BatchNorm2d(out), nn.LeakyReLU(LEAK, True)]
        layers += [nn.ConvTranspose2d(widths[-1], channels, 4, 2, 1), nn.Tanh()]
        self.convs = nn.Sequential(*layers)
        self.apply(_init)

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.convs(self.dense(z * class_embedding(labels, self.embed)))


class BAGANGPDiscriminator(nn.Module):
    """(image, class) -> the encoder's trunk -> features times a gate from the class (embedding of GATE,
    dense to the features' width, LeakyReLU) -> dense GATE -> dense 1: the critic's score."""

    def __init__(self, channels: int, resolution: int, ndf: int, num_classes: int):
        super().__init__()
        features = _widths(resolution, ndf)[-1] * BASE * BASE
        self.trunk = _trunk(channels, resolution, ndf)
        self.embed = nn.Embedding(num_classes, GATE)
        self.gate = nn.Sequential(nn.Linear(GATE, features), nn.LeakyReLU(LEAK, True))
        self.head = nn.Sequential(nn.Linear(features, GATE), nn.Linear(GATE, 1))
        self.apply(_init)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        gate = self.gate(class_embedding(labels, self.embed))
        return self.head(self.trunk(x) * gate).squeeze(1)


class BAGANGPObjective(AutoencoderInit):
    """bagan's autoencoder phase and transition (`AutoencoderInit`) with an L1 reconstruction, then the
    registry loss on the conditional critic, where real images under a wrong label count as fakes. Logs
    `d_mismatch`, D's mean score (or probability) of real images under a wrong label."""

    reconstruction = staticmethod(F.l1_loss)

    def __init__(self, spec, hparams: dict, data: dict, loss=None):
        super().__init__(spec, hparams, data, loss)
        if loss is not None and loss.name == "wgan-gp":
            raise UsageError("--loss wgan-gp: bagan-gp's D also scores real images under wrong labels, which the "
                             "gradient penalty does not bound, and their Wasserstein scores run away; give ns-gp "
                             "(the default) or another loss bounded below")

    def build_encoder(self) -> nn.Module:
        if self.num_classes < 2:
            raise GantoolsError("bagan-gp needs at least 2 classes: its D learns to reject images paired with "
                                "another class's label")
        return BAGANGPEncoder(self.data["channels"], self.data["resolution"], self.hparams["ndf"], self.hparams["z_dim"])

    def d_step(self, nets: dict, real: torch.Tensor, labels, fake: torch.Tensor, inputs: dict,
               with_g: bool) -> DStep:
        y = inputs["y"]
        labels = labels.to(y.device, y.dtype)
        # a wrong label for each real image: the drawn one (uniform), moved to the next class where it is right
        wrong = torch.where(y == labels, (y + 1) % self.num_classes, y)
        n = len(real)
        out = self.critic(nets, torch.cat([real, real, fake]), torch.cat([labels, wrong, y]))  # one pass of D
        out_real, out_wrong, out_fake = out[:n], out[n:2 * n], out[2 * n:]
        logs = self._scores(out_real, out_fake)
        with torch.no_grad():
            logs["d_mismatch"] = (torch.sigmoid(out_wrong) if self.loss.probabilities else out_wrong).mean()
        loss_g = self.loss.g_loss(out_fake) if with_g else None
        return DStep(self.loss.d_loss(out_real, torch.cat([out_fake, out_wrong])), out_real, logs, loss_g)


def build_generator(hp: dict, data: dict) -> nn.Module:
    return BAGANGPGenerator(hp["z_dim"], int(data["num_classes"]), data["channels"], data["resolution"], hp["ngf"])


def build_discriminator(hp: dict, data: dict) -> nn.Module:
    return BAGANGPDiscriminator(data["channels"], data["resolution"], hp["ndf"], int(data["num_classes"]))


register_model(ModelSpec(
    name="bagan-gp",
    description="BAGAN-GP (Huang & Jafari 2021): bagan with a class-conditional autoencoder (code times a label "
                "embedding) and a conditional critic with a gradient penalty that also rejects wrong labels",
    data_kind="image",
    build_generator=build_generator,
    build_discriminator=build_discriminator,
    conditional=True,
    default_loss="ns-gp",
    resolutions=RESOLUTIONS,
    objective=BAGANGPObjective,
    # the authors' code: Adam 2e-4 with betas (0.5, 0.9), batch 128, latent 128, five critic steps (ns-gp's),
    # widths 64 (their 64-pixel networks: 64..256 channels); budgets near theirs on their 5,000-image set at
    # batch 128 (autoencoder 30 epochs, GAN 100 epochs). Real batches class-balanced, where the authors' follow the
    # data's proportions: measured on MNIST minorities 7 and 4, 6-7 points higher minority accuracy (bench/RESULTS.md).
    # D's inputs not augmented at any size (as bagan): on 915 MNIST digits DiffAugment made its images less varied
    # and the minority's classifier worse on every seed (bench/RESULTS.md, balance, ninth session)
    defaults={"z_dim": 128, "ngf": 64, "ndf": 64, "ae_steps": 1500, "batch_size": 128, "lr_g": 2e-4, "lr_d": 2e-4,
              "betas": [0.5, 0.9], "steps": 4000, "updates": "alternating", "class_balanced": True, "augment": "none"},
))
