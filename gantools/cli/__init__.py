"""The `gantools` command line: a thin Typer layer over the gantools.* modules.

Each subcommand lives in its own module here and registers on `app`. Nothing
at import time may pull in torch: `gantools --help` must stay fast.
"""

from __future__ import annotations

import importlib

import typer

from gantools import __version__

app = typer.Typer(
    name="gantools",
    help="Single-purpose GAN utilities: train, sample, interpolate, evaluate, impute, balance.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        print(f"gantools {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Single-purpose GAN utilities: train, sample, interpolate, evaluate, impute, balance."""


# One module per subcommand; each decorates its function with @app.command().
COMMAND_MODULES: list[str] = []
for _name in COMMAND_MODULES:
    importlib.import_module(f"gantools.cli.{_name}")


def main() -> None:
    app()
