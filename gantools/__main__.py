"""`python -m gantools` and the `gantools` script: gantools.cli.main, with Ctrl-C while the commands are
still being imported ending as it ends later: one line on stderr, exit 130."""

import sys


def main() -> None:
    """Import the command line, then run it."""
    try:
        from gantools.cli import main as run
    except KeyboardInterrupt:
        from gantools.errors import exit_now

        print("gantools: interrupted", file=sys.stderr)
        exit_now(130)
    run()


if __name__ == "__main__":
    main()
