"""`gantools train MODEL --data SRC`: train a registered model; prints the final checkpoint path."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

import typer

from gantools.cli import app
from gantools.cli.common import QuietOpt, VerboseOpt, handle_errors
from gantools.cli.names import (complete_checkpoints, complete_data, complete_devices, complete_losses,
                                complete_models, complete_toml)
from gantools.options import CHOICES

# The words three options take: as their types, they are both what TAB offers and what is accepted.
COMPILE_MODES, LR_SCHEDULES, UPDATE_SCHEMES = CHOICES["compile"], CHOICES["lr_schedule"], CHOICES["updates"]
AUGMENTS, EVAL_METRICS = CHOICES["augment"], CHOICES["eval_metric"]


@app.command(
    help="Train MODEL on --data; print the final checkpoint's path on stdout.\n\n"
    "Data: a folder (class subfolders give labels), .zip, .h5, .npz, .npy, *-ubyte[.gz], '-' (image "
    "stream) or toy:ring, toy:grid, toy:shapes. The run folder holds config.toml, checkpoints/, "
    "samples/ and metrics.jsonl.",
    epilog="Example: ckpt=$(gantools train dcgan --data toy:shapes --steps 300)",
)
@handle_errors
def train(
    model: Optional[str] = typer.Argument(None, help="Registered model name (see `gantools models`).",
                                          autocompletion=complete_models, show_default=False),
    data: Optional[str] = typer.Option(None, "--data", "-d", help="Training data source.",
                                       autocompletion=complete_data),
    steps: Optional[int] = typer.Option(None, help="Total optimisation steps [default: the model's]."),
    epochs: Optional[float] = typer.Option(None, help="Train for this many passes over the data instead of --steps."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", "-b", help="Batch size [default: the model's]."),
    lr_g: Optional[float] = typer.Option(None, "--lr-g", help="Generator learning rate (Adam) [default: the model's; see --dry-run]."),
    lr_d: Optional[float] = typer.Option(None, "--lr-d", help="Discriminator learning rate (Adam) [default: the model's; see --dry-run]."),
    betas: Optional[str] = typer.Option(None, help="Adam betas as B1,B2 [default: the model's (for its loss); see --dry-run]."),
    n_critic: Optional[int] = typer.Option(None, "--n-critic", help="D steps per G step [default: the model's for its loss, else 5 for wgan-gp and ns-gp, else 1; see --dry-run]."),
    loss: Optional[str] = typer.Option(None, help="Loss: ns, ns-gp, minimax, lsgan, hinge, wgan-gp [default: the model's].",
                                       autocompletion=complete_losses),
    z_dim: Optional[int] = typer.Option(None, "--z-dim", help="Latent dimension [default: the model's]."),
    ema: Optional[bool] = typer.Option(None, "--ema/--no-ema", help="Keep an exponential moving average of G [default: off]."),
    ema_decay: Optional[float] = typer.Option(None, "--ema-decay", help="EMA decay per step once warmed up: beta_t = min(DECAY, 0.5 ** (1 / (RAMPUP * t))) at step t [default: 0.999]."),
    ema_rampup: Optional[float] = typer.Option(None, "--ema-rampup", help="EMA warm-up: its half-life is RAMPUP x the steps so far until DECAY's (ln 0.5 / ln DECAY steps); 0 for no warm-up [default: 0.01]."),
    seed: Optional[int] = typer.Option(None, help="Random seed [default: 0]."),
    device: Optional[str] = typer.Option(None, help="auto, cpu, cuda, cuda:N or mps [default: auto].",
                                         autocompletion=complete_devices),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run folder [default: runs/MODEL-DATA-NNN]. With --resume: a new or empty folder to continue the run in (needed where the checkpoint is not in its run's own folder)."),
    config: Optional[Path] = typer.Option(None, "--config", help="TOML file with the same keys as these options; the command line wins.",
                                          autocompletion=complete_toml),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue a run: RUNDIR or a checkpoint (--steps or --epochs is the new total).",
                                          autocompletion=complete_checkpoints),
    sample_every: Optional[int] = typer.Option(None, "--sample-every", help="Write a sample grid every N steps, 0 for never [default: 500]."),
    ckpt_every: Optional[int] = typer.Option(None, "--ckpt-every", help="Write a checkpoint every N steps [default: 1000]."),
    keep: Optional[int] = typer.Option(None, "--keep", help="Keep the N newest step checkpoints [default: 3]."),
    log_every: Optional[int] = typer.Option(None, "--log-every", help="Log losses to metrics.jsonl every N steps [default: 50]."),
    resolution: Optional[int] = typer.Option(None, help="Resize images to this size [default: from the data]."),
    channels: Optional[int] = typer.Option(None, help="1 (grey) or 3 (RGB) [default: from the data]."),
    compile: Optional[Literal[COMPILE_MODES]] = typer.Option(None, "--compile", help="torch.compile G and D in this mode (reduce-overhead: with CUDA graphs) [default: off]."),
    cuda_graphs: Optional[bool] = typer.Option(None, "--cuda-graphs/--no-cuda-graphs", help="Replay each step as one CUDA graph (in-memory data, constant LR, no GP/R1, one process) [default: on where possible]."),
    nproc: Optional[int] = typer.Option(None, "--nproc", help="Train with N processes on this machine (one per GPU; gloo on the CPU), started through torch.distributed.run; --batch-size is the global batch. Under torchrun, leave it out [default: 1]."),
    sync_bn: Optional[bool] = typer.Option(None, "--sync-bn/--no-sync-bn", help="With several processes, batch norm over the global batch (SyncBatchNorm; CUDA only) instead of each process's rows [default: off]."),
    amp: Optional[bool] = typer.Option(None, "--amp/--no-amp", help="bf16 autocast [default: on for CUDA, off for CPU]."),
    r1: Optional[float] = typer.Option(None, "--r1", help="R1 penalty weight gamma on real data (Mescheder et al. 2018) [default: the model's, else 0 (off)]."),
    lr_schedule: Optional[Literal[LR_SCHEDULES]] = typer.Option(None, "--lr-schedule", help="constant, or linear (decay to 0 at --lr-horizon) [default: the model's, else constant]."),
    lr_horizon: Optional[int] = typer.Option(None, "--lr-horizon", help="Step where a linear schedule reaches 0; fixed when the run starts and kept on --resume, so a resumed run decays as one run would. A run may not go past it with a linear schedule (its rate would be 0): resume with a later --lr-horizon to decay over the longer run (the rate then follows the new horizon from the resumed step on) [default: --steps]."),
    updates: Optional[Literal[UPDATE_SCHEMES]] = typer.Option(None, "--updates", help="alternating (G's gradient through the updated D) or simultaneous (G and D from one D pass, less work) [default: the model's, else alternating]."),
    class_balanced: Optional[bool] = typer.Option(None, "--class-balanced/--no-class-balanced", help="Draw real batches with every class equally often (a rare class's images repeat within an epoch) instead of in the data's proportions; needs labels [default: the model's, else off]."),
    augment: Optional[Literal[AUGMENTS]] = typer.Option(None, "--augment", help="Augment D's inputs, real and fake alike: diffaug (DiffAugment: colour, translation, cutout), ada (adaptive: flips, translation, colour with a probability steered by D's overfitting) or none [default: the model's (bagan, bagan-gp: none), else diffaug for image sets of at most 1,000 images, else none]."),
    ada_target: Optional[float] = typer.Option(None, "--ada-target", help="ADA: the mean sign of D's scores on real images that the augmentation probability steers to [default: 0.6]."),
    ada_kimg: Optional[float] = typer.Option(None, "--ada-kimg", help="ADA: the probability can move from 0 to 1 in this many thousand real images [default: 100]."),
    eval_every: Optional[int] = typer.Option(None, "--eval-every", help="Score the sampling generator (the EMA's with --ema) every N steps against --eval-real, 0 for never; logged to metrics.jsonl, the best kept as checkpoints/best.pt [default: 0]."),
    eval_real: Optional[str] = typer.Option(None, "--eval-real", help="Real images (a data source) or a statistics file (evaluate --save-stats; FID only) for --eval-every.",
                                            autocompletion=complete_data),
    eval_metric: Optional[Literal[EVAL_METRICS]] = typer.Option(None, "--eval-metric", help="fid or kid for --eval-every [default: fid]."),
    eval_n: Optional[int] = typer.Option(None, "--eval-n", help="Images generated per evaluation [default: 5000]."),
    patience: Optional[int] = typer.Option(None, "--patience", help="Stop after K evaluations without a better score (the best stays in checkpoints/best.pt) [default: never]."),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="A model hyper-parameter as KEY=VALUE (repeatable; e.g. --set ngf=32): those `gantools train MODEL --dry-run` lists under [hparams]; wins over --config's [hparams]."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the resolved config and exit."),
    quiet: bool = QuietOpt,
    verbose: bool = VerboseOpt,
) -> None:
    from gantools import distributed
    from gantools.errors import UsageError

    launch = False
    if nproc is not None and not dry_run:
        if distributed.launched():
            if nproc != distributed.world_size():
                raise UsageError(f"--nproc {nproc}: this is one of {distributed.world_size()} processes started by "
                                 "torchrun; leave --nproc out under torchrun")
        else:  # nproc > 1: the same command again, in nproc processes, once it passes the checks below
            launch = nproc > 1

    def start_processes() -> None:
        import sys

        from gantools.cli.common import INTERRUPT_TOLD

        code = distributed.launch(nproc, _without_nproc(sys.argv[1:]))
        if code == 130:  # each process printed its line
            INTERRUPT_TOLD.append(True)
        raise typer.Exit(code)

    options = dict(model=model, data=data, steps=steps, epochs=epochs, batch_size=batch_size, lr_g=lr_g,
                   lr_d=lr_d, betas=_parse_betas(betas), n_critic=n_critic, loss=loss, z_dim=z_dim, ema=ema,
                   ema_decay=ema_decay, ema_rampup=ema_rampup, seed=seed, device=device, out=str(out) if out else None,
                   sample_every=sample_every, ckpt_every=ckpt_every, keep=keep, log_every=log_every, resolution=resolution,
                   channels=channels, compile=compile, amp=amp, lr_schedule=lr_schedule,
                   cuda_graphs=cuda_graphs, r1=r1, updates=updates, class_balanced=class_balanced, lr_horizon=lr_horizon, augment=augment,
                   ada_target=ada_target, ada_kimg=ada_kimg, eval_every=eval_every, eval_real=eval_real,
                   eval_metric=eval_metric, eval_n=eval_n, patience=patience, sync_bn=sync_bn)
    if resume is not None:
        from gantools.train import resume as resume_run

        if set_:
            raise UsageError("--set: hyper-parameters cannot change on resume")

        if dry_run:
            raise UsageError("--dry-run and --resume cannot be combined")
        given = {k: v for k, v in options.items() if v is not None and k not in ("model",)}
        if model is not None:
            given["model"] = model
        if launch:
            from gantools.train import check_launch

            check_launch(None, nproc, str(resume), given)
            start_processes()
        path = resume_run(str(resume), given)
        if path is not None:  # rank 0 (the others return None)
            print(path)
        return

    from gantools.options import check_values
    from gantools.train import TrainConfig, read_config_file

    merged = read_config_file(config) if config else {}
    check_values("train", merged, source=str(config))  # a bad number in the file is named by file and key
    merged.update({k: v for k, v in options.items() if v is not None})
    merged["hparams"] = {**merged.get("hparams", {}), **_parse_settings(set_ or [])}
    if not merged.get("model"):
        raise UsageError("missing MODEL (see `gantools models`)")
    if not merged.get("data"):
        raise UsageError("missing --data SRC (a folder, file, '-' or toy:ring, toy:grid, toy:shapes)")
    cfg = TrainConfig(**merged)
    if dry_run:
        _print_dry_run(cfg)
        return
    if launch:
        from gantools.train import check_launch

        check_launch(cfg, nproc)
        start_processes()
    from gantools.train import train as train_run

    path = train_run(cfg)
    if path is not None:  # rank 0 (the others return None)
        print(path)


def _without_nproc(argv: list[str]) -> list[str]:
    """ARGV less --nproc N (torchrun's own parser would take --nproc for its --nproc-per-node)."""
    out, skip = [], False
    for arg in argv:
        if not skip and arg != "--nproc" and not arg.startswith("--nproc="):
            out.append(arg)
        skip = arg == "--nproc" and not skip
    return out


def _parse_betas(text: Optional[str]):
    if text is None:
        return None
    from gantools.errors import UsageError

    try:
        b1, b2 = (float(v) for v in text.split(","))
    except ValueError:
        raise UsageError(f"--betas {text}: expected two numbers like 0.5,0.999") from None
    return [b1, b2]


def _parse_settings(items: list[str]) -> dict:
    """--set KEY=VALUE pairs -> {KEY: value}; VALUE is read as a TOML value (32, 0.5, true, [1, 2]),
    else kept as text (layer). The model's declared hyper-parameters are checked by the trainer."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    from gantools.errors import UsageError

    out = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key or not text:
            raise UsageError(f"--set {item}: expected KEY=VALUE, e.g. --set ngf=32")
        try:
            out[key] = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            out[key] = text
    return out


def _print_dry_run(cfg) -> None:
    """The resolved config (gantools.train._resolve, as a run resolves it) as TOML on stdout, with the
    model's hyper-parameters (registry defaults merged with [hparams] and --set)."""
    from gantools.registry import MODELS
    from gantools.train import _resolve, _toml_value, declared_hparams, default_run_dir

    spec = MODELS.get(cfg.model)
    cfg = _resolve(cfg, spec)  # without the data: steps stay unknown when given as --epochs
    from gantools.data.sources import check_source

    for source in (cfg.data, cfg.eval_real):  # that they exist (the data is not read)
        if source is not None:
            check_source(source)
    if cfg.out:  # the run's refusal of a used --out (reads only)
        from gantools.train import _check_not_locked, _check_unused

        _check_not_locked(Path(cfg.out))
        _check_unused(Path(cfg.out))
    recipe = spec.defaults_for(cfg.loss)  # the model's defaults under the run's loss
    cfg.hparams = {**{k: recipe[k] for k in declared_hparams(spec)}, **cfg.hparams}
    cfg.out = cfg.out or str(default_run_dir(cfg.model, cfg.data))
    for k, v in cfg.to_dict().items():
        if v is not None and k != "hparams":
            print(f"{k} = {_toml_value(v)}")
    if cfg.hparams:
        print("\n[hparams]")
        for k, v in cfg.hparams.items():
            print(f"{k} = {_toml_value(v)}")
