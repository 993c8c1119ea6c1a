"""Image quality against the published figures (issue 14): FID of each image model on MNIST or CIFAR-10.

Each run is `gantools train MODEL` on the data set's training images under a budget of real images seen
by D (`--kimg`: thousands; steps = images / (batch size x D steps per G step)), with checkpoints at
`--points` evenly spaced steps for the trend; each checkpoint's FID is `gantools evaluate CKPT -n
FID_FAKE` (its sampling generator, seeded) against the statistics of the first `--fid-real` test images
at the model's resolution (cached under --cache). A run is a model name, optionally followed by
KEY=VALUE hyper-parameters (`--set`) and train options: `--run dcgan --run "sngan --loss lsgan ngf=64"`.
Prints a markdown table with the published figures beside it; everything in WORK/results.json;
--grids DIR: a 64-sample grid per run, `DIR/<model>[_<key>-<value>][_<option>]_<data>.png`.

    python bench/quality.py --kimg 2 --run dcgan --fid-fake 100 --fid-real 1000     # a smoke run
    # CPU budget (bench/RESULTS.md "quality"): narrowed networks, small FID sample sizes
    python bench/quality.py --data mnist --kimg 192 --points 3 --fid-fake 250 --fid-real 1000 --run "dcgan ngf=16 ndf=16"
    # GPU, the issue's budgets: 20 epochs of MNIST for every image model, 50k steps of SNGAN on CIFAR-10
    python bench/quality.py --device cuda --data mnist --kimg 1200 --points 4 --fid-fake 10000 \\
        --fid-real 10000 --run dcgan --run "dcgan upsample=resize" --run sngan --run sagan \\
        --run "sngan --loss wgan-gp" --run "sngan --loss lsgan" --grids docs/img
    python bench/quality.py --device cuda --data cifar10 --kimg 16000 --points 5 --fid-fake 10000 \\
        --fid-real 10000 --run sngan --grids docs/img
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DATASETS = ROOT.parent / "shared" / "datasets"
# name -> (training source, test source); MNIST's 28 px is resized to the models' 32 by `gantools train`
DATA = {
    "mnist": (DATASETS / "mnist", DATASETS / "mnist" / "t10k-images-idx3-ubyte.gz"),
    "cifar10": (DATASETS / "cifar10" / "cifar10-jpeg.zip/train", DATASETS / "cifar10" / "cifar10-jpeg.zip/test"),
}
# The figures of the issue: (data, what) -> (FID, where published). Lucic et al. 2018 report the best FID of
# a large search (TensorFlow Inception, 10k samples); Mimicry and StudioGAN 50k samples on CIFAR-10 (the
# JPEG copy here is lossy: FID against it is comparable only with itself).
PUBLISHED = {
    ("mnist", "ns"): (6.8, "Lucic et al. 2018, NS-GAN, best"),
    ("mnist", "wgan-gp"): (6.7, "Lucic et al. 2018, WGAN-GP, best"),
    ("mnist", "lsgan"): (7.8, "Lucic et al. 2018, LSGAN, best"),
    ("cifar10", "sngan"): (16.77, "Mimicry SNGAN; StudioGAN 9.01 (conditional)"),
    ("cifar10", "wgan-gp"): (22.29, "Mimicry WGAN-GP"),
    ("cifar10", "dcgan"): (48.29, "StudioGAN DCGAN"),
    ("cifar10", "sagan"): (10.35, "StudioGAN SAGAN (conditional)"),
}


def gantools(*args) -> str:
    """Run the command-line tool; its stdout (the data), stderr passed through."""
    cmd = [sys.executable, "-m", "gantools", *map(str, args)]
    r = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    if r.returncode != 0:
        raise SystemExit(f"failed ({r.returncode}): {' '.join(cmd)}")
    return r.stdout


def parse_run(run: str) -> tuple[str, list[str], list[str]]:
    """'MODEL [--loss L] [KEY=VALUE ...]' -> (model, --set pairs, other train options)."""
    words = run.split()
    pairs = [w for w in words[1:] if "=" in w and not w.startswith("-")]
    return words[0], pairs, [w for w in words[1:] if w not in pairs]


def label_of(model: str, pairs: list[str], options: list[str]) -> str:
    return "_".join([model, *(p.replace("=", "-") for p in pairs), *(o.lstrip("-") for o in options)])


def real_stats(data: str, n: int, resolution: int, cache: Path, device: str) -> Path:
    """FID statistics of the first n test images at `resolution` (cached; MNIST's name matches bench/conditional.py's)."""
    from gantools.data import open_source

    stats = cache / f"{data}-test{resolution}-{n}-stats.npz"
    if not stats.exists():
        source = open_source(str(DATA[data][1]), resolution=resolution)
        images, taken = [], 0
        for x, _ in source.batches(1000):
            images.append(x[: n - taken])
            taken += len(images[-1])
            if taken >= n:
                break
        tmp = cache / f"{data}-test{resolution}-{n}.npz"
        np.savez(tmp, images=np.concatenate([x.permute(0, 2, 3, 1).numpy() for x in images]))
        gantools("evaluate", tmp, "--save-stats", stats, "--device", device)
    return stats


def run_one(run: str, args, work: Path) -> dict:
    model, pairs, options = parse_run(run)
    label = label_of(model, pairs, options)
    out = work / label
    base = ["train", model, "--data", DATA[args.data][0], "--seed", args.seed, "--device", args.device,
            *options, *[a for kv in pairs + args.set for a in ("--set", kv)]]
    cfg = tomllib.loads(gantools(*base, "--dry-run"))
    per_step = cfg["batch_size"] * cfg["n_critic"]  # real images D sees per G step
    steps = max(args.points, round(args.kimg * 1000 / per_step))
    every = -(-steps // args.points)
    t0 = time.time()
    gantools(*base, "--steps", steps, "--ckpt-every", every, "--keep", args.points + 1, "--sample-every", steps,
             "--out", out)
    train_s = time.time() - t0
    ckpts = sorted((out / "checkpoints").glob("step-*.pt"), key=lambda p: int(p.stem.split("-")[1]))
    from gantools.checkpoint import load_checkpoint

    resolution = int(load_checkpoint(ckpts[-1])["data"]["resolution"])
    stats = real_stats(args.data, args.fid_real, resolution, Path(args.cache), args.device)
    trend = []
    for ckpt in ckpts:
        t1 = time.time()
        report = json.loads(gantools("evaluate", ckpt, "--real", stats, "-n", args.fid_fake, "--seed", args.seed,
                                     "--json", "--device", args.device))
        step = int(ckpt.stem.split("-")[1])
        trend.append({"step": step, "kimg": round(step * per_step / 1000, 1), "fid": report["metrics"]["fid"],
                      "eval_seconds": round(time.time() - t1, 1)})
        print(json.dumps({"run": label, **trend[-1]}), file=sys.stderr)
    if args.grids:
        gantools("sample", ckpts[-1], "-n", 64, "--nrow", 8, "--seed", args.seed, "--overwrite", "--device",
                 args.device, "-o", Path(args.grids) / f"{label}_{args.data}.png")
    return {"run": label, "model": model, "loss": cfg["loss"], "set": pairs + args.set, "options": options,
            "batch_size": cfg["batch_size"], "n_critic": cfg["n_critic"], "steps": steps,
            "kimg": round(steps * per_step / 1000, 1), "train_seconds": round(train_s, 1), "trend": trend,
            "fid_fake": args.fid_fake, "fid_real": args.fid_real}


def published(data: str, row: dict) -> str:
    for key in ((data, row["model"]), (data, row["loss"])):
        if key in PUBLISHED:
            fid, source = PUBLISHED[key]
            return f"{fid} ({source})"
    return "-"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", choices=sorted(DATA), default="mnist")
    p.add_argument("--run", action="append", required=True,
                   help="'MODEL [--loss L] [KEY=VALUE ...]': one training run; repeatable")
    p.add_argument("--kimg", type=float, required=True, help="budget: thousands of real images D sees")
    p.add_argument("--points", type=int, default=3, help="checkpoints evaluated along the run (the trend)")
    p.add_argument("--set", action="append", default=[], help="KEY=VALUE for every run; repeatable")
    p.add_argument("--fid-fake", type=int, default=10000)
    p.add_argument("--fid-real", type=int, default=10000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--work", default="/tmp/gantools-quality", help="a new folder here holds the runs")
    p.add_argument("--cache", default="/tmp/gantools-bench-cache", help="test-set statistics")
    p.add_argument("--grids", help="folder for one sample grid per run (e.g. docs/img)")
    args = p.parse_args()

    Path(args.cache).mkdir(parents=True, exist_ok=True)
    Path(args.work).mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=time.strftime("%Y%m%d-%H%M%S-"), dir=args.work))
    print(f"run folders in {work}", file=sys.stderr)
    rows = []
    for run in args.run:  # results.json after each run: a long job's finished runs survive an interrupt
        rows.append(run_one(run, args, work))
        (work / "results.json").write_text(json.dumps({"data": args.data, "rows": rows}, indent=1))

    print(f"FID on {args.data}: {args.fid_fake} samples against {args.fid_real} test images")
    print("| run | loss | batch x D steps | kimg | train s | FID along the run (step: FID) | final FID | published |")
    print("|---|---|---|---:|---:|---|---:|---|")
    for r in rows:
        trend = ", ".join(f"{t['step']}: {t['fid']:.1f}" for t in r["trend"])
        print(f"| {r['run']} | {r['loss']} | {r['batch_size']} x {r['n_critic']} | {r['kimg']} | "
              f"{r['train_seconds']:.0f} | {trend} | {r['trend'][-1]['fid']:.1f} | {published(args.data, r)} |")


if __name__ == "__main__":
    main()
