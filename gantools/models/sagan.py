"""`sagan` and `sagan-cond`: self-attention GAN (Zhang et al. 2019) on SNGAN's 32 px ResNets: a
self-attention block at 16x16 in G and in D, spectral norm in both, hinge loss, and two time-scale
learning rates (1e-4 for G, 4e-4 for D) with one D step per G step. `sagan-cond` is the paper's
class-conditional form: conditional batch norm in G, a projection discriminator."""

from __future__ import annotations

from functools import partial

from gantools.models.dcgan import RESOLUTIONS
from gantools.models.sngan import LOSS_RECIPES, build_discriminator, build_generator
from gantools.registry import ModelSpec, register_model

# Zhang et al.'s recipe: Adam with betas (0, 0.9), lr 1e-4 for G and 4e-4 for D (TTUR), one D step per G step,
# no decay; on the SNGAN CIFAR-10 ResNets (z 128, G 256 and D 128 channels, batch 64). steps: the toolkit's 5000.
DEFAULTS = {"z_dim": 128, "ngf": 256, "ndf": 128, "attention": 16, "g_spectral_norm": True, "d_spectral_norm": True,
            "batch_size": 64, "lr_g": 1e-4, "lr_d": 4e-4, "betas": [0.0, 0.9], "n_critic": 1,
            "lr_schedule": "constant", "steps": 5000, "updates": "alternating"}


def _common(conditional: bool) -> dict:
    """What the two entries share: the networks, with or without classes, and the recipe."""
    return dict(data_kind="image", build_generator=partial(build_generator, conditional=conditional),
                build_discriminator=partial(build_discriminator, conditional=conditional),
                conditional=conditional, default_loss="hinge", resolutions=RESOLUTIONS, defaults=DEFAULTS,
                loss_defaults=LOSS_RECIPES, hparam_min={"attention": 0})  # attention 0: none


# two literal entries (not a loop): `gantools.cli.names` reads the names for completion without importing torch
register_model(ModelSpec(
    name="sagan",
    description="SAGAN (Zhang et al. 2019): SNGAN's ResNets with self-attention at 16x16, spectral norm in G "
                "and D, hinge loss, lr 1e-4 G / 4e-4 D; class-conditional: `sagan-cond`",
    **_common(conditional=False)))
register_model(ModelSpec(
    name="sagan-cond",
    description="SAGAN (Zhang et al. 2019): SNGAN's ResNets with self-attention at 16x16, spectral norm in G "
                "and D, hinge loss, lr 1e-4 G / 4e-4 D; class-conditional: conditional batch norm in G, projection D",
    **_common(conditional=True)))
