#!/usr/bin/env bash
# On a lent GPU machine: issue 13's CIFAR-10 row. For each class in MINORITY, CIFAR-10's training split with
# that class cut to 2.5% of its images (seeded; the paper's setting, as bench/balance.py for MNIST), then
# `gantools balance --evaluate` (the paper's protocol: a classifier trained on the imbalanced set, on it
# filled by BAGAN, on it filled by oversampling, tested on CIFAR-10's 10,000 test images) with BAGAN at the
# registry's widths, its fill drawn at --temperature 1 and 1.25 (the same model, --model), and a grid
# (`gantools sample`: one column per class). Everything lands under $OUT; the table goes to stdout.
# Usage: bash bench/gpu_balance.sh CIFAR10_ZIP
# env: MINORITY (class names, default automobile: on the CPU cat stayed near 0 even with oversampling,
# RESULTS.md), STEPS and AE_STEPS (BAGAN's phases, default the registry's 5,000 + 5,000 of 128), CLF_EPOCHS
# (10), DEVICE (cuda), PER_CLASS (training images kept per class, default all: a smaller number for a quick
# CPU check of this script), GAN_MODEL (the balancer, default bagan; bagan-gp to compare: STEPS and AE_STEPS
# then default to its registry budget)
set -eu -o pipefail
zip=${1:?CIFAR-10 zip (train/CLASS/*.jpg, test/CLASS/*.jpg)}
out=${OUT:-/tmp/gpu-balance}
work=$(mktemp -d)
mkdir -p "$out"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
dev=${DEVICE:-cuda}
gm=${GAN_MODEL:-bagan}
[ "$dev" = cuda ] && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
for c in ${MINORITY:-automobile}; do
  imb=$work/cifar10-$c.npz
  python3 - "$zip" "$c" "$imb" "${PER_CLASS:-0}" <<'PY'
import io, sys, zipfile
import numpy as np
from PIL import Image
sys.path.insert(0, "bench")
from balance import imbalanced  # the MNIST bench's seeded cut
zip_path, minority, out, per_class = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
with zipfile.ZipFile(zip_path) as z:
    names = sorted(n for n in z.namelist() if n.startswith("train/") and n.endswith(".jpg"))
    classes = sorted({n.split("/")[1] for n in names})
    by_class = {cls: [n for n in names if n.split("/")[1] == cls] for cls in classes}
    files = [f for cls in classes for f in by_class[cls][:per_class or None]]
    y = np.array([classes.index(f.split("/")[1]) for f in files])
    sel = imbalanced(None, y, classes.index(minority), 0.025, 0)
    keep = [(files[i], y[i]) for i in sel]
    images = np.stack([np.asarray(Image.open(io.BytesIO(z.read(f))).convert("RGB")) for f, _ in keep])
labels = np.array([k for _, k in keep])
np.savez(out, images=images, labels=labels, class_names=np.array(classes))
print(f"{out}: {len(labels)} images, {minority} kept {int((labels == classes.index(minority)).sum())}", file=sys.stderr)
PY
  t0=$(date +%s)
  python3 -m gantools balance "$imb" --evaluate --test "$zip/test" --device "$dev" --json --gan-model "$gm" \
    ${STEPS:+--steps $STEPS} ${AE_STEPS:+--set ae_steps=$AE_STEPS} --classifier-epochs "${CLF_EPOCHS:-10}" \
    --save-model "$out/$gm-cifar10-$c.pt" > "$out/cifar10-$c-$gm-T1.json"
  echo "$c: $gm trained and evaluated at T = 1 in $(( $(date +%s) - t0 )) s" >&2
  python3 -m gantools balance "$imb" --evaluate --test "$zip/test" --device "$dev" --json --temperature 1.25 \
    --classifier-epochs "${CLF_EPOCHS:-10}" --model "$out/$gm-cifar10-$c.pt" > "$out/cifar10-$c-$gm-T1.25.json"
  python3 -m gantools sample "$out/$gm-cifar10-$c.pt" -n 100 --nrow 10 --device "$dev" -o "$out/cifar10-$c-$gm-grid.png"
  echo "$c: done in $(( $(date +%s) - t0 )) s" >&2
done
python3 - "$out" <<'PY'
import json, sys
from pathlib import Path
print("| run | minority | imbalanced | oversampling | GAN fill | gen. acc. | SSIM real | SSIM GAN |")
print("|---|---|---|---|---|---|---|---|")
for f in sorted(Path(sys.argv[1]).glob("cifar10-*-T*.json")):
    r = json.loads(f.read_text())
    col = r["columns"]
    acc = " | ".join(f"{col[k]['minority']:.3f} ({col[k]['macro']:.3f})" for k in ("as_is", "oversampled", "balanced"))
    rare = [c for c in r["classes"] if c["minority"]]
    gen = ", ".join(f"{c['generated_accuracy']:.3f}" for c in rare)
    ssim = " | ".join(", ".join(f"{c[k]:.3f}" for c in rare) for k in ("ssim_real", "ssim_generated"))
    print(f"| {f.stem} | {', '.join(r['minority_classes'])} | {acc} | {gen} | {ssim} |")
PY
rm -rf "$work"
