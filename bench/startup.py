"""Start-up time of gantools, and of a TAB press, against `python -c "import torch"`, in one run.

    python bench/startup.py [--repeat 15] [--gantools PATH]

Times, as fresh processes: `gantools --help`, `gantools train --help`, the bare interpreter
(`python -c pass`, the floor), `python -c "import torch"` (the reference), and TAB presses:

- "entry point": the call a completion script makes, `_GANTOOLS_COMPLETE=complete_bash
  COMP_WORDS=... COMP_CWORD=... gantools` (Click's protocol as typer names it);
- "bash TAB": a whole bash that sources completions/gantools.bash and calls the function that
  script registered for `gantools` (`complete -p gantools`), as a TAB press would; `bash -c :`
  is its floor. Works with whatever completion script is checked in, so old and new compare.

Each TAB case checks that the expected word is offered, so a broken completion cannot look fast.
The completion scripts call `gantools` by name: the folder of the timed executable comes first on
PATH, so that they call the same one.
The runs are interleaved round-robin so that load from other processes spreads over all rows;
prints a markdown table of median and best (minimum) wall time, and the best CPU time (user + system
of the process and its children), which other processes' load disturbs less. On a shared machine
compare the minima. Targets: `gantools --help` under 0.3 s, a TAB press under 0.2 s.
"""

from __future__ import annotations

import argparse
import os
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# (label, words of the command line up to the cursor, the last one being completed; a word offered)
TAB_CASES = [
    ("`train <TAB>` (model names)", ["gantools", "train", ""], "dcgan"),
    ("`train --compile <TAB>` (choices)", ["gantools", "train", "--compile", ""], "max-autotune"),
    ("`sample <TAB>` (*.pt files)", ["gantools", "sample", ""], "a.pt"),
    ("`evaluate x --metrics fid,<TAB>` (metric list)", ["gantools", "evaluate", "x", "--metrics", "fid,"], "fid,kid"),
]


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


def _bash_tab(words: list[str], expect: str) -> list[str]:
    """bash: source the checked-in script, set COMP_* as bash does for a TAB, call its function."""
    line = " ".join(words)
    script = "\n".join([
        f"source {shlex.quote(str(ROOT / 'completions' / 'gantools.bash'))}",
        "f=$(complete -p gantools); f=${f##*-F }; f=${f%% *}",
        f"COMP_WORDS=({' '.join(shlex.quote(w) for w in words)}); COMP_CWORD={len(words) - 1}",
        f"COMP_LINE={shlex.quote(line)}; COMP_POINT=${{#COMP_LINE}}",
        f"$f gantools {shlex.quote(words[-1])} {shlex.quote(words[-2])}",
        f'printf "%s\\n" "${{COMPREPLY[@]}}" | grep -qx -- {shlex.quote(expect)}',
    ])
    return ["bash", "--norc", "--noprofile", "-c", script]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=15, help="runs of each command (default 15)")
    ap.add_argument("--gantools", help="the gantools executable to time [default: this interpreter's]")
    args = ap.parse_args()

    exe = args.gantools or _gantools()
    path = f"{Path(exe).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    py = sys.executable
    work = Path(tempfile.mkdtemp(prefix="gantools-startup-"))
    for f in ("a.pt", "b.txt"):
        (work / f).write_text("x")
    # (label, argv, extra environment, a word stdout must hold as a line, or None)
    rows: list[tuple[str, list[str], dict, str | None]] = [
        ('python -c "import torch"  (reference)', [py, "-c", "import torch"], {}, None),
        ("python -c pass  (interpreter floor)", [py, "-c", "pass"], {}, None),
        ("gantools --help", [exe, "--help"], {}, None),
        ("gantools train --help", [exe, "train", "--help"], {}, None),
        ("bash -c :  (bash floor)", ["bash", "--norc", "--noprofile", "-c", ":"], {}, None),
    ]
    for label, words, expect in TAB_CASES:
        env = {"_GANTOOLS_COMPLETE": "complete_bash", "COMP_WORDS": "\n".join(words),
               "COMP_CWORD": str(len(words) - 1)}
        rows.append((f"entry point: {label}", [exe], env, expect))
    for label, words, expect in TAB_CASES:
        rows.append((f"bash TAB: {label}", _bash_tab(words, expect), {}, None))

    times: dict[str, list[float]] = {label: [] for label, *_ in rows}
    cpu: dict[str, list[float]] = {label: [] for label, *_ in rows}
    failed: dict[str, str] = {}
    load_before = _load()
    for _ in range(args.repeat):
        for label, cmd, env, expect in rows:
            if label in failed:
                continue
            u0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            r = subprocess.run(cmd, env=dict(os.environ, PATH=path, **env), cwd=work, capture_output=True, text=True)
            dt = time.perf_counter() - t0
            u1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            if r.returncode != 0 or (expect is not None and expect not in r.stdout.splitlines()):
                failed[label] = f"exit {r.returncode}: {(r.stderr or r.stdout).strip()[-200:]!r}"
                continue
            times[label].append(dt)
            cpu[label].append(u1.ru_utime + u1.ru_stime - u0.ru_utime - u0.ru_stime)
    load_after = _load()
    shutil.rmtree(work)

    ref = min(times[rows[0][0]])
    print(f"gantools executable: {exe}")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {args.repeat} runs each, interleaved")
    print(f"load average (1, 5, 15 min): before {load_before}, after {load_after}")
    print()
    print("| command | median s | best s | best / import torch | best CPU s |")
    print("|---|---:|---:|---:|---:|")
    for label, *_ in rows:
        if label in failed:
            print(f"| {label} | failed | {failed[label]} | | |")
            continue
        t = times[label]
        print(f"| {label} | {statistics.median(t):.3f} | {min(t):.3f} | {min(t) / ref:.3f} | {min(cpu[label]):.3f} |")
    print()
    help_best = min(times["gantools --help"])
    print(f"gantools --help: best {help_best:.3f} s (target < 0.3 s: {'met' if help_best < 0.3 else 'NOT met'})")
    tabs = [label for label, *_ in rows if label.startswith(("entry point", "bash TAB")) and label not in failed]
    if tabs:
        worst = max(min(times[label]) for label in tabs)
        print(f"slowest TAB press, best of its runs: {worst:.3f} s (target < 0.2 s: {'met' if worst < 0.2 else 'NOT met'})")


if __name__ == "__main__":
    main()
