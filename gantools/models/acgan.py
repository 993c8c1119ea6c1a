"""`acgan`: the auxiliary classifier GAN (Odena et al. 2017) on DCGAN's networks. G takes [z, one_hot(y)]
(cgan's generator: the paper's G input also carries the class as a one-hot); D's trunk feeds two heads,
the adversarial logit and class logits. D learns the classes on real images, G to make its fakes
classified as the labels it drew. Trains on labelled data."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gantools.models.cgan import build_generator  # cgan's G: the one-hot label joined to z
from gantools.models.dcgan import RESOLUTIONS, DCGANDiscriminator, _d_norm, _dense_from_4x4, _stages
from gantools.objective import DStep, GANObjective
from gantools.registry import ModelSpec, register_model


class ACGANDiscriminator(nn.Module):
    """DCGAN's discriminator whose 4x4 features also feed a linear class head:
    image -> (adversarial logit N, class logits N x num_classes)."""

    def __init__(self, channels: int, resolution: int, ndf: int, num_classes: int, norm: str = "batch"):
        super().__init__()
        self.body = DCGANDiscriminator(channels, resolution, ndf, norm)  # trunk, then the adversarial head
        self.classifier = nn.Linear(ndf * 2 ** (_stages(resolution) - 1) * 16, num_classes)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body.net[:-1](x)
        return _dense_from_4x4(h, self.body.net[-1].weight), self.classifier(h.flatten(1))


class ACGANObjective(GANObjective):
    """The registry loss on the adversarial head plus `lambda_cls` x the class cross-entropy: on reals in
    D's step, on fakes (against their drawn labels) in G's step. Logs both cross-entropies (`cls_real`,
    `cls_fake`) and the class head's accuracy on the real batch (`acc_real`).

    D's step leaves the fakes out of its class loss, though the paper's L_C covers both: as
    PyTorch-StudioGAN's ACGAN, since a class head also fitted to G's early, unrecognisable fakes learns
    their artefacts as class evidence, which G can then satisfy without drawing the class."""

    def critic(self, nets: dict, x: torch.Tensor, labels) -> torch.Tensor:
        return nets["D"](x)[0].float()

    def _g_loss(self, adv_fake: torch.Tensor, cls_fake: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict]:
        ce = F.cross_entropy(cls_fake.float(), y.long())
        return self.loss.g_loss(adv_fake) + self.hparams["lambda_cls"] * ce, {"cls_fake": ce}

    def d_step(self, nets: dict, real: torch.Tensor, labels, fake: torch.Tensor, inputs: dict,
               with_g: bool) -> DStep:
        adv_real, cls_real = nets["D"](real)
        adv_fake, cls_fake = nets["D"](fake)
        adv_real, adv_fake, cls_real = adv_real.float(), adv_fake.float(), cls_real.float()
        labels = labels.long()
        ce = F.cross_entropy(cls_real, labels)
        logs = {**self._scores(adv_real, adv_fake), "cls_real": ce,
                "acc_real": (cls_real.detach().argmax(1) == labels).float().mean()}
        loss_g = None
        if with_g:  # simultaneous updates: G's loss, and its class loss to log, from this pass of D
            loss_g, logs_g = self._g_loss(adv_fake, cls_fake, inputs["y"])
            logs.update(logs_g)
        return DStep(self.loss.d_loss(adv_real, adv_fake) + self.hparams["lambda_cls"] * ce, adv_real, logs, loss_g)

    def g_step(self, nets: dict, fake: torch.Tensor, inputs: dict) -> tuple[torch.Tensor, dict]:
        adv_fake, cls_fake = nets["D"](fake)
        return self._g_loss(adv_fake.float(), cls_fake, inputs["y"])


def build_discriminator(hp: dict, data: dict) -> nn.Module:
    return ACGANDiscriminator(data["channels"], data["resolution"], hp["ndf"], int(data["num_classes"]), _d_norm(hp))


register_model(ModelSpec(
    name="acgan",
    description="auxiliary classifier GAN (Odena et al. 2017) on DCGAN: a class head on D, "
                "class cross-entropy on reals in D's step and on fakes in G's",
    data_kind="image",
    build_generator=build_generator,
    build_discriminator=build_discriminator,
    conditional=True,
    default_loss="ns",
    resolutions=RESOLUTIONS,
    objective=ACGANObjective,
    # the paper's CIFAR-10 settings (its appendix): z of 100 beside the class one-hot, Adam 2e-4 with
    # betas (0.5, 0.999), batch 100, the log-likelihood (here non-saturating) loss, the class loss weighted
    # as the source loss (lambda_cls 1). Simultaneous updates as dcgan and cgan (one D pass on the fakes).
    defaults={"z_dim": 100, "ngf": 64, "ndf": 64, "d_norm": "auto", "lambda_cls": 1.0, "batch_size": 100,
              "lr_g": 2e-4, "lr_d": 2e-4, "betas": [0.5, 0.999], "steps": 5000, "updates": "simultaneous"},
))
