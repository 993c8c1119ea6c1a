"""GAIN's hyper-parameters and its two variants; no torch, so the registry and the CLI can read them."""

from __future__ import annotations

from dataclasses import dataclass

from gantools.errors import UsageError

# The two algorithms. "paper" is GAIN as published and as the authors' code runs it.
# "gantools" adds the changes the benchmark (bench/impute.py) showed better on both data sets,
# and is the default: over 5 seeds at 20% MCAR, Letter 0.1085 vs 0.1257 and Spam 0.0495 vs
# 0.0532 for "paper" (the paper reports 0.1198 and 0.0513; bench/RESULTS.md).
DEFAULT_VARIANT = "gantools"
VARIANTS: dict[str, dict] = {
    "paper": {},  # GainParams' defaults are the paper's settings
    # Chosen on a tuning seed (100) that bench/impute.py does not use: each batch hides 30% of the
    # observed cells from G and trains it to rebuild them (their reconstruction weighted 1, the
    # cells it was shown 0.5), with hidden layers twice the encoded width.
    "gantools": {"hidden_mult": 2.0, "drop_rate": 0.3, "kept_weight": 0.5},
}


# How every fit runs unless told otherwise (GainParams' own defaults, the paper's, have none of it):
# 10% of the observed cells held out; the hidden width screened and the iteration count chosen on
# them (smoothed over 4 scores); tables of <= 1,000 rows keep a G of every width and average their
# outputs with weights chosen on the held-out cells; tables of <= 5,000 rows refitted on every cell,
# and there G's weights averaged over the iterations (half-life 2,000, a quarter of the iterations
# run while shorter) where that average scores better than the iterate. Chosen on 500-row subsets 100..102 of
# Letter and Spam and Letter seed 100, which bench/impute.py does not use. With validation_rate 0
# none of it applies: the fit before self-validation, exactly.
SELF_VALIDATION = {"validation_rate": 0.1, "select_iterations": True, "width_choices": (0.5, 1.0, 2.0, 4.0, 8.0),
                   "refit_rows": 5000, "smooth": 4, "ema_half_life": 2000, "ensemble_rows": 1000}


@dataclass
class GainParams:
    """Hyper-parameters of one fit (the checkpoint's `hparams`); the defaults are the paper's."""

    variant: str = "paper"
    iterations: int = 10000
    batch_size: int = 128
    hint_rate: float = 0.9
    alpha: float = 100.0
    hidden: int | None = None  # hidden width; None: round(hidden_mult * dim)
    hidden_mult: float = 1.0
    drop_rate: float = 0.0  # "gantools": fraction of observed cells hidden from G per batch
    kept_weight: float = 1.0  # weight of the reconstruction loss on observed cells G was shown
    lr: float = 1e-3
    lr_schedule: str = "constant"  # or "cosine": decay to 0 over the iterations
    # Self-validation: this fraction of the observed cells (seeded) is held out of training and G
    # is scored on it every `eval_every` iterations; 0: none (train on every observed cell).
    validation_rate: float = 0.0
    # True: `iterations` is a budget; the iterate that scores best on the held-out cells is kept
    # and training stops `patience` iterations after the best. False: exactly `iterations`.
    select_iterations: bool = False
    eval_every: int = 250
    smooth: int = 1  # selection compares the mean of this many successive scores
    patience: int = 3000
    # With selection: hidden-width multipliers (of the encoded width) each to train one G with for
    # `screen_iterations`, those giving widths within `width_range`; the best-scoring G trains on.
    # Empty: the variant's width only.
    width_choices: tuple = ()
    width_range: tuple = (16, 128)
    screen_iterations: int = 2000
    refit_rows: int = 0  # with selection, tables of at most this many rows are refitted on every cell
    # With the width screen, tables of at most this many rows keep a G of every width (each trained
    # to its own best count) and average their outputs.
    ensemble_rows: int = 0
    # G's weights are also kept as an exponential moving average with this half-life in iterations,
    # or `ema_rampup` times the iterations run while that is shorter (the early iterates fade out);
    # with held-out cells the better-scoring of the average and the iterate is the G used. 0: none.
    ema_half_life: int = 0
    ema_rampup: float = 0.25

    @classmethod
    def for_variant(cls, variant: str, **overrides) -> "GainParams":
        """A variant's settings with gantools' self-validation (SELF_VALIDATION), then `overrides`
        (None: unset); `iterations` given fixes the count unless `select_iterations` is given too."""
        if variant not in VARIANTS:
            raise UsageError(f"unknown GAIN variant {variant!r} (known: {', '.join(VARIANTS)})")
        values = dict(SELF_VALIDATION, **VARIANTS[variant])
        values.update({k: v for k, v in overrides.items() if v is not None})
        if overrides.get("iterations") is not None and overrides.get("select_iterations") is None:
            values["select_iterations"] = False  # a given count is the count trained, at the variant's width
        if not values["validation_rate"] and overrides.get("ema_half_life") is None:
            values["ema_half_life"] = 0
        return cls(variant=variant, **values)

    def hidden_width(self, dim: int) -> int:
        return int(self.hidden) if self.hidden else max(1, int(round(self.hidden_mult * dim)))

    def as_dict(self) -> dict:
        return dict(self.__dict__)
