"""Training throughput with 1 and several processes (gantools.distributed), on the CPU or on GPUs.

Each run is `gantools train MODEL ...` in a fresh process tree: one process as usual, N processes
through `--nproc N` (torch.distributed.run on this machine: gloo on the CPU, NCCL on CUDA). The
global batch is the same at every N, so each process computes 1/N of it and the gradients are
averaged after each backward pass. Throughput is the real images a second that the trainer logs
(`images_per_s` in metrics.jsonl, the global batch over the wall time of the log interval); the
first interval is left out (start-up, first-touch allocations). Rounds alternate the process
counts; the table gives the median over rounds, and each count's ratio to one process.

On the CPU the processes share the machine's cores: each gets cores / N torch threads (one
process: all of them), so the ratio is what splitting the same work over processes costs or gains
against threads, not a speed-up from more hardware; `--threads T` gives every process T threads
instead (e.g. 1: the overhead of the split and the all-reduces alone, at the same threads per process).

    python bench/distributed.py [--device cpu] [--procs 1,2] [--models gan,dcgan] [--steps 300] [--rounds 3]
        [--threads T]

On a machine with several GPUs (one process per GPU; each takes cuda:LOCAL_RANK):

    python bench/distributed.py --device cuda --procs 1,2,4,8 --models dcgan --batch-size 512 --steps 2000

`--ddp` times instead the choice in gantools.distributed.average_gradients: D's update of `dcgan`
(D on a real and a fake batch, backward, Adam) in 2 processes of 1 thread, the gradients averaged
by DistributedDataParallel (all-reduces overlapping the backward pass) or by one flat all-reduce
after it (gantools), rounds alternating; milliseconds a step, median of the rounds:

    python bench/distributed.py --ddp [--device cpu] [--steps 30] [--rounds 5] [--batch-size 64]

At `--procs 1` a run is the single-process trainer: under torchrun with one process gantools does
not join a process group, so there is no distributed overhead on one GPU by construction. Across
machines, start `torchrun --nnodes M --nproc-per-node G --rdzv-backend c10d --rdzv-endpoint HOST:PORT
-m gantools train ...` on each (README: Many GPUs) and read images_per_s from rank 0's metrics.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

# model -> (data, extra arguments): the toy MLP (communication-bound) and a small DCGAN (compute-bound)
MODELS = {
    "gan": ("toy:ring", ["--lr-schedule", "constant"]),
    "dcgan": ("toy:shapes", ["--set", "ngf=32", "--set", "ndf=32"]),
}


def run(model: str, nproc: int, args, threads: int) -> float:
    """Median images/s of one training run (the log intervals after the first)."""
    data, extra = MODELS[model]
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "gantools", "train", model, "--data", data, "--steps", str(args.steps),
               "--batch-size", str(args.batch_size), "--log-every", str(args.log_every), "--sample-every", "0",
               "--ckpt-every", str(args.steps), "--device", args.device, "--out", f"{tmp}/run", "-q", *extra]
        if nproc > 1:
            cmd += ["--nproc", str(nproc)]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
        rows = [json.loads(line) for line in Path(f"{tmp}/run/metrics.jsonl").read_text().splitlines()]
    rates = [r["images_per_s"] for r in rows if "images_per_s" in r][1:]
    return statistics.median(rates)


def _d_step_worker(rank: int, port: int, mode: str, args, out) -> None:
    """One of 2 processes timing D's update with the gradients averaged by `mode` (ddp or gantools)."""
    import time
    import warnings

    import torch
    import torch.nn.functional as F

    warnings.filterwarnings("ignore", category=FutureWarning)  # broadcast_buffers: kept, for per-rank batch norm

    from gantools import distributed
    from gantools.train import TrainConfig, Trainer

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    device = torch.device(args.device if args.device == "cpu" else f"cuda:{rank}")
    D = Trainer(TrainConfig(model="dcgan", data="toy:shapes", steps=1, batch_size=args.batch_size, device=str(device),
                            hparams={"ngf": 32, "ndf": 32})).nets["D"]
    distributed.join()
    params = list(D.parameters())
    net = torch.nn.parallel.DistributedDataParallel(D, broadcast_buffers=False) if mode == "ddp" else D
    opt = torch.optim.Adam(params, 2e-4)
    real, fake = (torch.randn(args.batch_size // 2, 3, 32, 32, device=device) for _ in range(2))
    times = []
    for step in range(args.steps + 5):
        t = time.perf_counter()
        loss = F.softplus(-net(real, None)).mean() + F.softplus(net(fake, None)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if mode == "gantools":
            distributed.average_gradients(params)
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if step >= 5:  # warm-up left out
            times.append(time.perf_counter() - t)
    if rank == 0:
        out.put(statistics.median(times) * 1000)


def ddp_comparison(args) -> None:
    """Milliseconds per D step: DDP against gantools' all-reduce after the backward pass."""
    import socket

    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    results: dict = {"ddp": [], "gantools": []}
    for r in range(args.rounds):
        for mode in (("ddp", "gantools") if r % 2 == 0 else ("gantools", "ddp")):
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            out = ctx.Queue()
            procs = [ctx.Process(target=_d_step_worker, args=(rank, port, mode, args, out)) for rank in range(2)]
            for p in procs:
                p.start()
            ms = out.get(timeout=600)
            for p in procs:
                p.join()
            results[mode].append(ms)
            print(f"{mode} round {r}: {ms:.2f} ms a D step (load {os.getloadavg()[0]:.2f})", file=sys.stderr)
    print(f"| gradients averaged by | ms a D step (median of {args.rounds}) |")
    print("|---|---:|")
    for mode, label in (("ddp", "DistributedDataParallel"), ("gantools", "one all-reduce after backward (gantools)")):
        print(f"| {label} | {statistics.median(results[mode]):.2f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--procs", default="1,2")
    p.add_argument("--models", default="gan,dcgan")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--log-every", type=int, default=25)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch threads per process [default: cores / processes]")
    p.add_argument("--ddp", action="store_true", help="time DDP against gantools' gradient averaging instead")
    args = p.parse_args()
    if args.ddp:
        ddp_comparison(args)
        return
    procs = [int(n) for n in args.procs.split(",")]
    cores = os.cpu_count() or 1
    print(f"# {args.device}, {cores} cores, threads {args.threads or 'cores / processes'}, load average {os.getloadavg()[0]:.2f} (1 min) at the start", file=sys.stderr)
    results: dict = {}
    for model in args.models.split(","):
        for r in range(args.rounds):
            order = procs if r % 2 == 0 else procs[::-1]
            for n in order:
                threads = args.threads or (max(1, cores // n) if args.device == "cpu" else 1)
                rate = run(model, n, args, threads)
                results.setdefault((model, n), []).append(rate)
                print(f"{model} procs {n} round {r}: {rate:.0f} img/s (load {os.getloadavg()[0]:.2f})", file=sys.stderr)
    print(f"| model | processes | images/s (median of {args.rounds}) | vs 1 process |")
    print("|---|---:|---:|---:|")
    for model in args.models.split(","):
        base = statistics.median(results[(model, procs[0])])
        for n in procs:
            med = statistics.median(results[(model, n)])
            print(f"| {model} | {n} | {med:.0f} | {med / base:.2f} |")


if __name__ == "__main__":
    main()
