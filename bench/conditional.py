"""Conditional GANs on MNIST (issue 12): does each model draw the digit it is asked for?

For every conditional model in the registry (or --models), trained with `gantools train` on MNIST:
(a) the accuracy of a small CNN, trained here on real MNIST, over `--per-class` samples of each
class (`gantools sample` gives a conditional checkpoint its classes in turn: n = 10k is 1,000 each);
(c) FID against the MNIST test set (`gantools evaluate`, `--fid-fake` samples against the
statistics of the first `--fid-real` test images, both at the 32x32 the models train at).
For InfoGAN (--infogan, when registered; trained at the data's own 28x28, as `gantools train` picks):
(b) its categorical code as a classifier of the real test digits (its Q head on the images:
`infogan_code_logits`), codes matched one-to-one to digits (scipy's linear_sum_assignment), the error
rate; and (c) at 28x28.

    python bench/conditional.py --steps steps=20                 # a smoke run
    python bench/conditional.py --steps steps=3000 --steps projection:steps=2000 --set ngf=32 --set ndf=32 \
        --set infogan:hidden=512 --set projection:ngf=16 --set projection:ndf=16 --set projection:n_critic=1 \
        --set projection:lr_g=1e-3 --set projection:lr_d=1e-3     # the CPU budgets in bench/RESULTS.md
    python bench/conditional.py --minutes 8 --set ngf=32 --set ndf=32   # a time budget per model

Results: a markdown table on stdout, everything in WORK/results.json; sample grids (one column a
class) with --grids docs/img (`gantools sample CKPT -n 80 --nrow 10 -o DIR/<model>_mnist.png`).
The classifier's weights and the test set's statistics are cached under --cache for reruns.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
MNIST = ROOT.parent / "shared" / "datasets" / "mnist"
RESOLUTION = 32  # conditional models train at the judge's size: MNIST's 28 resized to 32


def gantools(*args, capture: bool = True) -> str:
    """Run the command-line tool; its stdout (the data), stderr passed through."""
    cmd = [sys.executable, "-m", "gantools", *map(str, args)]
    r = subprocess.run(cmd, stdout=subprocess.PIPE if capture else None, text=True)
    if r.returncode != 0:
        raise SystemExit(f"failed ({r.returncode}): {' '.join(cmd)}")
    return r.stdout or ""


def load_mnist(split: str, data: Path, resolution: int = RESOLUTION) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 N x 1 x R x R images and labels, resized as `gantools train` resizes MNIST (28 to 32 for dcgan's sizes)."""
    from gantools.data import open_source

    s = open_source(str(data / f"{split}-images-idx3-ubyte.gz"), resolution=resolution)
    xs, ys = zip(*s.batches(4096))
    return torch.cat(xs), torch.cat(ys)


# ----------------------------------------------------------------------------- the judge


def small_cnn() -> nn.Module:
    """Three 3x3 conv blocks (16, 32, 64 channels, each halving 32 -> 4) and a linear layer."""
    blocks: list[nn.Module] = []
    for c_in, c_out in ((1, 16), (16, 32), (32, 64)):
        blocks += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(), nn.MaxPool2d(2)]
    return nn.Sequential(*blocks, nn.Flatten(), nn.Linear(64 * 4 * 4, 10))


def as_input(x: torch.Tensor) -> torch.Tensor:
    return x.float().div(127.5).sub(1)


@torch.no_grad()
def predict(net: nn.Module, x: torch.Tensor, batch: int = 1000) -> torch.Tensor:
    net.eval()
    return torch.cat([net(as_input(x[i:i + batch])).argmax(1) for i in range(0, len(x), batch)])


def classifier(data: Path, cache: Path, epochs: int = 3) -> tuple[nn.Module, float]:
    """The small CNN trained on MNIST train (weights cached) and its test accuracy."""
    net = small_cnn()
    path = cache / f"mnist-cnn-{epochs}ep-lindecay.pt"
    if path.exists():
        net.load_state_dict(torch.load(path, weights_only=True))
    else:
        x, y = load_mnist("train", data)
        g = torch.Generator().manual_seed(0)
        opt = torch.optim.Adam(net.parameters(), 2e-3)
        total = epochs * -(-len(x) // 128)
        decay = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1 - step / total)  # linear to 0
        t0 = time.time()
        for epoch in range(epochs):
            net.train()
            for idx in torch.randperm(len(x), generator=g).split(128):
                loss = nn.functional.cross_entropy(net(as_input(x[idx])), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                decay.step()
        print(f"classifier: {epochs} epochs in {time.time() - t0:.0f} s", file=sys.stderr)
        torch.save(net.state_dict(), path)
    xt, yt = load_mnist("t10k", data)
    return net, float((predict(net, xt) == yt).float().mean())


# ----------------------------------------------------------------------------- InfoGAN's code as a classifier


def infogan_code_logits(ckpt: dict, x: torch.Tensor) -> torch.Tensor:
    """The first categorical code's logits for real images `x` (uint8) by InfoGAN's Q head: the
    checkpoint's networks (D and Q by name) rebuilt through its objective and loaded, in eval mode;
    the objective's `_heads(nets, x)` runs D's trunk once and returns (D's logit, Q's output), whose
    first cat_codes[0] columns are that code's logits."""
    from gantools.objective import build_objective
    from gantools.registry import MODELS

    obj = build_objective(MODELS.get(ckpt["model"]), ckpt["hparams"], ckpt["data"])
    nets = obj.build_networks()
    for name, net in nets.items():
        net.load_state_dict(ckpt["state"][name])
        net.eval()
    k = int(ckpt["hparams"]["cat_codes"][0])
    with torch.no_grad():
        return torch.cat([obj._heads(nets, as_input(x[i:i + 1000]))[1][:, :k] for i in range(0, len(x), 1000)])


def matched_error(codes: np.ndarray, digits: np.ndarray, k: int = 10) -> tuple[float, list[int]]:
    """Error of codes as digit predictions under the best one-to-one code -> digit matching."""
    from scipy.optimize import linear_sum_assignment

    counts = np.zeros((k, k), np.int64)
    np.add.at(counts, (codes, digits), 1)
    rows, cols = linear_sum_assignment(counts, maximize=True)
    return 1 - counts[rows, cols].sum() / len(codes), cols.tolist()


# ----------------------------------------------------------------------------- per model


def fid(images: Path, stats: Path, n: int, device: str) -> float:
    report = json.loads(gantools("evaluate", images, "--real", stats, "-n", n, "--json", "--device", device))
    return report["metrics"]["fid"]


def for_model(values: list[str], model: str) -> list[str]:
    """The values meant for `model`: `MODEL:VALUE` for it, plain `VALUE` for every model."""
    picked = {}
    for v in values:
        target, sep, rest = v.partition(":")
        if not sep:
            picked.setdefault(v.split("=")[0], v)
        elif target == model:
            picked[rest.split("=")[0]] = rest
    return list(picked.values())


def as_options(kv: str) -> tuple[str, ...]:
    """A --set KEY=VALUE as `gantools train`'s own option where KEY is one (n_critic -> --n-critic)."""
    from gantools.train import TRAIN_KEYS

    key, value = kv.split("=", 1)
    return (f"--{key.replace('_', '-')}", value) if key in TRAIN_KEYS else ("--set", kv)


def train(model: str, args, steps: int, out: Path, hp: list[str], resolution: int | None) -> None:
    """`gantools train` for `steps` (at `resolution`, or the data's own size when None), or stopped by
    SIGTERM after --minutes (it saves and exits 130)."""
    size = ["--resolution", str(resolution)] if resolution else []
    cmd = [sys.executable, "-m", "gantools", "train", model, "--data", args.data, "--steps", str(steps),
           "--batch-size", str(args.batch_size), *size, "--out", str(out),
           "--sample-every", "0", "--ckpt-every", str(steps), "--device", args.device, "--seed", str(args.seed),
           *[a for kv in hp for a in as_options(kv)]]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    try:
        proc.wait(timeout=args.minutes * 60 if args.minutes else None)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        proc.wait()
    if proc.returncode not in (0, 130):
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}")


def run_model(model: str, args, work: Path, judge: nn.Module) -> dict:
    from gantools.checkpoint import load_checkpoint
    from gantools.registry import MODELS

    spec = MODELS.get(model)
    hp = [kv for kv in for_model(args.set, model) if kv.split("=")[0] in spec.defaults]  # the settings it has
    steps = int(dict(kv.split("=") for kv in for_model(args.steps, model)).get("steps", 100_000 if args.minutes else 20))
    t0 = time.time()
    # conditional models train at the judge's size; InfoGAN (scored by its code, not the judge) at the data's
    # own, the size `gantools train infogan` picks on MNIST (28 px, the paper's)
    train(model, args, steps, work / model, hp, RESOLUTION if spec.conditional else None)
    ckpt = work / model / "checkpoints" / "last.pt"
    ck = load_checkpoint(ckpt)
    row = {"model": model, "steps": ck["step"], "batch_size": args.batch_size, "seed": args.seed, "hparams": hp,
           "train_seconds": round(time.time() - t0, 1), "checkpoint": str(ckpt)}
    resolution = int(ck["data"]["resolution"])
    if args.grids:
        gantools("sample", ckpt, "-n", 80, "--nrow", 10, "--overwrite", "--device", args.device,
                 "-o", Path(args.grids) / f"{model}_mnist.png")
    n = max(args.fid_fake, 10 * args.per_class if spec.conditional else 0)
    samples = work / f"{model}.npz"
    gantools("sample", ckpt, "-n", n, "-o", samples, "--overwrite", "--device", args.device)
    if spec.conditional:  # the classes in turn: 10 * per_class images hold per_class of each
        with np.load(samples) as f:
            x, y = torch.from_numpy(f["images"][:10 * args.per_class]).permute(0, 3, 1, 2), f["labels"][:10 * args.per_class]
        hit = predict(judge, x).numpy() == y
        row["accuracy"] = float(hit.mean())
        row["accuracy_per_class"] = [round(float(hit[y == k].mean()), 4) for k in range(10)]
    if model == args.infogan:
        xt, yt = load_mnist("t10k", Path(args.data), resolution)
        codes = infogan_code_logits(load_checkpoint(ckpt), xt).argmax(1).numpy()
        row["code_error"], row["code_to_digit"] = matched_error(codes, yt.numpy())
    stats = test_stats(Path(args.data), Path(args.cache), args.fid_real, resolution, args.device)
    row["fid"] = fid(samples, stats, args.fid_fake, args.device)
    row["fid_fake"], row["fid_real"] = args.fid_fake, args.fid_real
    print(json.dumps(row), file=sys.stderr)
    return row


def test_stats(data: Path, cache: Path, n: int, resolution: int, device: str) -> Path:
    """FID statistics of the first n MNIST test images at the models' resolution (cached)."""
    stats = cache / f"mnist-test{resolution}-{n}-stats.npz"
    if not stats.exists():
        x, y = load_mnist("t10k", data, resolution)
        images = cache / f"mnist-test{resolution}-{n}.npz"
        np.savez(images, images=x[:n].permute(0, 2, 3, 1).numpy(), labels=y[:n].numpy())
        gantools("evaluate", images, "--save-stats", stats, "--device", device)
    return stats


def main() -> None:
    from gantools.registry import MODELS

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(MNIST), help="the MNIST IDX folder")
    p.add_argument("--models", help="comma list (default: the registry's conditional models)")
    p.add_argument("--infogan", default="infogan", help="the InfoGAN model, when registered")
    p.add_argument("--steps", action="append", default=[],
                   help="steps=N for every model, MODEL:steps=N for one (default 20, or 100000 with "
                   "--minutes); repeatable")
    p.add_argument("--minutes", type=float, help="stop each training after this long (SIGTERM: it saves)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0, help="every training run's seed")
    p.add_argument("--set", action="append", default=[],
                   help="KEY=VALUE for the models that have KEY, MODEL:KEY=VALUE for one; repeatable")
    p.add_argument("--per-class", type=int, default=1000, help="samples per class for the accuracy")
    p.add_argument("--fid-fake", type=int, default=1000)
    p.add_argument("--fid-real", type=int, default=2000)
    p.add_argument("--device", default="cpu")
    p.add_argument("--work", default="/tmp/gantools-conditional", help="a new folder here holds the runs and samples")
    p.add_argument("--cache", default="/tmp/gantools-bench-cache", help="classifier weights, test statistics")
    p.add_argument("--grids", help="folder for one sample grid per model (e.g. docs/img)")
    args = p.parse_args()

    models = args.models.split(",") if args.models else [m for m in MODELS.names() if MODELS.get(m).conditional]
    if args.infogan in MODELS and args.infogan not in models and not args.models:
        models.append(args.infogan)
    missing = [m for m in models if m not in MODELS]
    if missing:
        print(f"not registered, skipped: {', '.join(missing)}", file=sys.stderr)
    models = [m for m in models if m in MODELS]
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    Path(args.work).mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=time.strftime("%Y%m%d-%H%M%S-"), dir=args.work))
    print(f"run folders and samples in {work}", file=sys.stderr)

    t0 = time.time()
    judge, judge_acc = classifier(Path(args.data), cache)
    rows = [run_model(m, args, work, judge) for m in models]
    summary = {"classifier_test_accuracy": judge_acc, "rows": rows, "wall_seconds": round(time.time() - t0, 1),
               "torch_threads": torch.get_num_threads(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}
    (work / "results.json").write_text(json.dumps(summary, indent=1))

    print(f"classifier (small CNN, real MNIST train): {judge_acc:.2%} on the test set")
    print("| model | steps x batch | train s | accuracy, 1k/class | code error | FID |")
    print("|---|---|---:|---:|---:|---:|")
    for r in rows:
        acc = f"{r['accuracy']:.1%}" if "accuracy" in r else "-"
        err = f"{r['code_error']:.1%}" if "code_error" in r else "-"
        print(f"| {r['model']} | {r['steps']} x {r['batch_size']} | {r['train_seconds']:.0f} | {acc} | {err} | "
              f"{r['fid']:.1f} ({r['fid_fake']} vs {r['fid_real']}) |")


if __name__ == "__main__":
    main()
