"""Training throughput of `dcgan` at 32x32, batch 64, on MNIST: gantools vs a plain reference loop.

The reference is the loop most people write, set up as its users run it
(pytorch/examples' dcgan): a torchvision-style Dataset decoding PIL images with
Resize/ToTensor/Normalize through a DataLoader with `--workers` processes (2, as
pytorch/examples; persistent, so that they start once, before the timed window,
and no epoch boundary restarts them inside it), `torch.backends.cudnn.benchmark
= True` on CUDA, G step then D step with BCE, `.item()` each step, and the DCGAN
networks written as plain layers: the same architecture, layer for layer, as
gantools' `dcgan` at 32x32 with one channel. Both loops compute the same update:
G's gradient through D before D's update (gantools' `--updates simultaneous`,
dcgan's default), D's on the same fakes. Both loops run `--warmup` untimed steps
first (the reference's workers are started and its prefetch queue filled by
then; cuDNN's autotuning and CUDA-graph capture happen there too), and both use
the same number of torch threads (`--threads`; the reference's workers decode in
processes of their own, as DataLoader workers do).

Both run on the same device, one after the other, each in a fresh Python process
(started by this script) so that one loop's process-wide settings cannot help or
hurt the other: the gantools loop sets malloc to reuse freed memory as `gantools`
commands do (gantools.allocator), the reference runs with the defaults. Rounds
alternate the loops (the order reversed every other round); the table prints
images/s (real images consumed per second, median over rounds), the ratio of the
medians and the median of the per-round (paired) ratios.

    python bench/train_throughput.py [--device cpu|cuda] [--steps 30] [--warmup 5] [--repeat 3]
        [--mnist ../shared/datasets/mnist] [--variants fp32,bf16,...] [--workers 2] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gantools.data.sources import _read_idx  # noqa: E402
from gantools.train import TrainConfig, Trainer  # noqa: E402


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


class MnistPIL(torch.utils.data.Dataset):
    """MNIST as PIL images with the usual per-image transforms (the reference's data path)."""

    def __init__(self, images: np.ndarray):
        from torchvision import transforms

        self.images = images
        self.tf = transforms.Compose([transforms.Resize(32), transforms.ToTensor(), transforms.Normalize([0.5], [0.5])])

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        from PIL import Image

        return self.tf(Image.fromarray(self.images[i], mode="L")), 0


class ReferenceG(nn.Module):
    """DCGAN's generator at 32x32, one channel, as plain layers: z -> 4x4x256 -> ... -> 32x32x1."""

    def __init__(self, z_dim: int = 100, ngf: int = 64):
        super().__init__()
        self.main = nn.Sequential(
            nn.ConvTranspose2d(z_dim, ngf * 4, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 4), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True),
            nn.ConvTranspose2d(ngf, 1, 4, 2, 1, bias=False), nn.Tanh(),
        )

    def forward(self, z):
        return self.main(z.view(z.shape[0], -1, 1, 1))


class ReferenceD(nn.Module):
    """DCGAN's discriminator at 32x32, one channel, as plain layers: 32x32x1 -> ... -> 4x4x256 -> logit."""

    def __init__(self, ndf: int = 64):
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(1, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 2), nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 4), nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * 4, 1, 4, 1, 0, bias=False),
        )

    def forward(self, x):
        return self.main(x).flatten()


def reference_nets(device):
    """The reference loop's networks, optimizers and loss."""
    torch.manual_seed(0)
    G = ReferenceG().to(device)
    D = ReferenceD().to(device)
    opt_G = torch.optim.Adam(G.parameters(), 2e-4, betas=(0.5, 0.999))
    opt_D = torch.optim.Adam(D.parameters(), 2e-4, betas=(0.5, 0.999))
    return G, D, opt_G, opt_D, nn.BCEWithLogitsLoss()


def reference_step(nets, real: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of the reference loop: G step, then D step on the same fakes."""
    G, D, opt_G, opt_D, adv = nets
    batch, device = real.shape[0], real.device
    valid = torch.ones(batch, device=device)
    fake = torch.zeros(batch, device=device)
    opt_G.zero_grad()
    z = torch.randn(batch, 100, device=device)
    gen = G(z)
    g_loss = adv(D(gen), valid)
    g_loss.backward()
    opt_G.step()
    opt_D.zero_grad()
    d_loss = (adv(D(real), valid) + adv(D(gen.detach()), fake)) / 2
    d_loss.backward()
    opt_D.step()
    return d_loss, g_loss


def reference(images: np.ndarray, device, steps: int, warmup: int, workers: int, batch: int = 64) -> float:
    """The plain loop; returns real images per second over `steps` after `warmup`."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as pytorch/examples' dcgan sets it
    nets = reference_nets(device)
    loader = torch.utils.data.DataLoader(MnistPIL(images), batch_size=batch, shuffle=True, drop_last=True,
                                         num_workers=workers, persistent_workers=workers > 0,
                                         pin_memory=device.type == "cuda")
    done, t0 = 0, None
    while True:
        for imgs, _ in loader:
            if done == warmup:
                sync(device)
                t0 = time.perf_counter()
            if done == warmup + steps:
                sync(device)
                return steps * batch / (time.perf_counter() - t0)
            d_loss, g_loss = reference_step(nets, imgs.to(device))
            _ = (d_loss.item(), g_loss.item())  # the per-step print of the reference loop
            done += 1


def step_flops(data: str, device) -> tuple[float, float]:
    """Floating-point operations of one training step (torch's FLOP counter): reference, gantools."""
    from torch.utils.flop_counter import FlopCounterMode

    nets = reference_nets(device)
    real = torch.randn(64, 1, 32, 32, device=device)
    reference_step(nets, real)
    with FlopCounterMode(display=False) as ref_count:
        reference_step(nets, real)
    tr = Trainer(TrainConfig(model="dcgan", data=data, batch_size=64, device=str(device), steps=10**9,
                             sample_every=0, out="/tmp/gantools-bench-run", amp=False, cuda_graphs=False))
    for ref_net, our_net in ((nets[0], tr.nets["G"]), (nets[1], tr.nets["D"])):  # the same layers, or the comparison is void
        shapes = [tuple(t.shape) for t in ref_net.state_dict().values()]
        if shapes != [tuple(t.shape) for t in our_net.state_dict().values()]:
            sys.exit(f"reference {type(ref_net).__name__} differs from gantools' dcgan: {shapes}")
    batches = tr.batch_source()
    tr.train_step(batches)
    with FlopCounterMode(display=False) as ours:
        tr.train_step(batches)
    return float(ref_count.get_total_flops()), float(ours.get_total_flops())


def matmul_flops_per_s(device, n: int = 2048, reps: int = 10) -> float:
    """What this device sustains on a large fp32 matrix product: a practical arithmetic ceiling."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    for _ in range(2):
        a @ b
    sync(device)
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n ** 3 * reps / (time.perf_counter() - t0)


def gantools_loop(data: str, device, steps: int, warmup: int, **options) -> float:
    """gantools' Trainer (data resident as uint8, no per-step sync); real images per second."""
    cfg = TrainConfig(model="dcgan", data=data, batch_size=64, device=str(device), steps=10**9,
                      sample_every=0, out="/tmp/gantools-bench-run", **options)
    tr = Trainer(cfg)
    for net in tr.nets.values():
        net.train()
    batches = tr.batch_source()
    acc = tr.train_step(batches)  # the trainer learns the logged names' count on its first step
    for _ in range(warmup - 1):
        acc += tr.train_step(batches)
    sync(device)
    t0 = time.perf_counter()
    for i in range(steps):
        acc += tr.train_step(batches)
        if (i + 1) % 50 == 0:
            acc.tolist()  # the loop's one sync per log interval
    acc.tolist()
    sync(device)
    return steps * 64 / (time.perf_counter() - t0)


VARIANTS = {
    "fp32": dict(amp=False, cuda_graphs=False),
    "fp32-malloc-default": dict(amp=False, cuda_graphs=False),  # without gantools.allocator
    "bf16": dict(amp=True, cuda_graphs=False),
    "fp32+graphs": dict(amp=False, cuda_graphs=True),
    "bf16+graphs": dict(amp=True, cuda_graphs=True),
    "compile": dict(compile="default", cuda_graphs=False),
}


def run_one(args) -> float:
    """One loop in this process (the child side of `--one`); returns images per second."""
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    if args.one == "reference":
        images = _read_idx(next(Path(args.mnist).glob("train-images*")))
        return reference(images, device, args.steps, args.warmup, args.workers)
    if args.one not in VARIANTS:
        sys.exit(f"unknown variant {args.one!r}: expected one of {', '.join(VARIANTS)}")
    if not args.one.endswith("malloc-default"):
        from gantools.allocator import reuse_freed_memory

        reuse_freed_memory()  # what every gantools command does first
    warm = args.warmup + (20 if "compile" in args.one else 0)
    return gantools_loop(args.mnist, device, args.steps, warm, **VARIANTS[args.one])


def in_child(args, loop: str) -> float:
    """Run `loop` in a fresh Python process; its images per second."""
    cmd = [sys.executable, __file__, "--one", loop, "--device", args.device, "--steps", str(args.steps),
           "--warmup", str(args.warmup), "--mnist", args.mnist, "--workers", str(args.workers),
           "--threads", str(args.threads)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{loop} failed:\n{r.stderr}")
    return float(r.stdout.split()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--mnist", default=str(ROOT.parent / "shared" / "datasets" / "mnist"))
    ap.add_argument("--variants", default="fp32,bf16")
    ap.add_argument("--repeat", type=int, default=3, help="alternating rounds; medians are reported")
    ap.add_argument("--workers", type=int, default=2, help="the reference's DataLoader workers (default 2)")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads(),
                    help="torch threads of both loops (default: torch's own choice here)")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one loop here, print its images/s
    args = ap.parse_args()
    device = torch.device(args.device)
    mnist = Path(args.mnist)
    if not mnist.exists():
        sys.exit(f"{mnist}: MNIST not found (pass --mnist)")
    if args.one:
        print(f"{run_one(args):.3f}")
        return
    print(f"# dcgan 32x32, batch 64, MNIST; device {device} "
          f"({torch.cuda.get_device_name() if device.type == 'cuda' else 'CPU'}), torch {torch.__version__}, "
          f"{args.threads} torch threads each; reference: "
          f"{f'{args.workers} persistent DataLoader workers' if args.workers else 'data loaded in the main process'}"
          f"{', cudnn.benchmark' if device.type == 'cuda' else ''}; {args.steps} timed steps after {args.warmup}; "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)
    # Rounds alternate reference and variants so that drift in the machine's speed hits both alike;
    # the table reports each loop's median over the rounds and the median of the
    # per-round ratios (each round's gantools run against that round's reference).
    names = args.variants.split(",")
    runs: dict[str, list[float]] = {"reference": [], **{n: [] for n in names}}
    for r in range(args.repeat):
        for loop in (list(runs) if r % 2 == 0 else list(runs)[::-1]):
            runs[loop].append(in_child(args, loop))
        print(f"# round {r + 1}: " + ", ".join(f"{k} {v[-1]:.1f}" for k, v in runs.items())
              + f"; load average {os.getloadavg()[0]:.2f}", flush=True)
    ref = float(np.median(runs["reference"]))
    print(f"{'loop':<48} {'img/s (median)':>14} {'ratio of medians':>17} {'paired ratio (median)':>22}")
    print(f"{'reference loop (DataLoader + PIL transforms)':<48} {ref:14.1f} {1.0:16.2f}x {1.0:21.2f}x")
    for name in names:
        ips = float(np.median(runs[name]))
        paired = float(np.median(np.array(runs[name]) / np.array(runs["reference"])))
        print(f"{'gantools train (' + name + ')':<48} {ips:14.1f} {ips / ref:16.2f}x {paired:21.2f}x", flush=True)

    # How close each loop runs to the arithmetic ceiling, and so the best ratio that loop changes
    # alone could reach: the reference's arithmetic at its measured speed against gantools'
    # arithmetic at the matrix-product rate.
    ref_flops, our_flops = step_flops(str(mnist), device)
    peak = matmul_flops_per_s(device)
    print(f"# arithmetic per step (fp32): reference {ref_flops / 1e9:.2f} GFLOP, gantools {our_flops / 1e9:.2f} GFLOP; "
          f"{args.device} fp32 matmul {peak / 1e9:.1f} GFLOP/s")
    print(f"# achieved: reference {ref / 64 * ref_flops / 1e9:.1f} GFLOP/s", end="")
    if "fp32" in names:
        ips = float(np.median(runs["fp32"]))
        print(f", gantools fp32 {ips / 64 * our_flops / 1e9:.1f} GFLOP/s", end="")
    print(f"; ratio ceiling at the matmul rate: {(64 / ref) / (our_flops / peak):.2f}x")

if __name__ == "__main__":
    main()
