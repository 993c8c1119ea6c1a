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


class ProgressReporter:
    """A rich progress bar on a terminal stderr; plain lines otherwise; nothing with --quiet.

    `update(done, text)` is cheap to call every step: plain lines are printed at
    most every `plain_every` seconds.
    """

    def __init__(self, total: int, description: str, done: int = 0, plain_every: float = 10.0):
        import time

        self.total, self.description = total, description
        self.plain_every, self._last_plain = plain_every, time.monotonic()
        self._bar = None
        if verbosity() >= 0 and color_enabled():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[text]}"), TimeRemainingColumn(), console=console(), transient=False,
            )
            self._task = self._bar.add_task(description, total=total, completed=done, text="")
            self._bar.start()

    def update(self, done: int, text: str = "", force: bool = False) -> None:
        import time

        if self._bar is not None:
            self._bar.update(self._task, completed=done, text=text)
        elif verbosity() >= 0:
            now = time.monotonic()
            if force or now - self._last_plain >= self.plain_every or done >= self.total:
                self._last_plain = now
                print(f"{self.description} {done}/{self.total} {text}".rstrip(), file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
