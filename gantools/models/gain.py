"""`gain`: GAIN's generator and discriminator for tables (Yoon et al., ICML 2018).

Trained by `gantools impute` (gantools.impute), not `gantools train`; the networks live in
gantools.impute.gain, and the table's column schema travels in the checkpoint's `data`.
"""

from __future__ import annotations

from gantools.impute.params import DEFAULT_VARIANT, GainParams
from gantools.registry import ModelSpec, register_model


def build_generator(hp: dict, data: dict):
    from gantools.impute.gain import build_networks

    return build_networks(hp, data)[0]


def build_discriminator(hp: dict, data: dict):
    from gantools.impute.gain import build_networks

    return build_networks(hp, data)[1]


register_model(ModelSpec(
    name="gain",
    description="GAIN imputer for tables (Yoon et al. 2018): G and D MLPs over [data, mask] / [imputed, hint]",
    data_kind="table",
    build_generator=build_generator,
    build_discriminator=build_discriminator,
    default_loss="gain",
    defaults=GainParams.for_variant(DEFAULT_VARIANT).as_dict(),
    trainer="gain",
))
