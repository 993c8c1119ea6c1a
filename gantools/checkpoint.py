"""The one checkpoint format every command reads and writes.

A checkpoint is a `torch.save`d dict of plain data (str, int, float, bool,
None, lists, dicts, tuples) and tensors, written atomically and read with
`torch.load(weights_only=True)`, so loading never runs code. The schema is in
docs/FORMATS.md; `new_checkpoint` builds the skeleton.
"""

from __future__ import annotations

import datetime as _dt
import os
import zipfile
from pathlib import Path
from typing import Any

from gantools import __version__
from gantools.errors import GantoolsError, first_line
from gantools.fsutil import atomic_path

FORMAT = "gantools-checkpoint"
VERSION = 2
READABLE_VERSIONS = (1, 2)  # version 1 files are read as version 2 by `upgrade`
REQUIRED_KEYS = ("format", "version", "model", "hparams", "data", "state")


def new_checkpoint(model: str, hparams: dict, data: dict, state: dict, **extra: Any) -> dict:
    """Return a checkpoint dict with the format header filled in.

    `data` is the data spec (kind, channels, resolution, dim, value_range,
    num_classes, class_names, source); `state` maps each network's name (G, D, ...),
    the EMA generator's (G_ema) and each optimiser's (opt_G, opt_D, ...) to state
    dicts. Extra keys (step, rng, config, metrics, networks, optimizers, generator,
    prior, phase) are stored as given; the ones not given are read off `state`.
    """
    ckpt = {
        "format": FORMAT,
        "version": VERSION,
        "gantools_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "model": model,
        "hparams": dict(hparams),
        "data": dict(data),
        "state": dict(state),
        "step": 0,
        "rng": {},
        "config": {},
        "metrics": [],
    }
    ckpt.update(extra)
    return upgrade(ckpt)


def upgrade(ckpt: dict) -> dict:
    """Fill the keys of version 2 that a version 1 file (or a writer that names only `state`) lacks:
    the networks and optimisers named in `state`, the generator `G`, an empty prior (the standard
    normal), the one adversarial phase at the checkpoint's step."""
    state = ckpt.get("state") or {}
    ckpt.setdefault("networks", [k for k in state if not k.startswith("opt_") and not k.endswith("_ema")])
    ckpt.setdefault("optimizers", {k[4:]: [k[4:]] for k in state if k.startswith("opt_")})
    ckpt.setdefault("generator", "G")
    ckpt.setdefault("prior", {})
    ckpt.setdefault("phase", {"name": "adversarial", "index": 0, "step": int(ckpt.get("step", 0))})
    return ckpt


def save_checkpoint(ckpt: dict, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write `ckpt` to `path` atomically (temporary name, then rename); an existing file is refused
    unless `overwrite` (the trainer replaces its own checkpoints)."""
    import torch

    validate(ckpt, path)
    path = Path(path)
    with atomic_path(path, overwrite) as tmp:
        torch.save(ckpt, tmp)
    return path


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict:
    """Read and validate a checkpoint without unpickling code.

    Raises GantoolsError with one line naming the file when it is missing, not a
    gantools checkpoint, of an unknown version, or carries pickled objects.
    """
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise GantoolsError(f"{path}: no such checkpoint file")
    if not zipfile.is_zipfile(path):
        raise GantoolsError(f"{path}: not a gantools checkpoint (not a torch zip archive)")
    _check_crcs(path)
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        first = first_line(e)
        if "Weights only load failed" in str(e) or "Unsupported global" in str(e):
            raise GantoolsError(
                f"{path}: refused: the file holds pickled Python objects that could run code "
                "(gantools checkpoints hold tensors and plain data only)"
            ) from None
        raise GantoolsError(f"{path}: not a readable checkpoint ({first})") from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError) as e:
        first = first_line(e)
        raise GantoolsError(f"{path}: not a readable checkpoint ({first})") from None
    validate(ckpt, path)
    return upgrade(ckpt)


def _check_crcs(path: Path) -> None:
    """Refuse a damaged file: torch.load does not check the zip's CRC-32s, so a flipped bit in the weights
    would load silently. Reading every member to check them costs about as much as reading the file."""
    import zlib

    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError) as e:
        first = first_line(e)
        raise GantoolsError(f"{path}: damaged checkpoint file ({first})") from None
    if bad is not None:
        raise GantoolsError(f"{path}: damaged checkpoint file (member {bad} fails its CRC check); "
                            "use another copy or checkpoint")


def validate(ckpt: Any, path: str | os.PathLike = "<checkpoint>") -> None:
    """Check the format header and required keys; raise GantoolsError naming `path` if wrong."""
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise GantoolsError(f"{path}: not a gantools checkpoint (no '{FORMAT}' header)")
    version = ckpt.get("version")
    if version not in READABLE_VERSIONS:
        raise GantoolsError(
            f"{path}: checkpoint format version {version!r} is not supported "
            f"(this gantools {__version__} reads versions {', '.join(map(str, READABLE_VERSIONS))})"
        )
    missing = [k for k in REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise GantoolsError(f"{path}: damaged gantools checkpoint (missing {', '.join(missing)})")
    kinds = {"model": (str, "a name"), "hparams": (dict, "a table"), "data": (dict, "a table"), "state": (dict, "a table"),
             "config": (dict, "a table"), "prior": (dict, "a table"), "phase": (dict, "a table"),
             "optimizers": (dict, "a table"), "rng": (dict, "a table"), "networks": (list, "a list"),
             "metrics": (list, "a list"), "step": (int, "an integer"), "generator": (str, "a name")}
    for key, (kind, what) in kinds.items():
        if key in ckpt and not (isinstance(ckpt[key], kind) and not isinstance(ckpt[key], bool)):
            raise GantoolsError(f"{path}: damaged gantools checkpoint ({key} is {type(ckpt[key]).__name__}, not {what})")
    _validate_hparams(ckpt, path)


def _validate_hparams(ckpt: dict, path: str | os.PathLike) -> None:
    """A registered model's hyper-parameters of the kinds and ranges its defaults declare (gantools.registry
    ModelSpec.hparam_problem): one line naming the file, not a traceback when its networks are built."""
    from gantools.registry import MODELS

    try:
        spec = MODELS.get(ckpt["model"])
    except GantoolsError:  # an unknown model: the command that needs it says so
        return
    if spec.trainer != "gan":  # gantools impute reads and checks its own
        return
    for key, value in ckpt["hparams"].items():
        problem = spec.hparam_problem(key, value)
        if problem:
            raise GantoolsError(f"{path}: damaged gantools checkpoint (hparams.{key} = {value!r}: model "
                                f"{spec.name} {problem})")


def summary(ckpt: dict) -> dict:
    """A JSON-ready description of a checkpoint (everything but the tensors)."""

    def parameters(sd: Any) -> int:
        try:
            return int(sum(v.numel() for v in sd.values() if hasattr(v, "numel")))
        except AttributeError:
            return 0

    state = ckpt.get("state", {})
    ckpt = upgrade(dict(ckpt))
    return {
        "format": ckpt["format"],
        "version": ckpt["version"],
        "gantools_version": ckpt.get("gantools_version"),
        "created": ckpt.get("created"),
        "model": ckpt["model"],
        "hparams": ckpt["hparams"],
        "data": ckpt["data"],
        "step": ckpt.get("step", 0),
        "config": ckpt.get("config", {}),
        "parameters": {
            k: parameters(v) for k, v in state.items() if v is not None and not k.startswith("opt")
        },
        "networks": list(ckpt["networks"]),
        "generator": ckpt["generator"],
        "optimizers": {k: list(v) for k, v in ckpt["optimizers"].items()},
        "prior": {k: list(getattr(v, "shape", ())) for k, v in ckpt["prior"].items()},
        "phase": dict(ckpt["phase"]),
        "state": sorted(k for k, v in state.items() if v is not None),
        "metrics_last": (ckpt.get("metrics") or [None])[-1],
        "metrics_count": len(ckpt.get("metrics") or []),
    }
