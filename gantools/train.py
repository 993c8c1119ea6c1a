"""The training loop of `gantools train`, reading top to bottom: config (one resolution, `_resolve`) ->
data -> the model's objective and networks -> run folder -> loop over the objective's phases (D steps,
G step, EMA, log, samples, checkpoints). Nothing here is specific to a model (gantools.objective).

Everything random comes from seeded generators saved in each checkpoint, so a
run resumed from step N continues exactly as if it had never stopped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import re
import signal
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from gantools import checkpoint as ckpt_io
from gantools import distributed
from gantools.augment import AugmentedCritic, build_augment, seed_for
from gantools.data import ImageSet, open_source
from gantools.data.sampling import class_balanced_order
from gantools.errors import GantoolsError, Interrupted, UsageError, first_line
from gantools.generate import resolve_device, to_uint8
from gantools.log import ProgressReporter, debug, info, warn
from gantools.losses import gradient_penalty
from gantools.objective import build_objective, objective_class
from gantools.registry import LOSSES, MODELS

try:
    import fcntl
except ImportError:  # Windows: run folders are not locked
    fcntl = None

# Keys of a model's registry defaults that configure training rather than the networks.
TRAIN_KEYS = {"batch_size", "lr_g", "lr_d", "betas", "steps", "n_critic", "r1", "lr_schedule", "updates",
              "class_balanced", "augment"}


@dataclass
class TrainConfig:
    """Every option of `gantools train`; None means "the model's default"."""

    model: str
    data: str
    steps: int | None = None
    epochs: float | None = None
    batch_size: int | None = None
    lr_g: float | None = None
    lr_d: float | None = None
    betas: list[float] | None = None
    n_critic: int | None = None
    loss: str | None = None
    z_dim: int | None = None
    ema: bool = False
    ema_decay: float = 0.999  # the EMA's decay per step once warmed up (ema_beta)
    # the EMA's half-life grows as this fraction of the steps so far (0: no warm-up); 0.01, not stylegan2-ada's
    # 0.05, which lagged G by up to 15 FID on MNIST (bench/RESULTS.md, EMA)
    ema_rampup: float = 0.01
    seed: int = 0
    device: str = "auto"
    out: str | None = None
    sample_every: int = 500
    ckpt_every: int = 1000
    keep: int = 3
    log_every: int = 50
    resolution: int | None = None
    channels: int | None = None
    lr_schedule: str | None = None  # "constant" or "linear": decay both learning rates to 0 at `lr_horizon`
    # the step where a linear schedule reaches 0; default `steps`, fixed when the run starts and kept on
    # resume (so a resumed run's rates are those of one run), unless the resume sets a new one
    lr_horizon: int | None = None
    # "alternating": G's gradient through D after D's update, from a second forward pass of D on the
    # fakes; "simultaneous": G's and D's gradients from the same forward pass (D before its update,
    # as PyTorch-GAN's loops do), one forward pass of D fewer per step
    updates: str | None = None
    # real batches with every class equally often (a rare class's images repeat within an epoch) instead of
    # in the data's proportions; needs labels
    class_balanced: bool | None = None
    r1: float | None = None  # R1 penalty weight gamma (Mescheder et al. 2018): gamma/2 * E|grad D(x_real)|^2
    amp: bool | None = None  # bf16 autocast; default on for CUDA
    compile: str | None = None  # torch.compile G and D with this mode: default, reduce-overhead, max-autotune
    cuda_graphs: bool | None = None  # capture the whole step as a CUDA graph (default: on where possible)
    sync_bn: bool = False  # several processes: batch norm over all ranks' rows (SyncBatchNorm), not each rank's
    augment: str | None = None  # D's inputs augmented: "diffaug", "ada" or "none" (default: by data size)
    ada_target: float = 0.6  # ADA: the mean sign of D's scores on reals that p steers to
    ada_kimg: float = 100  # ADA: p can move from 0 to 1 in this many thousand real images
    eval_every: int = 0  # score the sampling generator every N steps (0: never) against eval_real
    eval_real: str | None = None  # a data source or (FID) a statistics file
    eval_metric: str = "fid"
    eval_n: int = 5000  # generated images per evaluation
    patience: int | None = None  # stop after this many evaluations without a better score
    hparams: dict = field(default_factory=dict)  # extra model hyper-parameters (ngf, hidden, ...)

    @classmethod
    def fields(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------- config files


def read_config_file(path: str | os.PathLike) -> dict:
    """Options from a TOML file (keys as on the command line, dashes or underscores)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise GantoolsError(f"{path}: no such config file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise GantoolsError(f"{path}: not valid TOML ({e})") from None
    out = {}
    known = set(TrainConfig.fields())
    for k, v in raw.items():
        key = k.replace("-", "_")
        if key not in known:
            raise UsageError(f"{path}: unknown key {k!r}")
        out[key] = v
    return out


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return json.dumps(str(v))


CONFIG_HEADER = "# gantools train: the resolved configuration of run {} (readable by --config)"
# the first line of a config.toml gantools wrote: the run's id (none before run ids)
_HEADER = re.compile(r"# gantools train: the resolved configuration of (?:this run|run (\w+)) \(readable by --config\)")


def write_config_toml(config: dict, path: Path, run_id: str) -> None:
    """A flat TOML file of the resolved config (None values left out; hparams as a table); its first line
    names the run (its id, also in each checkpoint), which is how a run folder is told from others."""
    lines = [CONFIG_HEADER.format(run_id)]
    for k, v in config.items():
        if v is not None and k != "hparams":
            lines.append(f"{k} = {_toml_value(v)}")
    if config.get("hparams"):
        lines.append("\n[hparams]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in config["hparams"].items() if v is not None]
    with ckpt_io.atomic_path(path, overwrite=True) as tmp:  # the run folder's own file
        tmp.write_text("\n".join(lines) + "\n")


# ---------------------------------------------------------------------------- run folder


def default_run_dir(model: str, data: str, root: str = "runs") -> Path:
    """runs/<model>-<data name>-NNN, numbered after the highest existing one."""
    name = Path(data.rstrip("/")).stem if not data.startswith("toy:") else data.replace(":", "-")
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "data"
    base = f"{model}-{name}"
    nums = [int(m.group(1)) for p in Path(root).glob(f"{base}-*") if (m := re.fullmatch(re.escape(base) + r"-(\d+)", p.name))]
    return Path(root) / f"{base}-{max(nums, default=0) + 1:03d}"


RUN_FILES = ("config.toml", "checkpoints", "metrics.jsonl", "samples")
LOCK_FILE = ".lock"


def _check_unused(run_dir: Path) -> None:
    """Refuse a run folder that already holds a run or anything else: one folder, one run."""
    if not run_dir.exists():
        return
    if not run_dir.is_dir():
        raise UsageError(f"--out {run_dir}: exists and is not a folder")
    names = set(os.listdir(run_dir)) - {LOCK_FILE}
    if names & set(RUN_FILES) and _folder_run_id(run_dir) is not None and not _has_checkpoint(run_dir):
        raise UsageError(f"--out {run_dir}: holds a run that ended before its first checkpoint (killed: nothing to "
                         "resume); give another --out, or remove the folder yourself")
    if names & set(RUN_FILES):
        raise UsageError(f"--out {run_dir}: holds a run already; continue it with --resume {run_dir}, or start "
                         "afresh with another --out (or remove the folder yourself)")
    if names:
        raise UsageError(f"--out {run_dir}: folder is not empty; give a new or empty folder as --out")


def _folder_run_id(run_dir: Path) -> str | None:
    """The run id named by RUN/config.toml's first line where gantools wrote the file ("" for a run from
    before run ids), else None (no such file, or not gantools')."""
    config = run_dir / "config.toml"
    if config.is_symlink() or not config.is_file():
        return None
    try:
        with open(config, encoding="utf-8") as f:
            first = f.readline().rstrip("\n")
    except (OSError, UnicodeDecodeError):
        return None
    m = _HEADER.fullmatch(first)
    return None if m is None else (m.group(1) or "")


def _is_run_folder_of(run_dir: Path, ck: dict) -> bool:
    """Whether `run_dir` is gantools' own run folder of the checkpoint's run: its config.toml, written by
    gantools, names the checkpoint's run id (a checkpoint from before run ids: the same model, data and
    seed in a config.toml from before run ids)."""
    folder_id = _folder_run_id(run_dir)
    if folder_id is None:
        return False
    if ck.get("run_id"):
        return folder_id == ck["run_id"]
    try:
        saved = read_config_file(run_dir / "config.toml")
    except GantoolsError:
        return False
    config = ck.get("config") or {}
    return all(saved.get(k) == config.get(k) for k in ("model", "data", "seed"))


_RUN_IDS: dict[tuple, str | None] = {}  # (path, size, mtime) -> the run id in that checkpoint file


def _checkpoint_run_id(path: Path) -> str | None:
    """The run id a checkpoint file names (None: none, or not a readable gantools checkpoint)."""
    try:
        st = path.stat()
    except OSError:
        return None
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _RUN_IDS:
        try:
            ck = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            _RUN_IDS[key] = ck.get("run_id") if isinstance(ck, dict) and ck.get("format") == ckpt_io.FORMAT else None
        except Exception:  # anything unreadable is not ours
            _RUN_IDS[key] = None
    return _RUN_IDS[key]


def _own_run_dir(checkpoint: Path) -> Path | None:
    """RUN for a checkpoint RUN/checkpoints/X.pt whose RUN/config.toml gantools wrote, else None."""
    parent = checkpoint.resolve().parent
    return parent.parent if parent.name == "checkpoints" and _folder_run_id(parent.parent) is not None else None


def _has_checkpoint(run_dir: Path) -> bool:
    return any((run_dir / "checkpoints").glob("*.pt"))


def _claim_run_dir(cfg: TrainConfig) -> Path:
    """Create the run folder: --out, or the next free runs/MODEL-DATA-NNN, made with an exclusive
    mkdir so that runs started together never share one."""
    if cfg.out:
        Path(cfg.out).mkdir(parents=True, exist_ok=True)
        return Path(cfg.out)
    while True:
        run_dir = default_run_dir(cfg.model, cfg.data)
        try:
            run_dir.mkdir(parents=True)
            return run_dir
        except FileExistsError:  # taken since it was numbered: the next number
            continue


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold an OS lock on RUN/.lock (which holds our pid) for the life of the training: a second
    writer is refused with the holder's pid. The kernel drops the lock when its holder dies, even by
    SIGKILL, so a leftover file blocks nothing. Without fcntl (Windows) the folder is not locked."""
    if fcntl is None:
        debug(f"{run_dir}: no fcntl here; the run folder is not locked against a second writer")
        yield
        return
    fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        _flock(fd, run_dir)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)  # releases the lock


def _check_not_locked(run_dir: Path) -> None:
    """Refuse (exit 1) a folder whose lock a live training holds; writes nothing."""
    if fcntl is None or not (run_dir / LOCK_FILE).is_file():
        return
    fd = os.open(run_dir / LOCK_FILE, os.O_RDONLY)
    try:
        _flock(fd, run_dir)
    finally:
        os.close(fd)


def _flock(fd: int, run_dir: Path) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise GantoolsError(f"{run_dir}: in use by another gantools train (process {_lock_holder(fd)}); "
                            "wait for it to end or stop it") from None


def _lock_holder(fd: int) -> str:
    """The pid written in a held lock file (the holder writes it just after locking: wait a moment)."""
    for _ in range(20):
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
        if text:
            return text
        time.sleep(0.05)
    return "unknown"


def _step_of(path: Path) -> int | None:
    m = re.fullmatch(r"step-(\d+)\.pt", path.name)
    return int(m.group(1)) if m else None


def _prune(current: Path, keep: int, run_id: str | None = None) -> None:
    """Remove step checkpoints older than `current` beyond the `keep` newest (`current` included).
    `current` always stays, and so do later steps (a branch left by resuming an earlier checkpoint).
    Given `run_id`, only checkpoints of that run are counted and removed (a file gantools did not write
    for the run stays, whatever its name)."""
    now = _step_of(current)
    older = sorted((s, p) for p in current.parent.glob("step-*.pt") if (s := _step_of(p)) is not None and s < now
                   and (run_id is None or (not p.is_symlink() and _checkpoint_run_id(p) == run_id)))
    for _, old in older[:max(0, len(older) - (keep - 1))]:
        old.unlink(missing_ok=True)


def _publish_last(step_path: Path) -> Path:
    """checkpoints/last.pt as a hard link to the newest step file (atomic rename; copy if no links)."""
    import shutil

    last = step_path.parent / "last.pt"
    tmp = step_path.parent / ".last.pt.tmp"
    tmp.unlink(missing_ok=True)
    try:
        os.link(step_path, tmp)
    except OSError:
        shutil.copyfile(step_path, tmp)
    os.replace(tmp, last)
    return last


# ---------------------------------------------------------------------------- the trainer


class StopRequested:
    """SIGINT/SIGTERM set a flag; the loop finishes its step, saves and exits 130."""

    def __init__(self):
        self.signal: int | None = None
        self._old = {}

    def __enter__(self):
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signal is not None:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.signal = signum

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def model_hparams(cfg: TrainConfig, spec) -> dict:
    """The model's hyper-parameters for a resolved config: registry defaults, then the user's [hparams]."""
    hp = {k: v for k, v in spec.defaults_for(cfg.loss).items() if k not in TRAIN_KEYS}
    hp.update(cfg.hparams)
    hp.update(z_dim=cfg.z_dim, loss=cfg.loss)
    return hp


def declared_hparams(spec) -> dict:
    """The hyper-parameters `[hparams]` and `--set` may give a model, with their defaults: those of its
    registry defaults that no option of `gantools train` sets."""
    return {k: v for k, v in spec.defaults.items() if k not in TRAIN_KEYS and k not in TrainConfig.fields()}


def _check_hparams(hparams: dict, spec) -> None:
    """Refuse a hyper-parameter the model does not declare, a value not of its default's type, or an
    integer out of its range (a width or size below 1: spec.hparam_problem)."""
    declared = declared_hparams(spec)
    for key, value in hparams.items():
        if key not in declared:
            known = ", ".join(sorted(declared)) or "none"
            raise UsageError(f"hyper-parameter {key!r}: model {spec.name} has no such setting (it has: {known})")
        problem = spec.hparam_problem(key, value)
        if problem:
            raise UsageError(f"hyper-parameter {key} = {value!r}: model {spec.name} {problem} (--set {key}=VALUE)")


DEFAULT_STEPS = 5000  # the steps of a model whose registry defaults name none


def _resolve(cfg: TrainConfig, spec, data_len: int | None = None) -> TrainConfig:
    """The one resolution of a training config, for a fresh run, a resumed one and --dry-run alike.

    Checks the given values (gantools.options: ranges and choices; None means unset, nothing else
    does), refuses --steps with --epochs, fills unset fields from the model's registry defaults, then
    the loss's, then the fallbacks below, and checks [hparams] against the model's declared
    hyper-parameters. Given the data's size, --epochs becomes steps (and is then unset, so that the
    resolved config names the run's length once); without it (a dry run) those steps stay unknown.
    """
    from gantools.options import check_choices, check_values

    check_values("train", cfg.to_dict())
    check_choices(cfg.to_dict())
    if cfg.steps is not None and cfg.epochs is not None:
        raise UsageError("--steps and --epochs: give the run's length one way, not both")
    if spec.trainer != "gan":
        raise UsageError(f"model {spec.name!r} is trained by `gantools {spec.trainer if spec.trainer != 'gain' else 'impute'}`, not `train`")
    if cfg.resolution is not None and spec.data_kind == "image" and spec.resolutions and cfg.resolution not in spec.resolutions:
        raise UsageError(f"--resolution {cfg.resolution}: {spec.name} supports {', '.join(map(str, spec.resolutions))}")
    if cfg.loss is None:
        cfg.loss = spec.default_loss
    d = spec.defaults_for(cfg.loss)
    loss = LOSSES.get(cfg.loss)
    fallbacks = {"batch_size": 64, "lr_g": 2e-4, "lr_d": 2e-4, "betas": [0.5, 0.999], "n_critic": loss.default_n_critic,
                 "z_dim": 100, "r1": 0.0, "lr_schedule": "constant", "updates": "alternating",
                 "class_balanced": False, "augment": None}  # augment None: by the data's size (below)
    for name, fallback in fallbacks.items():
        if getattr(cfg, name) is None:
            setattr(cfg, name, d.get(name, fallback))
    cfg.betas = list(cfg.betas)
    check_choices(cfg.to_dict(), source=f"model {spec.name}'s defaults")
    allowed = objective_class(spec).update_schemes
    if cfg.updates not in allowed:
        raise UsageError(f"--updates {cfg.updates}: model {spec.name} trains with {' or '.join(allowed)} updates")
    _check_hparams(cfg.hparams, spec)
    if cfg.steps is None and cfg.epochs is None:
        cfg.steps = d.get("steps", DEFAULT_STEPS)
    if not augmentable(spec):
        if cfg.augment not in (None, "none"):
            why = (f"takes {spec.data_kind}s" if spec.data_kind != "image"
                   else "scores images through parts of D, not all through D itself")
            raise UsageError(f"--augment {cfg.augment}: augments D's input images; model {spec.name} {why}")
        cfg.augment = "none"
    if data_len is not None:
        if data_len < cfg.batch_size:
            raise UsageError(f"{cfg.data}: {data_len} samples is fewer than --batch-size {cfg.batch_size}")
        if cfg.epochs is not None:  # epochs > 0 (checked above): at least 1 step
            cfg.steps = math.ceil(cfg.epochs * (data_len // cfg.batch_size) / cfg.n_critic)
            cfg.epochs = None
        if cfg.augment is None:  # by the data's size (a dry run, without it, leaves it unset)
            cfg.augment = default_augment(data_len)
    if cfg.eval_every and not cfg.eval_real:
        raise UsageError(f"--eval-every {cfg.eval_every}: give the real images or statistics to score against as --eval-real")
    if cfg.eval_real and not cfg.eval_every:
        raise UsageError(f"--eval-real {cfg.eval_real}: say how often to evaluate with --eval-every N")
    if cfg.patience is not None and not cfg.eval_every:
        raise UsageError(f"--patience {cfg.patience}: early stopping needs evaluations (--eval-every, --eval-real)")
    if cfg.lr_horizon is None:
        cfg.lr_horizon = cfg.steps
    _check_lr_horizon(cfg)
    return cfg


# image sets of at most this many images train with DiffAugment by default: on the 400 faces it gave dcgan's
# samples an FID 68% below no augmentation's at 1,500 steps (bench/RESULTS.md, augment); larger sets untested
AUGMENT_BELOW = 1000


def default_augment(data_len: int) -> str:
    """--augment's default for an image set of `data_len` images."""
    return "diffaug" if data_len <= AUGMENT_BELOW else "none"


def augmentable(spec) -> bool:
    """Whether --augment applies: images, every one of which D scores through nets["D"](x, ...)."""
    return spec.data_kind == "image" and objective_class(spec).augmentable


def _check_lr_horizon(cfg: TrainConfig) -> None:
    """Refuse a linear schedule whose run goes past its horizon (the rate would be 0 there: steps that do not
    train). Nothing to check while steps (set by --epochs) or the horizon are unknown."""
    if cfg.lr_schedule == "linear" and None not in (cfg.steps, cfg.lr_horizon) and cfg.steps > cfg.lr_horizon:
        raise UsageError(f"{cfg.steps} steps go past --lr-horizon {cfg.lr_horizon}, where the linear learning-rate "
                         f"schedule reaches 0 (later steps would not train); set --lr-horizon {cfg.steps} or more")


def _fit_resolution(ds, spec, cfg: TrainConfig):
    """Image models with fixed resolutions: resize the data to the nearest supported size."""
    if ds.kind != "image" or not spec.resolutions:
        return ds
    size = max(ds.height, ds.width)
    if ds.height == ds.width and size in spec.resolutions:
        return ds
    if cfg.resolution is not None:
        raise UsageError(f"--resolution {cfg.resolution}: {spec.name} supports "
                         f"{', '.join(map(str, spec.resolutions))}")
    target = next((r for r in spec.resolutions if r >= size), spec.resolutions[-1])
    info(f"{ds.source}: {ds.width}x{ds.height} images resized to {target}x{target} for {spec.name}")
    return open_source(cfg.data, resolution=target, channels=cfg.channels)


def _load_data(cfg: TrainConfig, spec):
    ds = open_source(cfg.data, resolution=cfg.resolution, channels=cfg.channels)
    want = spec.data_kind
    if ds.kind != want:
        raise UsageError(f"{cfg.data}: model {spec.name} takes {want} data, this source holds {ds.kind}s")
    return _fit_resolution(ds, spec, cfg)


def _check_world(cfg: TrainConfig, world: int, device: torch.device) -> None:
    """With several processes the global batch must split evenly over them; --sync-bn needs CUDA."""
    if world > 1 and cfg.batch_size % world:
        raise UsageError(f"--batch-size {cfg.batch_size}: the global batch is split over {world} processes; "
                         f"give a multiple of {world}")
    if world > 1 and cfg.sync_bn and device.type != "cuda":
        raise UsageError("--sync-bn: torch's SyncBatchNorm runs on CUDA only; on the CPU each process "
                         "normalises its own rows (leave --sync-bn out)")


def check_launch(cfg: TrainConfig | None, world: int, resume_target: str | None = None,
                 overrides: dict | None = None) -> None:
    """Before `--nproc N` starts its processes: the checks a run makes before reading its data (the config's
    resolution, the batch's split over `world` processes, --sync-bn's device, a used --out; for a resume
    the overrides and the checkpoint's config), so that a bad command is refused once, at once."""
    if resume_target is not None:
        _check_resume_overrides(overrides)
        path = Path(resume_target)
        path = path / "checkpoints" / "last.pt" if path.is_dir() else path
        ck = ckpt_io.load_checkpoint(path)
        cfg = _resume_config(path, ck, overrides)
        if overrides.get("out"):
            _check_not_locked(Path(overrides["out"]))
            _check_unused(Path(overrides["out"]))
        else:  # the folder resume() would write into must be the run's own (read only here)
            run_dir = _own_run_dir(path) or Path(cfg.out or path.parent)
            if not _is_run_folder_of(run_dir, ck):
                _refuse_run_dir(resume_target, run_dir)
    else:
        cfg = dataclasses.replace(cfg, hparams=dict(cfg.hparams))
        if cfg.out:
            _check_not_locked(Path(cfg.out))
            _check_unused(Path(cfg.out))
    cfg = _resolve(cfg, MODELS.get(cfg.model))
    _check_world(cfg, world, resolve_device(cfg.device))


def ema_beta(step: int, decay: float, rampup: float) -> float:
    """The EMA's weight on its old value in the update after G's `step`-th step (1, 2, ...): the half-life
    of `decay` (ln 0.5 / ln decay steps) until it exceeds `rampup` * step, which it is while warming up
    (as stylegan2-ada's ema_rampup): beta = min(decay, 0.5 ** (1 / (rampup * step))). rampup 0: decay."""
    if rampup == 0:
        return decay
    return min(decay, 0.5 ** (1 / (rampup * step)))


class Trainer:
    """Holds one run's networks, optimisers, prior and generators; `run()` trains to the last step.

    What differs per model comes from its objective (gantools.objective): the named networks and
    optimisers, G's inputs (its prior), the losses and logged values, the phases. The trainer owns
    what is common: data, the D/G schedule, regularisers (GP, R1), EMA, AMP, CUDA graphs, logging,
    samples, checkpoints, resume and signals.
    """

    def __init__(self, cfg: TrainConfig, resume: dict | None = None, run_dir: Path | None = None,
                 source: str | None = None):
        self.spec = spec = MODELS.get(cfg.model)
        cfg = _resolve(cfg, spec)  # refuses a bad config (a model train does not train too) before the data is read
        self.dist = distributed.current()  # one process, or this rank of several (gantools.distributed)
        self.device = distributed.local_device(resolve_device(cfg.device))

        # ---- data, then the run's length from its size (--epochs)
        self.data = _load_data(cfg, spec)
        self.data_spec = self.data.spec()
        if spec.conditional and not self.data_spec.get("num_classes"):
            raise UsageError(f"{cfg.data}: model {spec.name} is conditional and needs labelled data (class "
                             "folders, IDX labels, npz/h5 'labels'); this source has no labels")
        self.cfg = cfg = _resolve(cfg, spec, len(self.data))
        if cfg.class_balanced and self.data.labels is None:
            raise UsageError(f"--class-balanced: {cfg.data} has no labels to balance (class folders, IDX labels, "
                             "npz/h5 'labels')")
        self._check_distributed()
        self.loss = LOSSES.get(cfg.loss)
        self.amp = cfg.amp if cfg.amp is not None else self.device.type == "cuda"
        if resume is not None:
            self._check_same_data(resume["data"])
        if self._in_memory():
            self.data.to(self.device)

        # ---- the model's objective and networks (initialised from the seed; a resume loads over them)
        torch.manual_seed(cfg.seed)
        # a resume rebuilds the networks the run trained, from the checkpoint's hyper-parameters: today's
        # registry defaults fill only a fresh run (a key an old checkpoint lacks keeps the model's old meaning)
        self.hparams = hp = dict(resume["hparams"]) if resume is not None else model_hparams(cfg, spec)
        try:  # a combination of hyper-parameters the model cannot build: one line naming them, no traceback
            self.objective = obj = build_objective(spec, hp, self.data_spec, self.loss)
            self.nets = obj.build_networks()
        except GantoolsError:
            raise
        except Exception as e:
            shown = ", ".join(f"{k}={v!r}" for k, v in hp.items() if k in declared_hparams(spec) or k == "z_dim")
            first = first_line(e)
            if resume is not None:
                raise GantoolsError(f"{source or 'checkpoint'}: damaged checkpoint: its hyper-parameters "
                                    f"({shown}) do not build model {cfg.model} ({first})") from None
            raise UsageError(f"model {cfg.model}: cannot build its networks from the hyper-parameters "
                             f"{shown} ({first}); change them with --set KEY=VALUE") from None
        if cfg.sync_bn and self.dist.world > 1:
            self.nets = {name: torch.nn.SyncBatchNorm.convert_sync_batchnorm(net) for name, net in self.nets.items()}
        self.channels_last = self.data.kind == "image" and self.device.type in ("cuda", "cpu")
        for net in self.nets.values():
            net.to(self.device)
            if self.channels_last:
                net.to(memory_format=torch.channels_last)
        self.phases = obj.phases()
        lengths = [p.steps if p.optimizer is not None else cfg.steps for p in self.phases]
        self.phase_ends = list(np.cumsum(lengths))  # global step at which each phase ends
        self.total_steps = int(self.phase_ends[-1])
        self.graph, self.graph_mode = None, None
        graphs = self._use_cuda_graphs()
        fused = self.device.type in ("cuda", "cpu")  # one fused Adam kernel: ~15% faster steps on the CPU here too
        self.params, self.opts, self.lr_keys = {}, {}, {}
        for name, (net_names, lr_key) in obj.optimizers().items():
            self.params[name] = [p for n in net_names for p in self.nets[n].parameters()]
            self.opts[name] = torch.optim.Adam(self.params[name], getattr(cfg, lr_key), betas=tuple(cfg.betas),
                                               fused=fused, capturable=graphs)
            self.lr_keys[name] = lr_key
        self._graphs_wanted = graphs
        self.G_ema = None
        if cfg.ema and self.dist.main:  # rank 0 alone writes checkpoints and grids
            import copy

            self.G_ema = copy.deepcopy(self.nets[obj.generator]).eval().requires_grad_(False)
            self.ema_weight = torch.zeros((), device=self.device)
        self.prior = obj.build_prior()
        if resume is None:
            self.prior.fit(getattr(self.data, "labels", None))

        # ---- random state: one generator on the device for G's inputs (and GP mixing)
        self.gen = torch.Generator(device=self.device).manual_seed(cfg.seed)
        self.step, self.metrics = 0, []
        self.epoch, self.epoch_pos = 0, 0
        if resume is not None:
            self._restore(resume)
        if not self.dist.main:  # the global RNG (e.g. dropout) differs per rank; rank 0's is one process's
            torch.manual_seed(distributed.rank_seed(cfg.seed, self.dist.rank, self.step))
        distributed.broadcast_modules(self.nets.values())  # every rank starts from rank 0's weights
        self.fixed_inputs = self._grid_inputs()

        self.step_nets = dict(self.nets)
        if cfg.compile:
            self.step_nets = {n: torch.compile(net, mode=cfg.compile) for n, net in self.nets.items()}
        # D's inputs, real and fake, through the augmentation in every objective's nets["D"] calls
        self.augment = build_augment(cfg.augment, self.device, seed_for(cfg.seed), cfg.ada_target, cfg.ada_kimg)
        if self.augment is not None:
            self.step_nets["D"] = AugmentedCritic(self.step_nets["D"], self.augment)
            if resume is not None and "augment" in resume:
                self.augment.set_state(resume["augment"])
        self.evaluator = None
        if cfg.eval_every:
            from gantools.metrics.training import TrainingEvaluator

            self.evaluator = TrainingEvaluator(cfg.eval_real, cfg.eval_metric, cfg.eval_n, cfg.seed, self.device,
                                               cfg.patience)
            if resume is not None and "eval" in resume:
                self.evaluator.load_state(resume["eval"])
        self.log_names: list[str] = []

        self.run_dir = Path(run_dir) if run_dir else None  # train() and resume() claim and lock it
        self.written: set[Path] = set()  # the files this training wrote into the run folder (rank 0)
        self.saved_any = False  # whether it wrote a step checkpoint
        # the run's identity, kept across resumes: in config.toml's first line and in every checkpoint
        self.run_id = (resume.get("run_id") if resume is not None else None) or uuid.uuid4().hex

    # ------------------------------------------------------------------ state

    def _check_distributed(self) -> None:
        _check_world(self.cfg, self.dist.world, self.device)

    def _check_same_data(self, saved: dict) -> None:
        for key in ("kind", "channels", "resolution", "dim", "num_classes"):
            if saved.get(key) != self.data_spec.get(key) and key in saved:
                raise UsageError(f"{self.cfg.data}: {key} {self.data_spec.get(key)} differs from the "
                                 f"checkpoint's {saved.get(key)}; resume with the same data")

    def _restore(self, ck: dict) -> None:
        st = ck["state"]
        for name, net in self.nets.items():
            net.load_state_dict(st[name])
        for name, opt in self.opts.items():
            opt.load_state_dict(st[f"opt_{name}"])
        ema = st.get(f"{self.objective.generator}_ema")
        if self.G_ema is not None and ema is not None:
            self.G_ema.load_state_dict(ema)
        self.prior.load_state_dict(ck.get("prior") or {})
        self.step = int(ck["step"])
        self.metrics = list(ck.get("metrics", []))
        rng = ck.get("rng", {})
        if "z" in rng:
            self.gen.set_state(rng["z"].cpu() if self.device.type != "cpu" else rng["z"])
        if "torch" in rng:
            torch.set_rng_state(rng["torch"])
        self.epoch, self.epoch_pos = int(rng.get("epoch", 0)), int(rng.get("epoch_pos", 0))

    def phase_index(self) -> int:
        """The phase the next step belongs to (the last one once the run is done)."""
        return next((i for i, end in enumerate(self.phase_ends) if self.step < end), len(self.phases) - 1)

    def checkpoint(self) -> dict:
        obj = self.objective
        state = {name: net.state_dict() for name, net in self.nets.items()}
        state.update({f"opt_{name}": opt.state_dict() for name, opt in self.opts.items()})
        if self.G_ema is not None:
            state[f"{obj.generator}_ema"] = self.G_ema.state_dict()
        rng = {"z": self.gen.get_state(), "torch": torch.get_rng_state(),
               "epoch": self.epoch, "epoch_pos": self.epoch_pos}
        i = self.phase_index()
        start = int(self.phase_ends[i - 1]) if i else 0
        return ckpt_io.new_checkpoint(
            self.cfg.model, self.hparams, self.data_spec, state,
            step=self.step, rng=rng, config=self.cfg.to_dict(), metrics=self.metrics,
            networks=list(self.nets), generator=obj.generator,
            optimizers={name: list(obj.optimizers()[name][0]) for name in self.opts},
            prior=self.prior.state_dict(), phase={"name": self.phases[i].name, "index": i, "step": self.step - start},
            run_id=self.run_id,
            **({"augment": self.augment.get_state()} if self.augment is not None else {}),
            **({"eval": self.evaluator.state()} if self.evaluator is not None else {}),
        )

    def save(self) -> Path | None:
        """checkpoints/step-NNNNNN.pt and last.pt (rank 0 alone; other ranks None)."""
        if not self.dist.main:
            return None
        path = self.run_dir / "checkpoints" / f"step-{self.step:06d}.pt"
        ckpt_io.save_checkpoint(self.checkpoint(), path, overwrite=True)  # a resume may redo a step
        self.saved_any = True
        _publish_last(path)
        _prune(path, self.cfg.keep, self.run_id)
        return path

    # ------------------------------------------------------------------ data

    def _in_memory(self) -> bool:
        return self.data.kind == "vector" or self.data.images is not None

    def _epoch_orders(self):
        """Endless per-epoch index orders; epoch e's order comes from (seed, e), so resuming mid-epoch is exact.
        Yields index batches (on the data's device for in-memory sets). With several processes, this rank's
        rows of each global batch (gantools.distributed), batch after batch."""
        bs = self.cfg.batch_size
        while True:
            gen = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + self.epoch)
            if self.cfg.class_balanced:
                order = class_balanced_order(self.data.labels, gen)
            else:
                order = torch.randperm(len(self.data), generator=gen)
            order = order[self.epoch_pos * bs:len(order) - len(order) % bs]
            order = distributed.rows(order.view(-1, bs), 1).reshape(-1)
            if self._in_memory():
                order = order.to(self.device)  # index on the device: no host round trip per batch
            yield order
            self.epoch, self.epoch_pos = self.epoch + 1, 0

    def _index_batches(self):
        """Endless batches of indices into an in-memory set."""
        bs = self.cfg.batch_size // self.dist.world  # this rank's share of the global batch
        for order in self._epoch_orders():
            for start in range(0, len(order), bs):
                self.epoch_pos += 1
                yield order[start:start + bs]

    def _real_batches(self):
        """Endless shuffled (x, labels) batches (lazy sets decode through a DataLoader)."""
        if self._in_memory():
            for idx in self._index_batches():
                yield self._gather(idx)
            return
        for order in self._epoch_orders():
            for x, y in self.data.batches(self.cfg.batch_size // self.dist.world, order=order, drop_last=True):
                self.epoch_pos += 1
                yield x, y

    def _gather(self, idx: torch.Tensor):
        if self.data.kind == "vector":
            return self.data.data[idx], None
        return self.data.images[idx], (self.data.labels[idx] if self.data.labels is not None else None)

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        if self.data.kind == "image":
            x = x.float().mul_(2 / 255).sub_(1)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
        return x

    # ------------------------------------------------------------------ one step

    def _draw(self, k: int):
        """The one place G's inputs are drawn in training (eager steps and the CUDA graph's fill alike):
        k batches from the model's prior as {name: k x batch x ...}, and the GP's mixing weights. With several
        processes every rank draws the global batch's and keeps its rows (gantools.distributed)."""
        bs = self.cfg.batch_size
        inputs = {name: distributed.rows(t.unflatten(0, (k, bs)), 1) for name, t in self.prior.draw(k * bs, self.gen).items()}
        eps = torch.rand(k, bs, device=self.device, generator=self.gen) if self.loss.gradient_penalty else None
        return inputs, (distributed.rows(eps, 1) if eps is not None else None)

    def train_step(self, batches) -> torch.Tensor:
        """One step of the current phase: in the adversarial phase n_critic D updates and one G update.
        Returns the values named by `self.log_names` as one tensor (no host sync)."""
        self._set_ema_weight()
        i = self.phase_index()
        phase = self.phases[i]
        if phase.optimizer is not None:
            out = self._phase_step(phase, next(batches))
        elif self.graph is not None:
            return self._replay()
        else:
            k = self.cfg.n_critic
            reals = [next(batches) for _ in range(k)]
            out = self._step_body(reals, *self._draw(k))
        self.step += 1
        if phase.optimizer is not None and self.step == self.phase_ends[i]:
            self._end_phase(phase)
        return out

    def _end_phase(self, phase) -> None:
        """The objective's transition out of a phase, right after its last step: every checkpoint from
        this step on holds the result, so a resume neither repeats it nor misses it."""
        was_training = {name: net.training for name, net in self.nets.items()}
        batches = ((self._prepare(x), y) for x, y in self.data.batches(self.cfg.batch_size))
        self.objective.end_phase(phase.name, self.nets, self.prior, batches)
        for name, net in self.nets.items():
            net.train(was_training[name])
        self.fixed_inputs = self._grid_inputs()  # the prior may have changed

    def _phase_step(self, phase, batch) -> torch.Tensor:
        """A step of a non-adversarial phase: the objective's loss for it, on its one optimiser."""
        x, y = batch
        inputs, _ = self._draw(1)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            loss, logs = self.objective.phase_loss(phase.name, self.step_nets, self._prepare(x), y,
                                                   {k: v[0] for k, v in inputs.items()})
        opt = self.opts[phase.optimizer]
        opt.zero_grad(set_to_none=True)
        loss.backward(inputs=self.params[phase.optimizer])
        distributed.average_gradients(self.params[phase.optimizer])
        opt.step()
        if self.G_ema is not None:
            self._update_ema()
        return self._collect({f"loss_{phase.name}": loss, **logs})

    def _step_body(self, reals, inputs, eps) -> torch.Tensor:
        """The arithmetic of one adversarial step, on given real batches, drawn inputs and GP mixing
        weights. Shared by the eager path and the CUDA graph (which captures exactly this).

        G learns from the last critic step's fakes. With `updates = "simultaneous"` its gradient
        comes through that step's forward pass of D (D's weights before the update), so D runs
        on the fakes once per step instead of twice: about 9% of a DCGAN step's arithmetic.
        Each backward pass is kept to its own optimiser's weights (`inputs=`).
        """
        cfg, k, obj, nets = self.cfg, self.cfg.n_critic, self.objective, self.step_nets
        simultaneous = cfg.updates == "simultaneous"
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp,
                                  cache_enabled=self.graph_mode is None)
        for j, (x, y) in enumerate(reals):
            last = j == k - 1
            shared = last and simultaneous
            real = self._prepare(x)
            drawn = {name: t[j] for name, t in inputs.items()}
            if cfg.r1:
                real.requires_grad_(True)
            with autocast:
                with torch.set_grad_enabled(last):  # earlier critic steps' fakes never reach G
                    fake = obj.fake(nets[obj.generator], drawn)
                d = obj.d_step(nets, real, y, fake if shared else fake.detach(), drawn, with_g=shared)
            if self.augment is not None:
                self.augment.observe(d.real_scores)
            loss_d = d.loss
            if self.loss.gradient_penalty:
                critic = lambda x_, y_: obj.critic(nets, x_, y_)  # noqa: E731
                loss_d = loss_d + self.loss.gradient_penalty * gradient_penalty(critic, real.detach(), fake.detach(), y, eps[j])
            if cfg.r1:
                (grad,) = torch.autograd.grad(d.real_scores.sum(), real, create_graph=True)
                loss_d = loss_d + cfg.r1 / 2 * grad.flatten(1).pow(2).sum(1).mean()
            self.opts["D"].zero_grad(set_to_none=True)
            loss_d.backward(inputs=self.params["D"], retain_graph=shared)
            if shared:  # G's gradient before D's weights change under the saved activations
                loss_g, logs_g = d.loss_g, {}
                self._g_update(loss_g)
            distributed.average_gradients(self.params["D"])  # over the ranks, as one process's batch mean
            self.opts["D"].step()
        if not simultaneous:
            with autocast:
                loss_g, logs_g = obj.g_step(nets, fake, drawn)
            self._g_update(loss_g)
        if self.G_ema is not None:
            self._update_ema()
        if self.augment is not None:
            self.augment.update(self.step + 1, cfg.batch_size * k)
            logs_g = {**logs_g, **self.augment.logs()}
        return self._collect({"loss_d": loss_d, "loss_g": loss_g, **d.logs, **logs_g})

    def _collect(self, logs: dict) -> torch.Tensor:
        """Logged values as one float tensor; their names are kept in `self.log_names`."""
        self.log_names = list(logs)
        with torch.no_grad():
            return torch.stack([torch.as_tensor(v).detach().float() for v in logs.values()])

    def _g_update(self, loss_g: torch.Tensor) -> None:
        self.opts["G"].zero_grad(set_to_none=True)
        loss_g.backward(inputs=self.params["G"])  # no gradients for D's weights
        distributed.average_gradients(self.params["G"])
        self.opts["G"].step()

    # ------------------------------------------------------------------ CUDA graphs

    def _use_cuda_graphs(self) -> bool:
        cfg = self.cfg
        wanted = cfg.cuda_graphs if cfg.cuda_graphs is not None else True
        ok = (self.device.type == "cuda" and self._in_memory() and not cfg.compile
              and cfg.lr_schedule == "constant" and not self.loss.gradient_penalty and not cfg.r1
              and cfg.augment == "none" and self.dist.world == 1)  # several processes: not shown correct
        if cfg.cuda_graphs and not ok:
            warn("--cuda-graphs needs a CUDA device, in-memory data, a constant learning rate, no gradient "
                 "penalty, no R1, no --augment, no --compile and one process; running without")
        return wanted and ok

    def _capture(self, indices) -> None:
        """Record one whole adversarial step (all kernels, optimiser steps included) as a CUDA graph.

        Per step the host then only copies the next batch indices and the drawn inputs (whatever
        the model's prior draws: buffers shaped by the first draw) into static buffers and replays
        the graph: at small batches this removes the launch and Python overhead that otherwise
        dominates. The warm-up steps before capture are real steps. (Not run on a GPU since the
        model seam: untested there.)
        """
        k, dev = self.cfg.n_critic, self.device
        self.static_idx = torch.zeros(k, self.cfg.batch_size, dtype=torch.long, device=dev)
        static: dict[str, torch.Tensor] = {}

        def reals():
            return [self._gather(self.static_idx[j]) for j in range(k)]

        def fill():
            for j in range(k):
                self.static_idx[j].copy_(next(indices))
            drawn, _ = self._draw(k)  # no GP with graphs: no mixing weights
            for name, t in drawn.items():
                static.setdefault(name, torch.empty_like(t)).copy_(t)

        self.graph_mode = "warmup"
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                fill()
                self._set_ema_weight()
                self._step_body(reals(), static, None)
                self.step += 1
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        for opt in self.opts.values():
            opt.zero_grad(set_to_none=True)
        self.graph_mode = "capture"
        with torch.cuda.graph(self.graph):
            self.static_out = self._step_body(reals(), static, None)
        self._fill = fill

    def batch_source(self):
        """Start the data stream for `train_step`; in the adversarial phase with CUDA graphs this
        captures the step first (after 3 real warm-up steps) and returns None, as the graph reads
        its own indices."""
        adversarial = self.phases[self.phase_index()].optimizer is None
        if self._graphs_wanted and adversarial and self.total_steps - self.step > 10:
            self._capture(self._index_batches())
            return None
        return self._real_batches()

    def _replay(self) -> torch.Tensor:
        self._fill()
        self.graph.replay()
        self.step += 1
        return self.static_out

    def _set_ema_weight(self) -> None:
        """The next step's EMA weight 1 - beta into a tensor (which a CUDA graph reads at replay)."""
        if self.G_ema is not None:
            self.ema_weight.fill_(1 - ema_beta(self.step + 1, self.cfg.ema_decay, self.cfg.ema_rampup))

    @torch.no_grad()
    def _update_ema(self) -> None:
        """G_ema <- beta G_ema + (1 - beta) G for the weights; buffers are G's (batch-norm statistics
        recomputed for G_ema's weights, or averaged, scored worse on MNIST: bench/RESULTS.md, EMA)."""
        G, ema = self.nets[self.objective.generator], list(self.G_ema.parameters())
        step = torch._foreach_sub(list(G.parameters()), ema)  # (G - G_ema) (1 - beta), the weight read from
        torch._foreach_mul_(step, self.ema_weight)  # its tensor (a lerp would take it as a number: no graph)
        torch._foreach_add_(ema, step)
        for b_ema, b in zip(self.G_ema.buffers(), G.buffers()):
            b_ema.copy_(b)

    # ------------------------------------------------------------------ samples

    def _grid_inputs(self) -> dict[str, torch.Tensor]:
        """The sample grid's inputs: the latents of `gantools sample --seed SEED`, 64 of them; where the
        prior draws labels (a conditional model), 8 per class instead, row r of the grid labelled r (the
        first 32 classes)."""
        n, labels = 64, None
        if "y" in self.prior.draw(1, np.random.default_rng(self.cfg.seed)):
            labels = torch.arange(min(int(self.data_spec.get("num_classes") or 0), 32)).repeat_interleave(8)
            n = len(labels)
        inputs = self.prior.draw(n, np.random.default_rng(self.cfg.seed), labels)
        return {k: v.to(self.device) for k, v in inputs.items()}

    @torch.no_grad()
    def save_samples(self) -> Path:
        """samples/step-NNNNNN.png: a grid (images) or scatter plot (2-D points) from the fixed inputs."""
        from gantools.data.writers import make_grid, scatter_png

        G = self.G_ema if self.G_ema is not None else self.nets[self.objective.generator]
        was_training = G.training
        G.eval()
        out = self.objective.fake(G, self.fixed_inputs).float()
        G.train(was_training)
        path = self.run_dir / "samples" / f"step-{self.step:06d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        self.written.add(path)
        from PIL import Image

        with ckpt_io.atomic_path(path, overwrite=True) as tmp:
            if self.data.kind == "image":
                grid = make_grid(to_uint8(out).permute(0, 2, 3, 1).cpu().numpy(), nrow=8)
                Image.fromarray(grid[:, :, 0] if grid.shape[2] == 1 else grid).save(tmp, format="PNG")
            else:
                real = self.data.data[:2000].float().cpu().numpy()
                scatter_png(out.cpu().numpy()[:, :2], tmp, real=real[:, :2])
        return path

    def evaluate(self) -> None:
        """Score the sampling generator (--eval-metric), log it to metrics.jsonl and keep checkpoints/best.pt."""
        ev, t0 = self.evaluator, time.perf_counter()
        G = self.G_ema if self.G_ema is not None else self.nets[self.objective.generator]
        model = {"model": self.cfg.model, "hparams": self.hparams, "data": self.data_spec, "prior": self.prior.state_dict()}
        value = ev.score(G, model)
        better = ev.record(self.step, value)
        seconds = time.perf_counter() - t0
        rec = {"step": self.step, self.cfg.eval_metric: value, f"best_{self.cfg.eval_metric}": ev.best,
               "eval_seconds": round(seconds, 3)}
        self.metrics.append(rec)
        self._metrics_file.write(json.dumps(rec) + "\n")
        self._metrics_file.flush()
        if better:
            self.written.add(self.run_dir / "checkpoints" / "best.pt")
            ckpt_io.save_checkpoint(self.checkpoint(), self.run_dir / "checkpoints" / "best.pt", overwrite=True)
        info(f"step {self.step}: {self.cfg.eval_metric} {value:.3f} (best {ev.best:.3f} at step {ev.best_step}); "
             f"evaluation took {seconds:.1f} s")
        if ev.out_of_patience():
            info(f"--patience {ev.patience}: no better {self.cfg.eval_metric} in {ev.since_best} evaluations; "
                 f"stopping at step {self.step} (best: checkpoints/best.pt, step {ev.best_step})")

    def _out_of_patience(self) -> bool:  # rank 0 evaluates; with several processes its verdict is every rank's
        return self.evaluator is not None and distributed.any_rank(self.evaluator.out_of_patience())

    def _set_learning_rates(self) -> None:
        """Each optimiser's rate for the next step (a pure function of the step: resumes exactly). A linear
        schedule decays over the adversarial phase; other phases train at the configured rates."""
        cfg = self.cfg
        i = self.phase_index()
        scale = 1.0
        if cfg.lr_schedule == "linear" and self.phases[i].optimizer is None:
            start = int(self.phase_ends[i - 1]) if i else 0
            scale = 1.0 - (self.step - start) / cfg.lr_horizon  # > 0: steps never go past the horizon (refused)
        for name, opt in self.opts.items():
            for group in opt.param_groups:
                group["lr"] = getattr(cfg, self.lr_keys[name]) * scale

    # ------------------------------------------------------------------ the loop

    def run(self) -> Path:
        """Train until the last phase's last step; returns the final checkpoint path."""
        cfg = self.cfg
        total = self.total_steps
        if self.dist.main:  # rank 0 alone writes the run folder; the other ranks log into nothing
            self.written.update(self.run_dir / name for name in ("config.toml", "metrics.jsonl"))
            (self.run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
            write_config_toml(cfg.to_dict(), self.run_dir / "config.toml", self.run_id)
            # the history up to this run's step (a resume drops what a killed run logged after its checkpoint)
            with ckpt_io.atomic_path(self.run_dir / "metrics.jsonl", overwrite=True) as tmp:
                tmp.write_text("".join(json.dumps(rec) + "\n" for rec in self.metrics))
        metrics_file = self._metrics_file = open(self.run_dir / "metrics.jsonl" if self.dist.main else os.devnull, "a")
        for net in self.nets.values():
            net.train()
        phase = self.phase_index()
        batches = self.batch_source()
        acc, acc_steps, t_log, t_start = None, 0, time.perf_counter(), time.perf_counter()
        last_saved: Path | None = None
        stopping = False  # a signal reached this or (several processes) any rank: all stop at the same step
        progress = ProgressReporter(total, f"train {cfg.model}", done=self.step)
        debug(f"run folder {self.run_dir}; {len(self.data)} samples on {self.device}; "
              + "; ".join(f"{sum(p.numel() for p in net.parameters()):,} {name} params" for name, net in self.nets.items()))
        try:
            with StopRequested() as stop:
                if self.step >= total:
                    info(f"already at step {self.step} of {total}")
                elif self._out_of_patience():
                    info(f"the run stopped early at step {self.step}: {self.evaluator.since_best} evaluations "
                         f"without a better {cfg.eval_metric} (--patience {cfg.patience})")
                while self.step < total and not stopping and not self._out_of_patience():
                    if self.phase_index() != phase:  # a new phase: its own data stream (and CUDA graph)
                        phase = self.phase_index()
                        batches = self.batch_source()
                    self._set_learning_rates()
                    adversarial = self.phases[phase].optimizer is None
                    out = self.train_step(batches)
                    stopping = distributed.any_rank(stop.signal is not None)
                    acc = out.clone() if acc is None else acc.add_(out)
                    acc_steps += 1
                    phase_done = self.step == self.phase_ends[phase]
                    due_log = self.step % cfg.log_every == 0 or phase_done
                    due_ckpt = self.step % cfg.ckpt_every == 0 or self.step == total
                    due_sample = cfg.sample_every > 0 and (self.step % cfg.sample_every == 0 or self.step == total)
                    if due_log or due_ckpt or stopping:
                        values = (distributed.mean(acc) / acc_steps).tolist()  # the one host sync per log interval
                        now = time.perf_counter()
                        if not all(math.isfinite(v) for v in values):
                            where = f"; the last good checkpoint is {last_saved}" if last_saved else ""
                            raise GantoolsError(f"loss became non-finite between steps {self.step - acc_steps + 1} "
                                                f"and {self.step} (try a lower learning rate){where}")
                        images = cfg.batch_size * (cfg.n_critic if adversarial else 1)
                        rec = {"step": self.step, **dict(zip(self.log_names, values)),
                               "images_per_s": acc_steps * images / max(now - t_log, 1e-9),
                               "time": round(now - t_start, 3)}
                        if len(self.phases) > 1:
                            rec["phase"] = self.phases[phase].name
                        self.metrics.append(rec)
                        metrics_file.write(json.dumps(rec) + "\n")
                        metrics_file.flush()
                        acc, acc_steps, t_log = None, 0, now
                        shown = " ".join(f"{n} {rec[n]:.3f}" for n in self.log_names[:2])
                        progress.update(self.step, f"{shown} {rec['images_per_s']:.0f} img/s")
                    if self.evaluator is not None and adversarial and self.step % cfg.eval_every == 0 and self.dist.main:
                        self.evaluate()
                    if due_sample and self.dist.main:
                        self.save_samples()
                    if due_ckpt or self._out_of_patience():
                        last_saved = self.save()
                if stopping:
                    last_saved = self.save()
                    distributed.barrier()  # no rank exits (and has torchrun stop the others) before the checkpoint
                    progress.close()
                    raise Interrupted(f"stopped by signal at step {self.step}; checkpoint written to "
                                      f"{last_saved or 'the run folder by rank 0'}")
        finally:
            progress.close()
            metrics_file.close()
        if last_saved is None and self.dist.main:  # already at the final step: the run's last.pt, or the resumed state saved here
            last = self.run_dir / "checkpoints" / "last.pt"
            last_saved = last if last.is_file() else self.save()
        distributed.barrier()  # every rank ends here, none while rank 0 still writes the last checkpoint
        return last_saved  # None on the other ranks


def train(cfg: TrainConfig) -> Path | None:
    """Train a model from scratch in a new run folder (locked while training); returns the final
    checkpoint's path (None on ranks other than 0 under torchrun: rank 0 claims the folder and the
    others train with its path). An --out folder that is not empty is refused (UsageError)."""
    distributed.join()
    if cfg.out:  # before the data is read
        def check_out() -> None:
            _check_not_locked(Path(cfg.out))
            _check_unused(Path(cfg.out))

        distributed.on_main(check_out)
    trainer = Trainer(cfg)
    with contextlib.ExitStack() as held:
        created: list[Path] = []  # what the claim made: the folder and/or its .lock

        def claim() -> str:
            existed = bool(cfg.out) and Path(cfg.out).exists()
            run_dir = _claim_run_dir(cfg)
            created.extend([run_dir] if not existed else [])
            created.extend([run_dir / LOCK_FILE] if not (run_dir / LOCK_FILE).exists() else [])
            held.enter_context(run_lock(run_dir))
            _check_unused(run_dir)  # again under the lock: a run started meanwhile may have used it
            return str(run_dir)

        trainer.run_dir = Path(distributed.on_main(claim))
        return _run_or_undo(trainer, created)


def _run_or_undo(trainer: Trainer, created: list[Path]) -> Path | None:
    """Run a training claimed in a new or empty folder. If it ends, by an error or an interrupt, before
    writing its first checkpoint (nothing to resume), remove what it created there (its files, the empty
    checkpoints/ and samples/, the .lock and folder the claim made), so that the same command can run again."""
    try:
        return trainer.run()
    except BaseException:
        if trainer.dist.main and not trainer.saved_any:
            _undo_run_folder(trainer.run_dir, trainer.written, created)
        raise


def _undo_run_folder(run_dir: Path, written: set[Path], created: list[Path]) -> None:
    for path in sorted(written):
        with contextlib.suppress(OSError):
            path.unlink()
    for sub in ("checkpoints", "samples"):  # empty once this training's files are gone; else left as they are
        with contextlib.suppress(OSError):
            (run_dir / sub).rmdir()
    for path in created[::-1]:  # the .lock (still held: unlinked first), then the folder if now empty
        with contextlib.suppress(OSError):
            path.unlink() if path.name == LOCK_FILE else path.rmdir()
    debug(f"{run_dir}: the run ended before its first checkpoint; removed the files it had written")


def resume(target: str, overrides: dict) -> Path:
    """Continue a run from RUNDIR (its checkpoints/last.pt) or a checkpoint file.

    `overrides` may set steps or epochs (the new total), lr_horizon (a new end for a linear schedule), device,
    sample_every, ckpt_every, keep, log_every, compile, amp, cuda_graphs, sync_bn (how the run executes; the
    number of processes may change too), and out: a new or empty folder to continue the run in.

    Without `out` the run continues in its own run folder: the one holding the checkpoint (RUN/checkpoints/),
    else the run's saved `out`, and only where that folder's config.toml is the one gantools wrote for this
    run; any other folder is refused (gantools writes nothing into a folder it did not make for the run).
    """
    distributed.join()  # with several processes rank 0 checks and locks the folder, all ranks read the checkpoint
    path = Path(target)
    if path.is_dir():
        distributed.on_main(lambda: _check_not_locked(path))  # a training that has not written a checkpoint yet is named too
        if _folder_run_id(path) is not None and not _has_checkpoint(path):
            raise GantoolsError(f"--resume {target}: the run ended before its first checkpoint (killed: nothing to "
                                "resume); start it afresh with another --out, or remove the folder yourself")
        path = path / "checkpoints" / "last.pt"
    _check_resume_overrides(overrides)
    new_dir = Path(overrides["out"]) if overrides.get("out") else None
    if new_dir is not None:  # before the checkpoint is read
        def check_out() -> None:
            _check_not_locked(new_dir)
            _check_unused(new_dir)

        distributed.on_main(check_out)
    own_dir = _own_run_dir(path) if path.is_file() else None
    in_run = new_dir is None and own_dir is not None

    def refuse(run_dir: Path) -> None:
        _refuse_run_dir(target, run_dir)

    with contextlib.ExitStack() as held:
        if in_run:  # locked before reading: a training still running in the folder is refused
            distributed.on_main(lambda: held.enter_context(run_lock(own_dir)))
        ck = ckpt_io.load_checkpoint(path)
        cfg = _resume_config(path, ck, overrides)
        created: list[Path] = []
        if new_dir is not None:
            run_dir = new_dir

            def claim() -> None:
                created.extend([run_dir] if not run_dir.exists() else [])
                run_dir.mkdir(parents=True, exist_ok=True)
                created.extend([run_dir / LOCK_FILE] if not (run_dir / LOCK_FILE).exists() else [])
                held.enter_context(run_lock(run_dir))
                _check_unused(run_dir)  # again under the lock

            distributed.on_main(claim)
        elif in_run:
            run_dir = own_dir
            if not distributed.on_main(lambda: _is_run_folder_of(run_dir, ck)):
                distributed.on_main(lambda: refuse(run_dir))
        else:  # a checkpoint outside a run folder: its run's folder (saved `out`, or the checkpoint's folder)
            run_dir = Path(cfg.out or path.parent)

            def claim() -> None:
                if not run_dir.is_dir() or _folder_run_id(run_dir) is None:  # nothing created in a foreign folder
                    refuse(run_dir)
                held.enter_context(run_lock(run_dir))
                if not _is_run_folder_of(run_dir, ck):
                    refuse(run_dir)

            distributed.on_main(claim)
        try:
            trainer = Trainer(cfg, resume=ck, run_dir=run_dir, source=str(path))
        except BaseException:
            if new_dir is not None and distributed.current().main:
                _undo_run_folder(run_dir, set(), created)
            raise
        return _run_or_undo(trainer, created) if new_dir is not None else trainer.run()


def _refuse_run_dir(target: str, run_dir: Path) -> None:
    what = "does not exist" if not run_dir.exists() else "holds no config.toml that gantools wrote for this run"
    raise GantoolsError(f"--resume {target}: the run folder {run_dir} {what}; gantools writes only into "
                        "its own run folder: continue the run in a new folder with --out NEWFOLDER")


def _check_resume_overrides(overrides: dict) -> None:
    allowed = {"steps", "epochs", "lr_horizon", "device", "sample_every", "ckpt_every", "keep", "log_every", "compile",
               "amp", "cuda_graphs", "sync_bn", "out"}
    bad = sorted(k for k, v in overrides.items() if v is not None and k not in allowed)
    if bad:
        raise UsageError(f"--resume: {', '.join('--' + b.replace('_', '-') for b in bad)} cannot change on resume")
    if overrides.get("steps") is not None and overrides.get("epochs") is not None:
        raise UsageError("--resume: give the new total as --steps or as --epochs, not both")


def _resume_config(path: Path, ck: dict, overrides: dict) -> TrainConfig:
    """The checkpoint's training config with the allowed overrides applied."""
    config = dict(ck.get("config") or {})
    if not config:
        raise GantoolsError(f"{path}: checkpoint has no training config to resume from")
    config.setdefault("updates", "alternating")  # checkpoints from before the option trained this way
    config.setdefault("class_balanced", False)  # before the option batches kept the data's proportions
    config.setdefault("lr_horizon", config.get("steps"))  # before the option, linear schedules ended at `steps`
    config.setdefault("ema_rampup", 0.0)  # before the option the EMA had no warm-up
    config.setdefault("augment", "none")  # before the option D's inputs were not augmented
    config.update({k: v for k, v in overrides.items() if v is not None})
    if overrides.get("epochs") is not None:  # the new total in epochs: _resolve converts it to steps
        config["steps"] = None
    else:  # the run's total is its steps (a run started with --epochs has both in older checkpoints)
        config["epochs"] = None
    return TrainConfig(**{k: v for k, v in config.items() if k in TrainConfig.fields()})
