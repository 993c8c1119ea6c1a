"""What every command shares: the stderr console, verbosity, checking numeric options against
their ranges (gantools.options), and turning errors into exit codes.

Imports nothing heavy: commands import torch inside their bodies.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
import typing
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


INTERRUPT_TOLD: list[bool] = []  # this invocation printed its line about Ctrl-C (cli.main clears it)


def fail(msg: str, code: int = 1, where: str = "gantools") -> None:
    print(f"{where}: error: {msg}", file=sys.stderr, flush=True)
    if code == 130:  # Interrupted: its own line (e.g. train's checkpoint) tells
        INTERRUPT_TOLD.append(True)
    raise typer.Exit(code)


def tell_interrupted() -> None:
    """The line of a command ended by Ctrl-C, unless this invocation printed one already: typer turns Ctrl-C
    outside a command's body into exit 130 without a word."""
    if not INTERRUPT_TOLD:
        print("gantools: interrupted", file=sys.stderr, flush=True)
        INTERRUPT_TOLD.append(True)


def numeric_type(param: Any) -> type | None:
    """int or float when a command-line parameter takes numbers (one, or a list of them), else None."""
    descriptor = getattr(param, "type_descriptor", None)  # typer >= 0.26
    if descriptor is None:  # older typer: a click type named integer, float, integer range, float range
        name = getattr(getattr(param, "type", None), "name", "")
        return int if name.startswith("integer") else float if name.startswith("float") else None
    kind = descriptor.annotation
    inner = [a for a in typing.get_args(kind) if a is not type(None) and a is not Ellipsis]
    if inner and typing.get_origin(kind) is not None:  # Optional[int], list[int], tuple[float, ...]
        kind = inner[0]
    return kind if kind in (int, float) else None


def check_ranges(command: Any, values: dict) -> None:
    """Refuse (UsageError) a value of a numeric parameter of the click `command` outside its range in
    gantools.options; None means unset. A numeric parameter the table lacks is a programming error."""
    from gantools.options import range_for

    for param in command.params:
        if numeric_type(param) is None:
            continue
        entry = range_for(command.name, param.name)
        if entry is None:
            raise LookupError(f"gantools {command.name} {param.opts[0]}: no range in gantools.options")
        value = values.get(param.name)
        many = isinstance(value, (list, tuple)) and entry.size is None  # a repeatable option
        for v in (value if many else [value]):
            if v is not None:
                entry.check(param.opts[0], v)


def _current_context() -> Any:
    try:  # typer >= 0.26 vendors click as typer._click
        from typer._click.globals import get_current_context
    except ImportError:
        from click import get_current_context
    return get_current_context(silent=True)


QuietOpt = typer.Option(False, "--quiet", "-q", help="Print nothing but results and errors.")
VerboseOpt = typer.Option(False, "--verbose", "-v", help="Print more detail on stderr.")


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator for command bodies: a GantoolsError becomes one line on stderr and its exit code
    (bad usage, exit 2, names the command: `gantools train: error: ...`).

    First it refuses numeric options out of their ranges (check_ranges), before any work. It also
    applies -q/-v (keyword arguments `quiet` and `verbose`), sets malloc to reuse freed memory
    (gantools.allocator: about 4% of a CPU training step) and turns Ctrl-C into exit 130.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = _current_context()
        restore_sigterm = _sigterm_as_ctrl_c()
        try:
            if ctx is not None:
                check_ranges(ctx.command, kwargs)
            from gantools.allocator import reuse_freed_memory  # ctypes: imported only when a command runs

            set_verbosity(kwargs.get("quiet", False), kwargs.get("verbose", False))
            reuse_freed_memory()
            result = fn(*args, **kwargs)
            from gantools import distributed

            distributed.leave()  # under torchrun: all ranks end together (no-op otherwise)
            return result
        except GantoolsError as e:
            fail(str(e), e.exit_code, ctx.command_path if ctx is not None and e.exit_code == 2 else "gantools")
        except KeyboardInterrupt:
            tell_interrupted()
            raise typer.Exit(130) from None
        except BrokenPipeError:
            # The reader of our stdout went away (e.g. `| head`): not an error of ours.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            raise typer.Exit(141) from None
        except OSError as e:
            if e.filename is None:  # not about a file the user named: a bug, shown in full
                raise
            # The last resort for a file the user named that no check caught (e.g. a name too long).
            fail(f"{e.filename}: {e.strerror or e}")
        except Exception as e:
            if not _caused_by_ctrl_c(e):
                raise
            tell_interrupted()
            raise typer.Exit(130) from None
        finally:
            restore_sigterm()

    return wrapper


def _caused_by_ctrl_c(e: BaseException | None) -> bool:
    """Whether `e` is an error raised from a KeyboardInterrupt: Python 3.11 turns Ctrl-C during a class's
    creation (a dataclass in torch's import) into "RuntimeError: Error calling __set_name__ ..."."""
    for _ in range(8):  # a chain of causes, not a cycle
        if e is None or isinstance(e, KeyboardInterrupt):
            return e is not None
        e = e.__cause__
    return False


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _sigterm_as_ctrl_c() -> Callable[[], Any]:
    """Make SIGTERM (`kill`, a job scheduler, a container stopping) stop the command as Ctrl-C does: the same
    cleanup of temporary files, one line and exit 130 (train installs its own handler: it saves first).
    Returns a function that restores the earlier handler."""
    import threading

    if threading.current_thread() is not threading.main_thread():  # signals can be set only there
        return lambda: None
    old = signal.signal(signal.SIGTERM, _raise_interrupt)
    return lambda: signal.signal(signal.SIGTERM, old if old is not None else signal.SIG_DFL)


def stdout_console(**kwargs: Any) -> Any:
    """A rich Console on stdout (tables are data) whose reader going away (`gantools models | head -1`) ends
    the command as it ends every other: handle_errors' BrokenPipeError, exit 141 and silent; rich's own
    handling exits 1."""
    from rich.console import Console

    class StdoutConsole(Console):
        def on_broken_pipe(self) -> None:
            self.quiet = True
            raise BrokenPipeError

    return StdoutConsole(file=sys.stdout, **kwargs)


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
