"""Start-up time of gantools against `python -c "import torch"`, in one run.

    python bench/startup.py [--repeat 15]

Times, as fresh processes: `gantools --help`, `gantools train --help`, a completion request (what
the completion scripts run to list model names: `_GANTOOLS_COMPLETE_NAMES=models gantools`), the
bare interpreter (`python -c pass`, the floor) and `python -c "import torch"` (the reference).
The runs are interleaved round-robin so that load from other processes spreads over all rows;
prints a markdown table of median and best wall time and the ratio of medians to the reference.
Target: `gantools --help` under 0.3 s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path


def _gantools() -> str:
    """The console script of this interpreter (not a pyenv/asdf shim, which adds its own start-up)."""
    here = Path(sys.executable).parent / "gantools"
    if here.is_file():
        return str(here)
    found = shutil.which("gantools")
    if not found:
        sys.exit("startup: no gantools executable (pip install -e .)")
    return found


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=15, help="runs of each command (default 15)")
    args = ap.parse_args()

    exe = _gantools()
    py = sys.executable
    rows = [
        ('python -c "import torch"  (reference)', [py, "-c", "import torch"], {}),
        ("python -c pass  (interpreter floor)", [py, "-c", "pass"], {}),
        ("gantools --help", [exe, "--help"], {}),
        ("gantools train --help", [exe, "train", "--help"], {}),
        ("completion request (model names)", [exe], {"_GANTOOLS_COMPLETE_NAMES": "models"}),
    ]
    times: dict[str, list[float]] = {name: [] for name, _, _ in rows}
    load_before = _load()
    for _ in range(args.repeat):
        for name, cmd, env in rows:
            t0 = time.perf_counter()
            r = subprocess.run(cmd, env=dict(os.environ, **env), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            dt = time.perf_counter() - t0
            if r.returncode != 0:
                sys.exit(f"startup: {name} exited {r.returncode}: {r.stderr.decode()[-500:]}")
            times[name].append(dt)
    load_after = _load()

    ref = statistics.median(times[rows[0][0]])
    print(f"gantools executable: {exe}")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {args.repeat} runs each, interleaved")
    print(f"load average (1, 5, 15 min): before {load_before}, after {load_after}")
    print()
    print("| command | median s | best s | median / import torch |")
    print("|---|---:|---:|---:|")
    for name, _, _ in rows:
        t = times[name]
        print(f"| {name} | {statistics.median(t):.3f} | {min(t):.3f} | {statistics.median(t) / ref:.3f} |")
    help_median = statistics.median(times["gantools --help"])
    print()
    print(f"gantools --help: median {help_median:.3f} s (target < 0.3 s: {'met' if help_median < 0.3 else 'NOT met'})")


if __name__ == "__main__":
    main()
