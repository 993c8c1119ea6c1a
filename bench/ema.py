"""Which EMA warm-up beats the raw generator at every checkpoint? dcgan on MNIST, FID (issue 14).

One training run carries EMA copies of G updated beside it, so every variant sees the same G; each
copy's weights move as the trainer's do, with its own rule, and its batch-norm buffers are G's (as the
trainer's: recomputed or averaged buffers scored no better, bench/RESULTS.md EMA, this bench at 3beaee0).
Variants (--variants, comma-separated):

  raw        G itself
  rR         beta_t = ema_beta(t, --decay, R): half-life R x the steps so far (r0.05 is stylegan2-ada's
             ema_rampup; r0 is the constant decay gantools had before the warm-up)
  sS:rR      G itself until step S, then rR counted from step S (an average started later)

At each checkpoint every variant draws the same latents (sample seed s, eval mode, as `gantools sample`),
so the variants' FIDs are paired; noise is the spread over sample seeds. Scores are appended to
WORK/scores.jsonl and a rerun with the same --work and settings scores only what is missing.

    python bench/ema.py [--steps 2000] [--every 250] [-n 150] [--seeds 0,1] [--variants raw,r0.05,...]
                         [--train-seed 0] [--work DIR]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from gantools.generate import to_uint8
from gantools.metrics.evaluate import evaluate
from gantools.metrics.features import Extractor
from gantools.metrics.fid import fid_from_stats
from gantools.metrics.stats import load_stats
from gantools.train import Trainer, TrainConfig, ema_beta

MNIST = Path(os.environ.get("MNIST_DIR", "/work/shared/datasets/mnist"))


def variant_beta(name: str, t: int, decay: float) -> float:
    """The weight on the old average after G's step t for the variant `name` (0: a copy of G)."""
    start, _, rule = name.rpartition(":")
    start = int(start[1:]) if start else 0
    return ema_beta(t - start, decay, float(rule[1:])) if t > start else 0.0


class BenchTrainer(Trainer):
    """The trainer with one EMA copy of G per variant, snapshotted at each checkpoint."""

    def __init__(self, cfg, run_dir, variants: list[str], decay: float):
        super().__init__(cfg, run_dir=run_dir)
        G = self.nets[self.objective.generator]
        self.decay = decay
        self.copies = {name: copy.deepcopy(G).eval().requires_grad_(False) for name in variants if name != "raw"}
        self.snapshots: dict[int, dict[str, dict]] = {}

    @torch.no_grad()
    def _update_ema(self):
        super()._update_ema()
        t, G = self.step + 1, self.nets[self.objective.generator]
        for name, E in self.copies.items():
            torch._foreach_lerp_(list(E.parameters()), list(G.parameters()), 1 - variant_beta(name, t, self.decay))
            for b_e, b in zip(E.buffers(), G.buffers()):
                b_e.copy_(b)

    def save(self):
        path = super().save()
        snap = {"raw": self.nets[self.objective.generator].state_dict(),
                **{name: E.state_dict() for name, E in self.copies.items()}}
        self.snapshots[self.step] = {k: {n: v.detach().clone() for n, v in s.items()} for k, s in snap.items()}
        return path


@torch.no_grad()
def draw_images(trainer, state: dict, n: int, seed: int) -> torch.Tensor:
    """n uint8 NCHW images from G with `state` in eval mode, latents from the prior seeded by `seed`."""
    G = copy.deepcopy(trainer.nets[trainer.objective.generator])
    G.load_state_dict(state)
    G.eval()
    inputs = trainer.prior.draw(n, np.random.default_rng(seed))
    return torch.cat([to_uint8(trainer.objective.fake(G, {k: v[i:i + 64] for k, v in inputs.items()}))
                      for i in range(0, n, 64)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--every", type=int, default=250, help="checkpoint (and FID) every N steps")
    ap.add_argument("-n", type=int, default=150, help="generated images per FID")
    ap.add_argument("--seeds", default="0,1", help="sample seeds (each scores every checkpoint and variant)")
    ap.add_argument("--variants", default="raw,r0.05,r0.02,r0.01,s500:r0.05")
    ap.add_argument("--decay", type=float, default=0.999, help="the variants' decay once warmed up")
    ap.add_argument("--real-n", type=int, default=1000, help="MNIST test images in the real statistics")
    ap.add_argument("--ngf", type=int, default=16, help="dcgan's ngf and ndf")
    ap.add_argument("--train-seed", type=int, default=0, help="the training run's --seed")
    ap.add_argument("--work", type=Path, default=None, help="folder for the run, statistics, scores [a temporary one]")
    args = ap.parse_args()
    variants, seeds = args.variants.split(","), [int(s) for s in args.seeds.split(",")]
    for name in variants:
        if name != "raw":
            variant_beta(name, 1, args.decay)  # a malformed name fails here, before training
    work = args.work or Path(tempfile.mkdtemp(prefix="ema-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    stats_path = work / f"mnist-test-{args.real_n}.npz"
    if not stats_path.exists():  # computed once, reused by later runs with the same --work
        evaluate(str(MNIST / "t10k-images-idx3-ubyte.gz"), n=args.real_n, save_stats=str(stats_path))
    real = load_stats(stats_path)

    setting = dict(steps=args.steps, every=args.every, ngf=args.ngf, decay=args.decay, train_seed=args.train_seed)
    snap_path = work / "snapshots.pt"
    saved = torch.load(snap_path, weights_only=True) if snap_path.exists() else None
    cfg = TrainConfig(model="dcgan", data=str(MNIST / "train-images-idx3-ubyte.gz"), steps=args.steps,
                      batch_size=64, ema=True, seed=args.train_seed, device="cpu", sample_every=0,
                      ckpt_every=args.every, keep=1, log_every=100, hparams={"ngf": args.ngf, "ndf": args.ngf})
    if saved and saved["setting"] == setting and set(variants) <= set(next(iter(saved["snapshots"].values()))):
        trainer = BenchTrainer(cfg, run_dir=work / "run-rebuilt", variants=[], decay=args.decay)
        snapshots = saved["snapshots"]
    else:
        trainer = BenchTrainer(cfg, run_dir=work / f"run-{time.strftime('%H%M%S')}", variants=variants,
                               decay=args.decay)
        t = time.perf_counter()
        trainer.run()
        print(f"trained {args.steps} steps in {time.perf_counter() - t:.0f} s", flush=True)
        snapshots = trainer.snapshots
        torch.save({"setting": setting, "snapshots": snapshots}, snap_path)

    scores_path = work / "scores.jsonl"
    key = dict(setting, n=args.n, real_n=args.real_n)
    scores = {}
    if scores_path.exists():
        for line in scores_path.read_text().splitlines():
            r = json.loads(line)
            if r["setting"] == key:
                scores[(r["step"], r["variant"], r["seed"])] = r["fid"]
    extractor = Extractor("cpu")
    for seed in seeds:  # one seed over everything first: a cut-short run still compares every variant
        for step, snap in sorted(snapshots.items()):
            for name in variants:
                if (step, name, seed) in scores:
                    continue
                t = time.perf_counter()
                images = draw_images(trainer, snap[name], args.n, seed)
                fake = extractor.run(((images[i:i + 32], None) for i in range(0, len(images), 32)), name,
                                     len(images), progress=False)
                value = fid_from_stats(fake.fid_stats(), real)
                scores[(step, name, seed)] = value
                with scores_path.open("a") as f:
                    f.write(json.dumps(dict(setting=key, step=step, variant=name, seed=seed, fid=value)) + "\n")
                print(f"step {step:5d}  {name:10s} seed {seed}  FID {value:7.2f}  ({time.perf_counter() - t:.0f} s)",
                      flush=True)

    print(f"\nFID of {args.n} samples against {args.real_n} MNIST test images; dcgan ngf=ndf={args.ngf}, batch 64, "
          f"{args.steps} steps, training seed {args.train_seed}; {time.perf_counter() - t0:.0f} s. "
          "EMA - raw per seed in brackets.")
    cols = [(name, seed) for name in variants for seed in seeds]
    print("| step | " + " | ".join(f"{name} s{seed}" for name, seed in cols) + " |")
    print("|---:|" + "---:|" * len(cols))
    for step in sorted(snapshots):
        cells = []
        for name, seed in cols:
            v, raw = scores.get((step, name, seed)), scores.get((step, "raw", seed))
            diff = f" ({v - raw:+.1f})" if name != "raw" and v is not None and raw is not None else ""
            cells.append("—" if v is None else f"{v:.1f}{diff}")
        print(f"| {step} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
