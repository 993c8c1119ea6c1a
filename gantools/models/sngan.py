"""`sngan`: the spectrally normalised GAN (Miyato et al. 2018) with its 32 px ResNets (as Mimicry and
PyTorch-StudioGAN train it on CIFAR-10): a ResNet G with batch norm, a ResNet D whose every linear map is
spectrally normalised (torch parametrizations, one power iteration per forward pass), hinge loss.
Unconditional; its class-conditional form (conditional batch norm in G, projection in D) is `projection`."""

from __future__ import annotations

from torch import nn

from gantools.models.dcgan import RESOLUTIONS
from gantools.models.layers import ResNetDiscriminator, ResNetGenerator
from gantools.registry import ModelSpec, register_model

# The WGAN-GP and LSGAN recipes on the ResNet backbones, which `--loss wgan-gp|lsgan` selects (sngan and sagan).
# WGAN-GP: Gulrajani et al. 2017's CIFAR-10 ResNet (as Mimicry): a critic without spectral norm (the gradient
# penalty constrains it), Adam 2e-4 with betas (0, 0.9), 5 critic steps per G step, linear decay.
# LSGAN: Mao et al. 2017 (and the best setting of Lucic et al. 2018): Adam 2e-4 with betas (0.5, 0.999), 1 D step.
LOSS_RECIPES = {
    "wgan-gp": {"d_spectral_norm": False, "lr_g": 2e-4, "lr_d": 2e-4, "betas": [0.0, 0.9], "n_critic": 5,
                "lr_schedule": "linear"},
    "lsgan": {"lr_g": 2e-4, "lr_d": 2e-4, "betas": [0.5, 0.999], "n_critic": 1, "lr_schedule": "constant"},
}


def _classes(data: dict, conditional: bool) -> int:
    return int(data["num_classes"]) if conditional else 0


def build_generator(hp: dict, data: dict, conditional: bool = False) -> nn.Module:
    return ResNetGenerator(hp["z_dim"], data["channels"], data["resolution"], hp["ngf"], _classes(data, conditional),
                           sn=hp.get("g_spectral_norm", False), attention=hp.get("attention", 0))


def build_discriminator(hp: dict, data: dict, conditional: bool = False) -> nn.Module:
    return ResNetDiscriminator(data["channels"], data["resolution"], hp["ndf"], _classes(data, conditional),
                               sn=hp.get("d_spectral_norm", True), attention=hp.get("attention", 0))


register_model(ModelSpec(
    name="sngan",
    description="SNGAN (Miyato et al. 2018): 32 px ResNets, spectral norm in D, hinge loss; "
                "class-conditional: `projection`",
    data_kind="image",
    build_generator=build_generator,
    build_discriminator=build_discriminator,
    default_loss="hinge",
    resolutions=RESOLUTIONS,
    # the paper's CIFAR-10 ResNet recipe (as Mimicry's SNGAN): z 128, G 256 and D 128 channels, Adam 2e-4 with
    # betas (0, 0.9), 5 D steps per G step, both rates decayed linearly to 0, batch 64. steps: the toolkit's
    # usual 5000 G steps (the paper and Mimicry train 100k; the decay follows --steps or --lr-horizon).
    defaults={"z_dim": 128, "ngf": 256, "ndf": 128, "d_spectral_norm": True, "batch_size": 64, "lr_g": 2e-4,
              "lr_d": 2e-4, "betas": [0.0, 0.9], "n_critic": 5, "lr_schedule": "linear", "steps": 5000,
              "updates": "alternating"},
    loss_defaults=LOSS_RECIPES,
))
