#!/usr/bin/env bash
# On a lent GPU machine: the graph check, the training benchmark against the reference as its users run
# it (cudnn.benchmark, 2 persistent DataLoader workers started and warmed up before the timed window, the
# same torch threads for both loops, REPEAT alternating rounds with paired ratios), then (MNIST_RUN=1) a
# real MNIST run whose sample grid and slim checkpoint (G_ema only) come back under $OUT.
# Usage: bash bench/gpu_train.sh MNIST_DIR   (env: STEPS, REPEAT, VARIANTS, MNIST_RUN)
# The defaults start 9 fresh processes of 30 + 1000 steps (not yet timed on a GPU);
# VARIANTS=fp32,bf16,fp32+graphs,bf16+graphs times all four gantools variants.
set -u -o pipefail
mnist=${1:?MNIST folder}
out=${OUT:-/tmp/gpu-out}
mkdir -p "$out"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, typer; print('torch', torch.__version__, 'typer', typer.__version__)"
python3 bench/gpu_graph_check.py "$mnist/train-images-idx3-ubyte.gz" 2>&1 | tail -3
python3 bench/train_throughput.py --device cuda --steps ${STEPS:-1000} --warmup 30 --repeat ${REPEAT:-3} \
  --workers 2 --mnist "$mnist" --variants ${VARIANTS:-fp32,bf16+graphs} 2>&1 | grep -v resized \
  | tee "$out/train_throughput_cuda.txt" || exit 1
[ "${MNIST_RUN:-0}" = 1 ] || exit 0
t0=$(date +%s)
python3 -m gantools train dcgan --data "$mnist/train-images-idx3-ubyte.gz" --steps 6000 --ema \
  --device cuda --out /tmp/mnist-run --sample-every 2000 --ckpt-every 2000 --log-every 200 2>&1 | tail -5
echo "mnist run: $(( $(date +%s) - t0 )) s wall"
cp /tmp/mnist-run/samples/step-006000.png "$out/mnist_samples.png"
cp /tmp/mnist-run/metrics.jsonl "$out/mnist_metrics.jsonl"
python3 - "$out/mnist-dcgan.pt" <<'PY'
import sys
from gantools.checkpoint import load_checkpoint, save_checkpoint
ck = load_checkpoint("/tmp/mnist-run/checkpoints/last.pt")
ck["state"] = {"G": ck["state"]["G_ema"]}  # generator only: small enough to keep
ck["rng"] = {}
save_checkpoint(ck, sys.argv[1])
print("slim checkpoint written")
PY
