"""Does augmenting D's inputs help on a small data set? `gantools train dcgan` on the 400 Olivetti faces
with --augment none, diffaug and ada at the same budget (issue 14), FID of each checkpoint's samples
against the 400 real faces (their statistics computed once).

Each run is the README's example, `gantools train dcgan --data FACES`, with the given --steps and
--augment (everything else the defaults); checkpoints every --every steps are scored with -n samples
from the raw G (the default run has no EMA). FID of a few hundred images is biased upward and noisy:
compare rows with each other, and see the seed spread (--seeds).

    python bench/augment.py [--steps 1500] [--every 500] [-n 1000] [--methods none,diffaug,ada]
                            [--seeds 0] [--set ngf=32 ...] [--data FACES] [--work DIR]
                            [--per-class K] [--real REAL] [--real-per-class K]

A subset of a labelled set: --per-class K trains on K random images of each class of DATA (e.g. 10% of
CIFAR-10: `--data ../shared/datasets/cifar10/cifar10-jpeg.zip/train --per-class 500`), written once as
an .npz in the work folder; the FID's reference is then REAL (e.g. the test split, --real-per-class 200),
not the training images.
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


def subset(source: str, per_class: int, out: Path, seed: int = 0) -> str:
    """K random images of each class of `source`, as an .npz (images NHWC uint8, labels) at `out`."""
    if not out.exists():
        import numpy as np

        from gantools.data import open_source

        ds = open_source(source)
        rng = np.random.default_rng(seed)
        labels = ds.labels.numpy()
        keep = np.sort(np.concatenate([rng.choice(np.flatnonzero(labels == k), per_class, replace=False)
                                       for k in range(ds.num_classes)]))
        np.savez(out, images=ds.images[keep].permute(0, 2, 3, 1).numpy(), labels=labels[keep])
    return str(out)


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
    ap.add_argument("--per-class", type=int, default=0, help="train on K random images per class of DATA")
    ap.add_argument("--real", default=None, help="the FID's reference set (default: DATA as trained on)")
    ap.add_argument("--real-per-class", type=int, default=0, help="K random images per class of REAL")
    args = ap.parse_args()

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if args.per_class:
        args.data = subset(args.data, args.per_class, work / f"train-{args.per_class}-per-class.npz")
    real = args.real or args.data
    if args.real_per_class:
        real = subset(real, args.real_per_class, work / f"real-{args.real_per_class}-per-class.npz", seed=1)
    stats = work / "real-stats.npz"
    if not stats.exists():
        run(["gantools", "evaluate", real, "--save-stats", str(stats), "-q"])
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
