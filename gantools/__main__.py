"""`python -m gantools` and the `gantools` script: gantools.cli.main as a process. Ctrl-C ends it with one
line on stderr and exit 130, also while the commands are still being imported, and also where CPython would
end the process by SIGINT instead (gantools.errors.exit_now)."""

import sys


def main() -> None:
    """Import the command line, run it, exit with its code."""
    try:
        from gantools.cli import main as run
    except KeyboardInterrupt:
        print("gantools: interrupted", file=sys.stderr)
        _exit_interrupted()
    try:
        run()
    except SystemExit as e:
        distributed = sys.modules.get("gantools.distributed")
        if e.code == 130 and (distributed is None or distributed.current().world == 1):
            _exit_interrupted()  # not under torchrun, whose launcher sees its processes end as they end
        raise


def _exit_interrupted() -> None:
    from gantools.errors import exit_now

    exit_now(130)


if __name__ == "__main__":
    main()
