"""Rebuild a generator from a checkpoint and draw seeded samples from it.

Latents come from numpy's PCG64 stream for the seed, drawn row by row in one
sequence, so image i of seed s is the same whatever the batch size or count.
"""

from __future__ import annotations

import inspect
import os
from typing import Iterator, Sequence

import numpy as np
import torch

from gantools.errors import GantoolsError, UsageError, first_line
from gantools.registry import MODELS


def resolve_device(device: str = "auto") -> torch.device:
    """'auto' picks cuda, then mps, then cpu; an unavailable device is a usage error."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {device}: CUDA is not available on this machine")
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UsageError("--device mps: MPS is not available on this machine")
    try:
        return torch.device(device)
    except RuntimeError:
        raise UsageError(f"--device {device}: expected auto, cpu, cuda, cuda:N or mps") from None


def model_spec(ckpt: dict, path: str | os.PathLike | None = None):
    """The registry's entry for the checkpoint's model; an unknown one is a damaged (or newer) file: exit 1,
    one line naming `path`."""
    try:
        return MODELS.get(ckpt["model"])
    except UsageError as e:
        raise GantoolsError(f"{path if path is not None else 'checkpoint'}: {e}") from None


def load_generator(ckpt: dict, device: torch.device | str = "cpu", ema: bool = True,
                   path: str | os.PathLike | None = None) -> torch.nn.Module:
    """The checkpoint's generator (its EMA copy when present and `ema`), in eval mode. `path`, the file it
    was read from, names it in the errors."""
    where = f"{path}: " if path is not None else ""
    spec = model_spec(ckpt, path)
    if spec.trainer != "gan":
        raise UsageError(f"model {ckpt['model']!r} is not an image/vector generator (it is used by "
                         f"`gantools {'impute' if spec.trainer == 'gain' else spec.trainer}`)")
    try:
        G = spec.build_generator(ckpt["hparams"], ckpt["data"])
    except Exception as e:  # hyper-parameters or data spec the model cannot build: a damaged file, one line
        raise GantoolsError(f"{where}damaged checkpoint: its hyper-parameters and data do not build model {ckpt['model']!r} "
                            f"({first_line(e)})") from None
    name = ckpt.get("generator", "G")
    state = ckpt["state"].get(f"{name}_ema") if ema else None
    state = state if state is not None else ckpt["state"].get(name)
    if state is None:
        raise GantoolsError(f"{where}checkpoint has no generator weights (state {name!r})")
    try:
        G.load_state_dict(state)
    except RuntimeError as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()] or [type(e).__name__]
        detail = lines[1] if len(lines) > 1 and lines[0].startswith("Error(s) in loading") else lines[0]
        raise GantoolsError(f"{where}checkpoint weights do not fit model {ckpt['model']!r}: {detail}") from None
    return G.to(device).eval().requires_grad_(False)


def latents(seed: int, n: int, z_dim: int, truncation: float | None = None) -> np.ndarray:
    """n x z_dim float32 standard normal latents for `seed`, prefix-stable in n: the draw of the
    standard prior (gantools.objective.GaussianPrior) from the seed's numpy stream.

    With `truncation` t the latents follow the normal truncated to [-t, t] (BigGAN's
    truncation trick), drawn by inverting the CDF so they stay prefix-stable too.
    """
    from gantools.objective import GaussianPrior

    return GaussianPrior(z_dim).draw(n, np.random.default_rng(seed), truncation=truncation)["z"].numpy()


def load_objective(ckpt: dict):
    """The checkpoint's model objective (how G is fed) and its prior, with the prior's saved tensors."""
    from gantools.objective import build_objective

    objective = build_objective(MODELS.get(ckpt["model"]), ckpt["hparams"], ckpt["data"])
    prior = objective.build_prior()
    prior.load_state_dict(ckpt.get("prior") or {})
    return objective, prior


def class_labels(n: int, num_classes: int, classes: int | Sequence[int] | None = None) -> np.ndarray | None:
    """Labels of a conditional model's n images (None for an unconditional model): `classes` (one index
    or a list) in turn, by default every class in turn. Image i gets classes[i % len(classes)], so
    n = k * len(classes) gives k images of each, and image i's label depends neither on n nor on the
    batch size, nor on the seed."""
    if num_classes <= 0:
        if classes is not None:
            raise UsageError("--class: this model is not conditional")
        return None
    chosen = list(range(num_classes)) if classes is None else [classes] if isinstance(classes, int) else list(classes)
    if not chosen:
        raise UsageError("--class: name at least one class")
    for k in chosen:
        if not 0 <= k < num_classes:
            raise UsageError(f"--class {k}: must be in 0..{num_classes - 1}")
    return np.asarray(chosen, np.int64)[np.arange(n) % len(chosen)]


def resolve_class(value: str | None, class_names: list[str]) -> int | None:
    """--class given as an index or a class name -> index."""
    if value is None:
        return None
    if not class_names:
        raise UsageError("--class: this model is not conditional")
    if value in class_names:
        return class_names.index(value)
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"--class {value}: not a class index or one of: {', '.join(class_names)}") from None


def resolve_classes(value: str | None, class_names: list[str]) -> list[int] | None:
    """--class as one class or a comma list of indices or names (`3,7`, `cat,dog`) -> indices."""
    if value is None:
        return None
    items = [item.strip() for item in value.split(",")]
    if not all(items):
        raise UsageError(f"--class {value}: an empty class in the list")
    return [resolve_class(item, class_names) for item in items]


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Generator output in [-1, 1] -> uint8 (same layout)."""
    return ((x.float() + 1) * 127.5).round_().clamp_(0, 255).to(torch.uint8)


def is_conditional(ckpt: dict) -> bool:
    return MODELS.get(ckpt["model"]).conditional and ckpt["data"].get("num_classes", 0) > 0


@torch.no_grad()
def generate_batches(
    ckpt: dict,
    n: int,
    seed: int = 0,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    classes: int | Sequence[int] | None = None,
    truncation: float | None = None,
    ema: bool = True,
    G: torch.nn.Module | None = None,
    codes: dict | None = None,  # filled with the prior's other draws (e.g. InfoGAN's codes), all n, at the first batch
    temperature: float | None = None,
) -> Iterator[tuple[torch.Tensor, np.ndarray | None, np.ndarray]]:
    """Yield (uint8 NCHW images on the CPU — or float N x dim for vector models —, labels, z) batches.
    A conditional model's labels are `classes` in turn, by default all its classes (`class_labels`).
    `truncation` and `temperature` shape the normal z (gantools.objective.normal)."""
    if n <= 0:
        raise UsageError(f"-n {n}: must be at least 1")
    if batch_size <= 0:
        raise UsageError(f"--batch-size {batch_size}: must be at least 1")
    device = resolve_device(device) if isinstance(device, str) else device
    G = G if G is not None else load_generator(ckpt, device, ema)
    num_classes = int(ckpt["data"].get("num_classes", 0)) if is_conditional(ckpt) else 0
    y_all = class_labels(n, num_classes, classes)
    objective, prior = load_objective(ckpt)
    tempered = {} if temperature is None else {"temperature": temperature}  # priors predating it still draw
    if tempered and "temperature" not in inspect.signature(prior.draw).parameters:
        raise UsageError(f"--temperature {temperature}: {ckpt['model']}'s prior does not take a temperature")
    inputs = prior.draw(n, np.random.default_rng(seed), None if y_all is None else torch.from_numpy(y_all), truncation,
                        **tempered)
    if codes is not None:
        codes.update({k: v.numpy() for k, v in inputs.items() if k not in ("z", "y")})
    image = ckpt["data"]["kind"] == "image"
    for start in range(0, n, batch_size):
        batch = {k: v[start:start + batch_size] for k, v in inputs.items()}
        out = objective.fake(G, {k: v.to(device) for k, v in batch.items()})
        y = batch["y"].numpy() if "y" in batch else None
        yield (to_uint8(out).cpu() if image else out.float().cpu()), y, batch["z"].numpy()
