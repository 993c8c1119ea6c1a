"""`gain`: GAIN's generator and discriminator for tables (Yoon et al., ICML 2018).

Trained by `gantools impute` (gantools.impute), not `gantools train`; the networks live in
gantools.impute.gain, and the table's column schema travels in the checkpoint's `data`.
"""

from __future__ import annotations

from gantools.registry import ModelSpec, register_model


def build_generator(hp: dict, data: dict):
    from gantools.impute.gain import build_networks

    return build_networks(hp, data)[0]


def build_discriminator(hp: dict, data: dict):
    from gantools.impute.gain import build_networks

    return build_networks(hp, data)[1]


def _defaults() -> dict:
    # The default variant's settings (gantools.impute.gain.VARIANTS["gantools"]; "paper" differs
    # in drop_rate 0, kept_weight 1, hidden_mult 1), spelled out so the registry needs no torch.
    return {"variant": "gantools", "iterations": 10000, "batch_size": 128, "hint_rate": 0.9, "alpha": 100.0,
            "lr": 1e-3, "drop_rate": 0.3, "kept_weight": 0.5, "hidden_mult": 2.0}


register_model(ModelSpec(
    name="gain",
    description="GAIN imputer for tables (Yoon et al. 2018): G and D MLPs over [data, mask] / [imputed, hint]",
    data_kind="table",
    build_generator=build_generator,
    build_discriminator=build_discriminator,
    default_loss="gain",
    defaults=_defaults(),
    trainer="gain",
))
