"""One registry each for models, losses and metrics.

Modules register into these by name with a decorator; the CLI and the
Python API both look things up here. This module imports no torch, so the
CLI can list names cheaply once the registering modules are imported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Iterator, TypeVar

from gantools.errors import UsageError

T = TypeVar("T")


class Registry(Generic[T]):
    """A name -> entry table with a `register` decorator and a helpful lookup error."""

    def __init__(self, kind: str, loader: Callable[[], None] | None = None):
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._loader = loader
        self._loaded = loader is None

    def _ensure_loaded(self) -> None:
        if not self._loaded:
            self._loaded = True
            self._loader()  # imports the modules that register into this table

    def add(self, name: str, entry: T) -> T:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = entry
        return entry

    def get(self, name: str) -> T:
        self._ensure_loaded()
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(sorted(self._entries)) or "none"
            raise UsageError(f"unknown {self.kind} {name!r} (known: {known})") from None

    def names(self) -> list[str]:
        self._ensure_loaded()
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        self._ensure_loaded()
        return name in self._entries

    def __iter__(self) -> Iterator[tuple[str, T]]:
        self._ensure_loaded()
        return iter(sorted(self._entries.items()))


@dataclass(frozen=True)
class ModelSpec:
    """What the registry knows of a model.

    build_generator(hparams, data) and build_discriminator(hparams, data) take
    the model's hyper-parameters (defaults merged with the user's) and the data
    spec dict of the checkpoint schema, and return torch modules. `defaults`
    declares every hyper-parameter the model takes (`[hparams]`, `--set KEY=VALUE`),
    its networks' and its objective's alike (e.g. InfoGAN's lambda).
    """

    name: str
    description: str
    data_kind: str  # "image", "vector" or "table"
    build_generator: Callable[[dict, dict], Any]
    build_discriminator: Callable[[dict, dict], Any]
    conditional: bool = False
    default_loss: str = "ns"
    # Network hyper-parameters plus training defaults (batch_size, lr_g, lr_d, betas, steps,
    # n_critic, r1, lr_schedule, updates, class_balanced, augment: see gantools.train.TRAIN_KEYS) that
    # unset options fall back to.
    defaults: dict = field(default_factory=dict)
    trainer: str = "gan"  # which loop trains it: "gan" (gantools train) or "gain" (gantools impute)
    resolutions: tuple = ()  # image models: the resolutions it supports (empty: any)
    # what `gantools train` trains: objective(spec, hparams, data, loss) -> an object with the interface of
    # gantools.objective.GANObjective (networks, optimisers, prior, losses, phases); None: that plain GAN
    objective: Callable | None = None
    # recipes per loss: loss name -> defaults that replace those of `defaults` when training with that loss
    # (e.g. WGAN-GP's optimiser and critic), so that `--loss NAME` alone selects the recipe
    loss_defaults: dict = field(default_factory=dict)
    # the least value of integer hyper-parameters where it is not 1 (e.g. 0 meaning "none"): an integer
    # whose default is positive (a width, a size, a count of steps) is refused below 1 otherwise
    hparam_min: dict = field(default_factory=dict)

    def defaults_for(self, loss: str | None) -> dict:
        """`defaults` with the recipe of `loss` over them."""
        return {**self.defaults, **self.loss_defaults.get(loss, {})}

    def hparam_problem(self, key: str, value: Any) -> str | None:
        """What is wrong with `value` for the model's hyper-parameter `key`, as "takes ... here (default D)",
        or None (nothing, or `key` has no default): not of its default's type, or an integer below its least
        value (`hparam_min`, else 1 where the default is positive)."""
        if key not in self.defaults:
            return None
        want = self.defaults[key]
        kinds = {bool: ((bool,), "true or false"), int: ((int,), "an integer"), float: ((int, float), "a number"),
                 str: ((str,), "a word"), list: ((list, tuple), "a list"), tuple: ((list, tuple), "a list")}
        ok, what = kinds.get(type(want), (None, ""))
        if ok is None:
            return None
        if not isinstance(value, ok) or (isinstance(value, bool) and type(want) is not bool):
            return f"takes {what} here (default {want!r})"
        if type(want) is int:
            least = self.hparam_min.get(key, 1 if want > 0 else None)
            if least is not None and value < least:
                return f"takes an integer >= {least} here (default {want!r})"
        return None


@dataclass(frozen=True)
class LossSpec:
    """A GAN objective: d_loss(real_out, fake_out) and g_loss(fake_out) on discriminator outputs."""

    name: str
    description: str
    d_loss: Callable
    g_loss: Callable
    gradient_penalty: float = 0.0  # lambda of the WGAN-GP penalty, 0 for none
    default_n_critic: int = 1
    probabilities: bool = False  # D's outputs are logits of P(real): D(x), D(G(z)) are logged through a sigmoid


@dataclass(frozen=True)
class MetricSpec:
    """An evaluation metric over Inception features (or logits)."""

    name: str
    description: str
    compute: Callable
    needs_real: bool = True


def _load_models() -> None:
    import gantools.models  # noqa: F401  (registers every module in the package)


def _load_losses() -> None:
    import gantools.losses  # noqa: F401


def _load_metrics() -> None:
    import gantools.metrics  # noqa: F401


MODELS: Registry[ModelSpec] = Registry("model", _load_models)
LOSSES: Registry[LossSpec] = Registry("loss", _load_losses)
METRICS: Registry[MetricSpec] = Registry("metric", _load_metrics)


def register_model(spec: ModelSpec) -> ModelSpec:
    return MODELS.add(spec.name, spec)


def register_loss(spec: LossSpec) -> LossSpec:
    return LOSSES.add(spec.name, spec)


def register_metric(spec: MetricSpec) -> MetricSpec:
    return METRICS.add(spec.name, spec)
