"""Does augmenting D's inputs help on a small data set? `gantools train dcgan` on the 400 Olivetti faces
with --augment none, diffaug and ada at the same budget (issue 14), FID of each checkpoint's samples
against the 400 real faces (their statistics computed once).

Each run is the README's example, `gantools train dcgan --data FACES`, with the given --steps and
--augment (everything else the defaults); checkpoints every --every steps are scored with -n samples
from the raw G (the default run has no EMA). FID of a few hundred images is biased upward and noisy:
compare rows with each other, and see the seed spread (--seeds).

    python bench/augment.py [--steps 1500] [--every 500] [-n 1000] [--methods none,diffaug,ada]
                            [--seeds 0] [--set ngf=32 ...] [--data FACES] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

FACES = Path(os.environ.get("FACES", "/work/shared/datasets/faces/olivetti_faces_64x64.npz"))


def run(cmd: list[str]) -> str:
    print("$ " + " ".join(cmd), file=sys.stderr, flush=True)
    return subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout.strip()


def fid(ckpt: Path, stats: Path, n: int) -> float:
    """FID of n samples of the checkpoint (seed 0); kept beside it as CKPT.fid-N.json, so a rerun
    (e.g. after the training runs of several invocations finished) scores only what is new."""
    cached = ckpt.with_name(f"{ckpt.stem}.fid-{n}.json")
    if not cached.exists():
        cached.write_text(run(["gantools", "evaluate", str(ckpt), "--real", str(stats), "-n", str(n), "--json", "-q"]))
    return json.loads(cached.read_text())["metrics"]["fid"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(FACES))
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--every", type=int, default=500)
    ap.add_argument("-n", type=int, default=1000, help="samples per FID")
    ap.add_argument("--methods", default="none,diffaug,ada")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--set", action="append", default=[], help="a model hyper-parameter KEY=VALUE for every run")
    ap.add_argument("--train-args", default="", help="more `gantools train` options for every run, one string")
    ap.add_argument("--work", default="/tmp/gantools-bench-augment")
    args = ap.parse_args()

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    stats = work / "real-stats.npz"
    if not stats.exists():
        run(["gantools", "evaluate", args.data, "--save-stats", str(stats), "-q"])
    rows = []
    for seed in args.seeds.split(","):
        for method in args.methods.split(","):
            out = work / f"{method}-seed{seed}"
            t0 = time.perf_counter()
            if not (out / "checkpoints" / f"step-{args.steps:06d}.pt").exists():
                cmd = ["gantools", "train", "dcgan", "--data", args.data, "--steps", str(args.steps), "--augment", method,
                       "--seed", seed, "--out", str(out), "--ckpt-every", str(args.every), "--keep", "1000",
                       "--sample-every", str(args.every), "-q"]
                cmd += [a for kv in args.set for a in ("--set", kv)] + args.train_args.split()
                run(cmd)
            minutes = (time.perf_counter() - t0) / 60  # 0 when the run was there already
            for step in range(args.every, args.steps + 1, args.every):
                score = fid(out / "checkpoints" / f"step-{step:06d}.pt", stats, args.n)
                rows.append((method, seed, step, score))
                print(f"{method:8s} seed {seed} step {step:6d}  FID {score:7.2f}  (train {minutes:.1f} min)",
                      file=sys.stderr, flush=True)
    print(f"| augment | seed | step | FID ({args.n} samples vs the real set) |")
    print("|---|---|---|---|")
    for method, seed, step, score in rows:
        print(f"| {method} | {seed} | {step} | {score:.1f} |")


if __name__ == "__main__":
    main()
