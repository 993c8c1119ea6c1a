"""Does the EMA generator beat the raw one? dcgan on MNIST, FID at each checkpoint (issue 14).

One training run (the trainer's own EMA, `new`: warm-up `ema_rampup`, G's batch-norm buffers) carries
extra EMA copies updated beside it, so every variant sees the same G:

  old      decay 0.999 from step 1, G's batch-norm buffers (gantools before the warm-up)
  refresh  the trainer's EMA weights, batch-norm statistics recomputed for them (refresh_batch_norm)
  bufema   the trainer's warm-up, batch-norm buffers averaged with the same beta
  tf       beta_t = min(0.999, (1 + t) / (10 + t)) (TensorFlow's ExponentialMovingAverage with
           num_updates), batch-norm statistics recomputed

Images are drawn in eval mode (as `gantools sample`) unless the name ends in `/train` (batch norm on
the batch's own statistics, batches of 64). Noise: the same generator scored on two sample seeds.

    python bench/ema.py [--steps 1500] [--every 500] [-n 200] [--real-n 1000] [--ngf 32] [--work DIR]
"""

from __future__ import annotations

import argparse
import copy
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from gantools.generate import to_uint8
from gantools.metrics.evaluate import evaluate
from gantools.train import Trainer, TrainConfig, ema_beta

MNIST = Path(os.environ.get("MNIST_DIR", "/work/shared/datasets/mnist"))
BN = torch.nn.modules.batchnorm._BatchNorm


@torch.no_grad()
def refresh_batch_norm(G, objective, prior, batch_size: int, seed: int, batches: int = 16) -> None:
    """Set G's batch-norm running statistics to the mean over `batches` batches of G's inputs drawn from
    `prior` (a torch generator seeded with `seed`), as train mode sees them."""
    norms = [m for m in G.modules() if isinstance(m, BN) and m.track_running_stats]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches
    G.train()
    gen = torch.Generator().manual_seed(seed)
    for _ in range(batches):
        objective.fake(G, prior.draw(batch_size, gen))
    G.eval()
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum


class BenchTrainer(Trainer):
    """The trainer with extra EMA copies of G (the variants above), snapshotted at each checkpoint."""

    def __init__(self, cfg, run_dir):
        super().__init__(cfg, run_dir=run_dir)
        self.extra = {name: copy.deepcopy(self.G_ema) for name in ("old", "tf", "bufema")}
        self.snapshots: dict[int, dict[str, dict]] = {}

    @torch.no_grad()
    def _update_ema(self):
        super()._update_ema()
        t, decay, G = self.step + 1, self.cfg.ema_decay, self.nets[self.objective.generator]
        betas = {"old": decay, "tf": min(decay, (1 + t) / (10 + t)), "bufema": ema_beta(t, decay, self.cfg.ema_rampup)}
        for name, E in self.extra.items():
            torch._foreach_lerp_(list(E.parameters()), list(G.parameters()), 1 - betas[name])
            for m_e, m in zip(E.modules(), G.modules()):
                for key, b in m.named_buffers(recurse=False):
                    b_e = getattr(m_e, key)
                    if name == "bufema" and isinstance(m, BN) and b.is_floating_point():
                        b_e.lerp_(b, 1 - betas[name])
                    else:
                        b_e.copy_(b)

    def save(self):
        path = super().save()
        G = self.nets[self.objective.generator]
        snap = {"raw": G.state_dict(), "new": self.G_ema.state_dict(), "old": self.extra["old"].state_dict(),
                "bufema": self.extra["bufema"].state_dict()}
        for name, E in (("refresh", self.G_ema), ("tf", self.extra["tf"])):
            E = copy.deepcopy(E)
            refresh_batch_norm(E, self.objective, self.prior, self.cfg.batch_size, seed=self.cfg.seed * 1_000_003 + self.step)
            snap[name] = E.state_dict()
        self.snapshots[self.step] = {k: {n: v.detach().clone() for n, v in s.items()} for k, s in snap.items()}
        return path


@torch.no_grad()
def draw_images(trainer, state: dict, n: int, seed: int, train_mode: bool) -> np.ndarray:
    """n uint8 NHWC images from G with `state`, latents from the prior seeded by `seed`."""
    G = copy.deepcopy(trainer.nets[trainer.objective.generator])
    G.load_state_dict(state)
    G.train(train_mode)
    inputs = trainer.prior.draw(n, np.random.default_rng(seed))
    out = [to_uint8(trainer.objective.fake(G, {k: v[i:i + 64] for k, v in inputs.items()}).float())
           for i in range(0, n, 64)]
    return torch.cat(out).permute(0, 2, 3, 1).numpy()


def fid(trainer, state, n, seed, train_mode, stats, work: Path) -> float:
    path = work / "fake.npz"
    np.savez(path, images=draw_images(trainer, state, n, seed, train_mode))
    return evaluate(str(path), str(stats), ["fid"], seed=seed)["metrics"]["fid"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--every", type=int, default=500, help="checkpoint (and FID) every N steps")
    ap.add_argument("-n", type=int, default=200, help="generated images per FID")
    ap.add_argument("--real-n", type=int, default=1000, help="MNIST test images in the real statistics")
    ap.add_argument("--ngf", type=int, default=32, help="dcgan's ngf and ndf")
    ap.add_argument("--work", type=Path, default=None, help="folder for the run and the statistics [a temporary one]")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="ema-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    cfg = TrainConfig(model="dcgan", data=str(MNIST / "train-images-idx3-ubyte.gz"), steps=args.steps,
                      batch_size=64, ema=True, seed=0, device="cpu", sample_every=0, ckpt_every=args.every,
                      keep=1, log_every=100, hparams={"ngf": args.ngf, "ndf": args.ngf})
    trainer = BenchTrainer(cfg, run_dir=work / "run")
    t1 = time.perf_counter()
    trainer.run()
    print(f"trained {args.steps} steps in {time.perf_counter() - t1:.0f} s", flush=True)
    stats = work / f"mnist-test-{args.real_n}.npz"
    if not stats.exists():  # computed once, reused by later runs with the same --work
        t = time.perf_counter()
        evaluate(str(MNIST / "t10k-images-idx3-ubyte.gz"), n=args.real_n, save_stats=str(stats))
        print(f"real statistics: {stats} ({time.perf_counter() - t:.0f} s)", flush=True)

    last = max(trainer.snapshots)
    rows = []  # (step, variant, seed, fid)
    plan = [("raw", 0, False), ("raw", 1, False), ("new", 0, False), ("old", 0, False)]
    extras = [("new", 1, False), ("refresh", 0, False), ("bufema", 0, False), ("tf", 0, False), ("raw", 0, True),
              ("new", 0, True)]
    for step, snap in sorted(trainer.snapshots.items()):
        for name, seed, train_mode in plan + (extras if step == last else []):
            t = time.perf_counter()
            value = fid(trainer, snap[name], args.n, seed, train_mode, stats, work)
            label = name + ("/train" if train_mode else "")
            rows.append((step, label, seed, value))
            print(f"step {step:5d}  {label:12s} seed {seed}  FID {value:7.2f}  ({time.perf_counter() - t:.0f} s)", flush=True)

    print(f"\nFID of {args.n} samples against {args.real_n} MNIST test images; dcgan ngf=ndf={args.ngf}, batch 64, "
          f"{args.steps} steps; total {time.perf_counter() - t0:.0f} s")
    print("| step | " + " | ".join(f"{name} s{seed}" for name, seed, tm in plan) + " |")
    print("|---:|" + "---:|" * len(plan))
    for step in sorted(trainer.snapshots):
        got = {(r[1], r[2]): r[3] for r in rows if r[0] == step}
        print(f"| {step} | " + " | ".join(f"{got[(n, s)]:.1f}" for n, s, _ in plan) + " |")
    print(f"\nstep {last}: " + ", ".join(f"{r[1]} {r[3]:.1f}" for r in rows if r[0] == last))


if __name__ == "__main__":
    main()
