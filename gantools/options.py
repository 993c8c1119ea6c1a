"""The allowed values of every numeric option of every command, in one table (no torch).

The CLI checks each command's options against it before any work starts (`handle_errors` in
gantools/cli/common.py), and `gantools train` checks its config (a `--config` file, the values
of a resumed run) against the same table. Keys are the options' Python names, which are also
the keys of `config.toml`; an option whose name means something else in one command has an
entry under that command in COMMAND_RANGES.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Mapping

from gantools.errors import UsageError


@dataclass(frozen=True)
class Range:
    """The values one numeric option takes: finite numbers of `kind` (int or float) between `lo`
    and `hi` (None: unbounded; `*_open`: the bound itself excluded), or one of `choices`; `size`
    numbers at once (e.g. 2 for --betas). `special` values lie outside the range and mean what
    the option's help says, e.g. {0: "never"}."""

    kind: type
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    choices: tuple = ()
    size: int | None = None
    special: Mapping[float, str] = field(default_factory=dict)

    def allows(self, value: Any) -> bool:
        if self.size is not None:
            return (isinstance(value, (list, tuple)) and len(value) == self.size
                    and all(self._allows_one(v) for v in value))
        return self._allows_one(value)

    def _allows_one(self, v: Any) -> bool:
        number = numbers.Integral if self.kind is int else numbers.Real
        if isinstance(v, bool) or not isinstance(v, number) or not math.isfinite(v):
            return False
        if v in self.special:
            return True
        if self.choices:
            return v in self.choices
        return ((self.lo is None or (v > self.lo if self.lo_open else v >= self.lo))
                and (self.hi is None or (v < self.hi if self.hi_open else v <= self.hi)))

    def describe(self) -> str:
        """What the option takes, as in "must be ...": e.g. "a finite number > 0"."""
        if self.choices:
            text = " or ".join(map(_fmt, self.choices))
        else:
            if self.size is not None:
                noun = f"{self.size} {'integers' if self.kind is int else 'numbers'}"
            elif self.kind is int:
                noun = "an integer"
            else:
                noun = "a finite number" if self.hi is None else "a number"
            if self.hi is None:
                text = f"{noun} {'>' if self.lo_open else '>='} {_fmt(self.lo)}"
            else:
                text = (f"{noun} in {'(' if self.lo_open else '['}{_fmt(self.lo)}, "
                        f"{_fmt(self.hi)}{')' if self.hi_open else ']'}")
        return text + "".join(f", or {_fmt(v)} ({meaning})" for v, meaning in self.special.items())

    def check(self, label: str, value: Any) -> None:
        """Raise UsageError "LABEL VALUE: must be ..." unless `value` is allowed."""
        if not self.allows(value):
            raise UsageError(f"{label} {_fmt(value)}: must be {self.describe()}")


def _fmt(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return ",".join(map(_fmt, v))
    if isinstance(v, float):
        return f"{v:.15g}"
    return str(v) if isinstance(v, numbers.Number) else repr(v)


POSITIVE = Range(float, 0, lo_open=True)
AT_LEAST_1 = Range(int, 1)
# numpy's default_rng takes any integer >= 0 and torch's manual_seed up to 2**64 - 1, but training
# also seeds each epoch's order with seed * 1_000_003 + epoch: 32 bits keep that within torch's range.
SEED_MAX = 2**32 - 1
# interpolate --zoom: a picture (.png grid, .gif frame) at most this many pixels a side (16384^2 RGB: 768 MiB)
MAX_PICTURE_SIDE = 16384
MAX_ZOOM = 64  # before the model's image size is known; MAX_PICTURE_SIDE is checked once it is

RANGES: dict[str, Range] = {
    # counts and sizes
    "n": AT_LEAST_1,  # -n: images to generate or to score
    "batch_size": AT_LEAST_1,
    "steps": AT_LEAST_1,  # train: the total number of optimisation steps
    "epochs": POSITIVE,
    "lr_horizon": AT_LEAST_1,  # train: the step where a linear learning-rate schedule reaches 0
    "n_critic": AT_LEAST_1,
    "z_dim": AT_LEAST_1,
    "resolution": AT_LEAST_1,
    "channels": Range(int, choices=(1, 3)),
    "sample_every": Range(int, 1, special={0: "never"}),
    "ckpt_every": AT_LEAST_1,
    "keep": AT_LEAST_1,
    "log_every": AT_LEAST_1,
    "nrow": AT_LEAST_1,
    "rows": AT_LEAST_1,
    "zoom": Range(int, 1, MAX_ZOOM),
    "kid_subsets": AT_LEAST_1,
    "kid_subset_size": Range(int, 2),  # the unbiased MMD^2 averages over pairs of distinct images
    "is_splits": AT_LEAST_1,
    "iterations": AT_LEAST_1,
    "draws": AT_LEAST_1,  # impute: random completions to write
    "classifier_epochs": AT_LEAST_1,  # balance --evaluate: passes of each classifier over its set
    "min_generated": Range(int, 0),  # balance: generated images every class gets at least
    # rates, weights and the like
    "lr_g": POSITIVE,
    "lr_d": POSITIVE,
    "betas": Range(float, 0, 1, hi_open=True, size=2),
    "ema_decay": Range(float, 0, 1, lo_open=True, hi_open=True),
    "ema_rampup": Range(float, 0, 1, lo_open=True, special={0: "no warm-up"}),
    "r1": Range(float, 0, lo_open=True, special={0: "off"}),
    "test_split": Range(float, 0, 1, lo_open=True, hi_open=True),  # balance --evaluate: held-out fraction
    "real_share": Range(float, 0, 1, hi_open=True),  # balance: the share of each class's fill copied, not generated
    "truncation": POSITIVE,
    "temperature": POSITIVE,  # sample, balance: z times T
    "fps": POSITIVE,
    "hint_rate": Range(float, 0, 1),
    "alpha": Range(float, 0),
    "miss_rate": Range(float, 0, 1, lo_open=True, hi_open=True),
    "validation_rate": Range(float, 0, 0.5, lo_open=True, special={0: "none"}),  # impute
    "seed": Range(int, 0, SEED_MAX),
    "nproc": AT_LEAST_1,  # train: processes on this machine
    # train: augmentation and evaluation during training
    "ada_target": Range(float, 0, 1, lo_open=True),
    "ada_kimg": POSITIVE,
    "eval_every": Range(int, 1, special={0: "never"}),
    "eval_n": Range(int, 2),  # FID's covariance and KID's pairs need two images
    "patience": AT_LEAST_1,
}

# The words of train's word-valued options: their CLI types (what TAB offers and what is accepted) and
# the check of a --config file or a resumed run's values (gantools.train._resolve) read these.
CHOICES: dict[str, tuple[str, ...]] = {
    "compile": ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"),
    "lr_schedule": ("constant", "linear"),
    "updates": ("alternating", "simultaneous"),
    "augment": ("diffaug", "ada", "none"),
    "eval_metric": ("fid", "kid"),
}


def check_choices(values: Mapping[str, Any], source: str | None = None) -> None:
    """Refuse (UsageError) a word-valued option that is not one of its CHOICES; None means unset."""
    for name, words in CHOICES.items():
        value = values.get(name)
        if value is not None and value not in words:
            label = f"{source}: {name} =" if source else "--" + name.replace("_", "-")
            raise UsageError(f"{label} {value}: expected {', '.join(words[:-1])} or {words[-1]}")


COMMAND_RANGES: dict[str, dict[str, Range]] = {
    "interpolate": {"steps": Range(int, 2),  # frames per segment, both endpoints included
                    "code": Range(int, 1)},  # --code K: continuous codes count from 1
}


def range_for(command: str, name: str) -> Range | None:
    """The range of option `name` of `command`, or None when the table has none."""
    return COMMAND_RANGES.get(command, {}).get(name) or RANGES.get(name)


def check_values(command: str, values: Mapping[str, Any], source: str | None = None) -> None:
    """Refuse (UsageError, exit 2) the first value out of its range; None means unset. Keys the table
    does not know are not numbers and pass. Values are named as options (--lr-g), or as `SOURCE:
    key =` when they come from a file."""
    for name, value in values.items():
        entry = range_for(command, name)
        if entry is not None and value is not None:
            flag = "-" + name if len(name) == 1 else "--" + name.replace("_", "-")
            entry.check(f"{source}: {name} =" if source else flag, value)
