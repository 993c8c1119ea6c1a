"""Errors a user can cause. The CLI prints them as one line and exits with `exit_code`."""


class GantoolsError(Exception):
    """A failure caused by the user's input (a bad file, an impossible request): exit 1."""

    exit_code = 1


class UsageError(GantoolsError):
    """A bad combination of options or arguments: exit 2."""

    exit_code = 2


class Interrupted(GantoolsError):
    """Ctrl-C or SIGTERM after the work was saved: exit 130."""

    exit_code = 130


def first_line(e: BaseException) -> str:
    """An exception's message cut to its first line (its type's name when it has none), for one-line errors."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def exit_now(code: int) -> None:
    """End the process with `code` at once: flush stdout and stderr, skip the interpreter's teardown.

    For Ctrl-C (130): CPython 3.11 ends a `python -m` process by SIGINT, whatever sys.exit says, once a
    KeyboardInterrupt has passed through code that exec() ran from a string, even if it was caught later
    (dataclasses and namedtuple build their methods so, and importing torch builds many): the parent then
    saw -2, not 130 (CI, tests/test_promises.py). The command's own cleanup has run by then."""
    import contextlib
    import os
    import sys

    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)
