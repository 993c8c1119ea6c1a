"""What every command shares: the stderr console, verbosity, and turning errors into exit codes.

Imports nothing heavy: commands import torch inside their bodies.
"""

from __future__ import annotations

import functools
import os
import sys
from typing import Any, Callable

import typer

from gantools.errors import GantoolsError

from gantools.log import (  # noqa: F401  (re-exported for the command modules)
    color_enabled,
    console,
    debug,
    info,
    set_verbosity,
    verbosity,
    warn,
)


def _json_safe(obj: Any) -> Any:
    """NaN and infinities become None: strict JSON has no spelling for them."""
    if isinstance(obj, float):
        return obj if obj == obj and obj not in (float("inf"), float("-inf")) else None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def print_json(obj: Any) -> None:
    """Print `obj` on stdout as strict JSON (non-finite numbers as null; unknown types as strings)."""
    import json

    print(json.dumps(_json_safe(obj), indent=2, default=str, allow_nan=False))


def fail(msg: str, code: int = 1) -> None:
    print(f"gantools: error: {msg}", file=sys.stderr, flush=True)
    raise typer.Exit(code)


QuietOpt = typer.Option(False, "--quiet", "-q", help="Print nothing but results and errors.")
VerboseOpt = typer.Option(False, "--verbose", "-v", help="Print more detail on stderr.")


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator for command bodies: a GantoolsError becomes one line on stderr and its exit code.

    It also applies -q/-v (keyword arguments `quiet` and `verbose`), sets malloc to reuse freed
    memory (gantools.allocator: about 4% of a CPU training step) and turns Ctrl-C into exit 130.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from gantools.allocator import reuse_freed_memory  # ctypes: imported only when a command runs

        set_verbosity(kwargs.get("quiet", False), kwargs.get("verbose", False))
        reuse_freed_memory()
        try:
            return fn(*args, **kwargs)
        except GantoolsError as e:
            fail(str(e), e.exit_code)
        except KeyboardInterrupt:
            print("gantools: interrupted", file=sys.stderr, flush=True)
            raise typer.Exit(130) from None
        except BrokenPipeError:
            # The reader of our stdout went away (e.g. `| head`): not an error of ours.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            raise typer.Exit(141) from None

    return wrapper


def stdout_binary():
    """stdout as a binary stream, for the image stream and other data."""
    return sys.stdout.buffer


def require_output_or_pipe(out: str | None, what: str) -> str:
    """Resolve `-o`: given -> itself; none with stdout a pipe -> '-'; none on a terminal -> usage error."""
    from gantools.errors import UsageError

    if out:
        return out
    if sys.stdout.isatty():
        raise UsageError(f"stdout is a terminal: give -o OUT for the {what} (or pipe the stream)")
    return "-"
