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
    args = p.parse_args()
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
