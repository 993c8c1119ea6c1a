"""Talk on stderr: progress, information and warnings, with the -q/-v verbosity.

Used by the API and the CLI alike; data never goes through here (it goes to stdout).
"""

from __future__ import annotations

import os
import sys

_state: dict = {"verbosity": 0}  # -1 quiet, 0 normal, 1 verbose


def set_verbosity(quiet: bool = False, verbose: bool = False) -> None:
    _state["verbosity"] = -1 if quiet else (1 if verbose else 0)


def verbosity() -> int:
    return _state["verbosity"]


def color_enabled() -> bool:
    """Colour and live bars only on a terminal stderr and without NO_COLOR."""
    return sys.stderr.isatty() and not os.environ.get("NO_COLOR")


def console():
    """A rich Console on stderr (talk goes to stderr, data to stdout)."""
    if "console" not in _state:
        from rich.console import Console

        _state["console"] = Console(
            stderr=True, no_color=not color_enabled(), highlight=False, soft_wrap=True
        )
    return _state["console"]


def info(msg: str) -> None:
    """Progress talk on stderr; silent with --quiet."""
    if verbosity() >= 0:
        print(msg, file=sys.stderr, flush=True)


def debug(msg: str) -> None:
    """Detail shown only with --verbose."""
    if verbosity() > 0:
        print(msg, file=sys.stderr, flush=True)


def warn(msg: str) -> None:
    """A warning on stderr; shown even with --quiet."""
    print(f"gantools: warning: {msg}", file=sys.stderr, flush=True)
