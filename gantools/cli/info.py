"""`gantools info CKPT`: what a checkpoint holds, for people or (--json) for scripts."""

from __future__ import annotations

from pathlib import Path

import typer

from gantools.cli import app
from gantools.cli.common import QuietOpt, VerboseOpt, handle_errors, print_json
from gantools.cli.names import complete_checkpoints


@app.command(help="Describe a gantools checkpoint: model, networks (parameter counts), optimisers, prior, phase and step, hyper-parameters, data, config, last metrics.")
@handle_errors
def info(
    ckpt: Path = typer.Argument(..., help="A gantools checkpoint (.pt).", show_default=False,
                                autocompletion=complete_checkpoints),
    json_: bool = typer.Option(False, "--json", help="One JSON object on stdout, for scripts."),
    quiet: bool = QuietOpt,
    verbose: bool = VerboseOpt,
) -> None:
    from gantools.checkpoint import load_checkpoint, summary

    s = summary(load_checkpoint(ckpt))
    s["path"] = str(ckpt)
    if json_:
        print_json(s)
        return
    _print_human(s)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, (list, tuple)):
        return ", ".join(_fmt(x) for x in v) if len(v) <= 12 else ", ".join(_fmt(x) for x in v[:12]) + f", ... ({len(v)})"
    if isinstance(v, dict):
        return ", ".join(f"{k}={_fmt(x)}" for k, x in v.items())
    return str(v)


def _print_human(s: dict) -> None:
    rows = [
        ("checkpoint", s["path"]),
        ("format", f"{s['format']} v{s['version']} (gantools {s.get('gantools_version')}, {s.get('created')})"),
        ("model", s["model"]),
        ("step", s["step"]),
        ("phase", f"{s['phase']['name']} (phase {s['phase']['index'] + 1}), step {s['phase']['step']} of it"),
        ("networks", ", ".join(f"{n}{' (generator)' if n == s['generator'] else ''} {s['parameters'].get(n, 0):,} "
                               "parameters" for n in s["networks"])),
        ("optimizers", ", ".join(f"{k} over {'+'.join(v)}" for k, v in s["optimizers"].items()) or "none"),
        ("prior", ", ".join(f"{k} {'x'.join(map(str, v)) or 'scalar'}" for k, v in s["prior"].items())
         or "standard normal (no tensors)"),
        ("state", _fmt(s["state"])),
    ]
    rows += [(f"hparams.{k}", _fmt(v)) for k, v in s["hparams"].items()]
    rows += [(f"data.{k}", _fmt(v)) for k, v in s["data"].items() if not isinstance(v, (list, dict)) or len(v) <= 64]
    rows += [(f"config.{k}", _fmt(v)) for k, v in s["config"].items() if v is not None]
    if s["metrics_last"]:
        rows.append((f"metrics (last of {s['metrics_count']})", _fmt(s["metrics_last"])))
    width = max(len(r[0]) for r in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
