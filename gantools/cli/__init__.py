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
    # No --install-completion (it edits ~/.bashrc): completions/ holds the scripts, and main() answers
    # their requests (gantools.cli.completion).
    add_completion=False,
    # Plain click help: rich's help formatter alone costs ~0.3 s of imports (bench/startup.py).
    rich_markup_mode=None,
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
COMMAND_MODULES: list[str] = ["train", "sample", "info", "models", "interpolate", "evaluate", "impute", "balance"]
for _name in COMMAND_MODULES:
    importlib.import_module(f"gantools.cli.{_name}")


def _usage_message(msg: str) -> str:
    """Click's message, but a value outside an option's choices in gantools' words, as its other
    checks say it: `--updates sometimes: expected alternating or simultaneous`."""
    import re

    m = re.fullmatch(r"Invalid value for '(-[^']*)': (?:Value error, )?'(.*)' is not one of ('.*')\.", msg)
    if not m:
        return msg
    choices = re.findall(r"'([^']*)'", m.group(3))
    return f"{m.group(1)} {m.group(2)}: expected {', '.join(choices[:-1])} or {choices[-1]}"


def main() -> None:
    """Entry point: run the app; bad usage is one line on stderr and exit 2 (not click's box)."""
    import os
    import sys

    if os.environ.get("_GANTOOLS_COMPLETE"):  # a completion script asks (Click's protocol); app() answers
        from gantools.cli.completion import register

        register()
    try:  # typer >= 0.26 vendors click as typer._click
        from typer._click import exceptions as cx
    except ImportError:
        from click import exceptions as cx
    from gantools.cli import common

    common.INTERRUPT_TOLD.clear()  # one invocation's state (tests run many in one process)

    try:
        code = app(prog_name="gantools", standalone_mode=False)  # also under `python -m gantools`
    except cx.UsageError as e:
        where = e.ctx.command_path if e.ctx is not None else "gantools"
        if type(e).__name__ == "NoArgsIsHelpError" or not e.format_message():  # bare `gantools`
            if e.format_message():  # the help itself (rich help prints it and leaves this empty)
                print(e.format_message(), file=sys.stderr)
            sys.exit(2)
        print(f"{where}: error: {_usage_message(e.format_message())} (see '{where} --help')", file=sys.stderr)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):  # typer.Abort is click's Abort in every typer version; Ctrl-C
        # outside a command (handle_errors) and outside click's own catch: while typer builds the commands
        code = 130
    except BrokenPipeError:  # e.g. `gantools train --help | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(141)
    except cx.ClickException as e:
        print(f"gantools: error: {e.format_message()}", file=sys.stderr)
        sys.exit(e.exit_code)
    code = code if isinstance(code, int) else 0
    if code == 130:  # Ctrl-C, wherever it came: one line (typer's own catch says nothing)
        common.tell_interrupted()
    if "gantools.distributed" in sys.modules:  # under torchrun (never imported by --help or completion)
        sys.modules["gantools.distributed"].exit_after_leaving(code)
    sys.exit(code)
