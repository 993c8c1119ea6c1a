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
