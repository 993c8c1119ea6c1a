"""The seam between the trainer and a model: what a model's training objective owns.

A model's registry entry names an objective class (`ModelSpec.objective`). The trainer builds it
with the model's hyper-parameters, the data spec and the loss, and from then on knows only names:
the networks and optimisers it declares, the tensors its prior draws, the values it logs and its
phases. `GANObjective` is the plain GAN (G against D, z ~ N(0, I)); a model subclasses it and
overrides what differs (docs/ARCHITECTURE.md: "The model seam").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from gantools.errors import UsageError


def check_temperature(temperature: float | None) -> None:
    """Refuse a latent temperature outside gantools.options' range for it (None: no scaling); for callers of
    the Python API, which the CLI's own check does not cover."""
    from gantools.options import check_values

    check_values("sample", {"temperature": temperature})


def normal(shape: tuple, generator, truncation: float | None = None, temperature: float | None = None) -> torch.Tensor:
    """Standard normal draws from a `torch.Generator` (training: on its device) or a numpy
    `Generator` (the commands: float32, row-major, so prefix-stable in the first dimension).
    With `truncation` t (numpy only) the normal truncated to [-t, t], by inverting the CDF so
    that the draws stay prefix-stable too; with `temperature` T (numpy only) the draws times T
    (N(0, T^2 I): the same images' latents, moved away from or toward the mean)."""
    if isinstance(generator, torch.Generator):
        if truncation is not None or temperature is not None:
            raise ValueError("truncated or tempered latents are drawn from a numpy generator")
        return torch.randn(shape, generator=generator, device=generator.device)
    check_temperature(temperature)
    if truncation is None:
        z = torch.from_numpy(generator.standard_normal(shape, dtype=np.float32))
    elif not truncation > 0:
        raise UsageError(f"--truncation {truncation}: must be positive")
    else:
        from scipy.special import ndtr, ndtri

        lo = ndtr(-truncation)
        u = generator.random(shape)
        z = torch.from_numpy(ndtri(lo + u * (1 - 2 * lo)).astype(np.float32))
    return z if temperature is None else z * temperature


class GaussianPrior:
    """G's inputs: z ~ N(0, I) of width `z_dim`; for a conditional model also labels y, drawn from
    the training data's class frequencies (the tensor `class_freq`, set by `fit`) unless given."""

    def __init__(self, z_dim: int, num_classes: int = 0):
        self.z_dim = z_dim
        self.tensors: dict[str, torch.Tensor] = {}
        if num_classes:
            self.tensors["class_freq"] = torch.full((num_classes,), 1.0 / num_classes)

    def fit(self, labels: torch.Tensor | None) -> None:
        """Learn what the prior takes from the training data (before the first step of a run)."""
        freq = self.tensors.get("class_freq")
        if freq is not None and labels is not None:
            counts = torch.bincount(labels.cpu().long(), minlength=len(freq)).double()
            self.tensors["class_freq"] = (counts / counts.sum()).float()

    def draw(self, n: int, generator, labels: torch.Tensor | None = None,
             truncation: float | None = None, temperature: float | None = None) -> dict[str, torch.Tensor]:
        """A batch of G's inputs: {"z": n x z_dim} (+ {"y": n labels} when conditional); `truncation` and
        `temperature` as `normal`'s."""
        out = {"z": normal((n, self.z_dim), generator, truncation, temperature)}
        freq = self.tensors.get("class_freq")
        if freq is not None:
            if labels is None:
                if isinstance(generator, torch.Generator):
                    labels = torch.multinomial(freq.to(generator.device), n, replacement=True, generator=generator)
                else:
                    p = freq.double().numpy()
                    labels = torch.from_numpy(generator.choice(len(freq), size=n, p=p / p.sum()))
            out["y"] = labels
        return out

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.tensors)

    def load_state_dict(self, tensors: dict[str, torch.Tensor]) -> None:
        self.tensors.update(tensors)


@dataclass(frozen=True)
class Phase:
    """A stretch of training. `optimizer` None is the adversarial phase (D and G updates on the
    trainer's schedule; it runs --steps steps and comes last); a name is a phase of `steps` steps
    that trains that one optimiser on `objective.phase_loss` (e.g. an autoencoder pretraining)."""

    name: str
    steps: int | None = None
    optimizer: str | None = None


@dataclass
class DStep:
    """What D's step computed: its loss, D's scores on the real batch (for R1), values to log, and
    with simultaneous updates G's loss from the same forward pass of D."""

    loss: torch.Tensor
    real_scores: torch.Tensor
    logs: dict[str, torch.Tensor] = field(default_factory=dict)
    loss_g: torch.Tensor | None = None


class GANObjective:
    """The plain GAN: networks G and D, one Adam each, z ~ N(0, I) (labels too for a conditional
    model), the registry loss (`--loss`) on D's scores, one adversarial phase."""

    generator = "G"  # the network that samples: EMA'd, drawn in sample grids and by the commands
    update_schemes = ("alternating", "simultaneous")  # the --updates this objective's losses allow
    # every image D scores, real or fake, goes through nets["D"](x, ...), where --augment puts its augmentation
    augmentable = True

    def __init__(self, spec, hparams: dict, data: dict, loss=None):
        self.spec, self.hparams, self.data, self.loss = spec, hparams, data, loss

    def build_networks(self) -> dict[str, torch.nn.Module]:
        return {"G": self.spec.build_generator(self.hparams, self.data),
                "D": self.spec.build_discriminator(self.hparams, self.data)}

    def optimizers(self) -> dict[str, tuple[tuple[str, ...], str]]:
        """Optimiser name -> (the networks it trains, the config key of its learning rate). The
        adversarial phase steps "D" on D's loss and "G" on G's."""
        return {"G": (("G",), "lr_g"), "D": (("D",), "lr_d")}

    def phases(self) -> list[Phase]:
        return [Phase("adversarial")]

    def build_prior(self) -> GaussianPrior:
        classes = int(self.data.get("num_classes") or 0) if self.spec.conditional else 0
        return GaussianPrior(int(self.hparams["z_dim"]), classes)

    def fake(self, G, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """G's output for drawn inputs (training, sample grids and `gantools sample` alike)."""
        return G(inputs["z"], inputs.get("y"))

    def critic(self, nets: dict, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """D's adversarial score per sample: what the loss, the gradient penalty and R1 see."""
        return nets["D"](x, labels).float()

    def d_step(self, nets: dict, real: torch.Tensor, labels, fake: torch.Tensor, inputs: dict,
               with_g: bool) -> DStep:
        out_real = self.critic(nets, real, labels)
        out_fake = self.critic(nets, fake, inputs.get("y"))
        loss_g = self.loss.g_loss(out_fake) if with_g else None
        return DStep(self.loss.d_loss(out_real, out_fake), out_real, self._scores(out_real, out_fake), loss_g)

    def g_step(self, nets: dict, fake: torch.Tensor, inputs: dict) -> tuple[torch.Tensor, dict]:
        return self.loss.g_loss(self.critic(nets, fake, inputs.get("y"))), {}

    def phase_loss(self, phase: str, nets: dict, real: torch.Tensor, labels, inputs: dict) -> tuple[torch.Tensor, dict]:
        """The loss of a non-adversarial phase (see `Phase`) and values to log."""
        raise NotImplementedError(f"{type(self).__name__} has no phase {phase!r}")

    def end_phase(self, phase: str, nets: dict, prior: GaussianPrior, batches) -> None:
        """Called once right after the last step of a phase that another follows (e.g. initialise networks
        or fit the prior from what the phase learned), before that step's checkpoint. `batches` yields
        every training image once, in stored order, as (x prepared as for `phase_loss`, labels)."""

    @torch.no_grad()
    def _scores(self, out_real: torch.Tensor, out_fake: torch.Tensor) -> dict[str, Any]:
        """D(x) and D(G(z)): mean probabilities where the loss reads D's outputs as logits, else mean scores."""
        read = torch.sigmoid if self.loss.probabilities else (lambda t: t)
        return {"d_real": read(out_real).mean(), "d_fake": read(out_fake).mean()}


def objective_class(spec) -> type:
    """The objective of a model trained by `gantools train`: its registry entry's, or the plain GAN."""
    return spec.objective or GANObjective


def build_objective(spec, hparams: dict, data: dict, loss=None) -> GANObjective:
    return objective_class(spec)(spec, hparams, data, loss)
