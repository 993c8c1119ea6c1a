"""BAGAN's MNIST experiment (Mariani et al. 2018, issue 13): one class kept at 2.5% of its images, the others
untouched; does filling the rare class up with generated images help a classifier?

For each minority class (--minority, default 0, 4, 7), on the imbalanced training set:
- `gantools train` of each GAN in --gans (default bagan and acgan; bagan-gp too if listed);
  `gantools sample CKPT --class C` makes each one's fill (up to the largest class's count; at its
  temperature=T setting, for BAGAN 1.25 by default);
- a small CNN (bench/conditional.py's, fixed steps; with --clf-seeds K, K of them and the table has their
  means) trained on: the imbalanced set; plain oversampling (the rare images repeated up to the largest
  class's count, each copy flipped left-right with probability 1/2);
  the set filled with each GAN's images; tested on MNIST's test set: the minority
  class's accuracy (its recall) and the macro-averaged accuracy (oversampling and SSIM: gantools.balance's);
- generated-image accuracy: the CNN trained on all of real MNIST train (bench/conditional.py's judge,
  cached) classifying the generated minority images; variability: the mean SSIM of random pairs of
  generated minority images beside random pairs of real ones (lower: more varied).
Everything at 32x32 (MNIST resized as `gantools train` resizes it for acgan). With --grid PNG: one row per
class, real images on the left, the first GAN in --gans (from the first minority run) on the right.

    python bench/balance.py --minority 0 --bagan ae_steps=20 --bagan steps=20 --acgan steps=20 --clf-steps 50
    python bench/balance.py                                             # the recorded budget (bench/RESULTS.md)
    python bench/balance.py --minority 0 --bagan temperature=1 --grid docs/img/bagan_mnist.png   # README's picture

Results: a markdown table on stdout, everything in WORK/results.json (written after each class). Runs already in
--work (an earlier bench) are resumed to the new --bagan/--acgan/--bagan-gp steps (the seconds then count the resumed part).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conditional import MNIST, as_input, as_options, classifier, gantools, load_mnist, predict, small_cnn  # noqa: E402

from gantools.balance import LabelledImages, oversample, pair_ssim  # noqa: E402

RESOLUTION = 32
# the recorded CPU budget (bench/RESULTS.md): narrowed networks, batch 64, lr 2e-4 (the paper's 5e-5 moves too
# little in a few thousand steps), 8,000 adversarial steps, the fill sampled from G's weight average at
# temperature 1.25 (`gantools sample --temperature`: each class's Gaussian 1.25 times as wide; measured: the
# minority's accuracy +1.5 to +3.6 points, temperature=1 for the paper's sampling); real batches
# class-balanced as registered (class_balanced=false: the authors' proportions); ACGAN as
# bench/conditional.py trains it
BAGAN = {"steps": 8000, "ae_steps": 400, "ngf": 16, "ndf": 16, "hidden": 256, "batch_size": 64, "lr": 2e-4,
         "ema": True, "temperature": 1.25}
ACGAN = {"steps": 1500, "ngf": 32, "ndf": 32, "batch_size": 64}
# bagan-gp (not in the default --gans): the registry's autoencoder budget and learning rates, networks
# narrowed to 32 channels, 2,000 steps of 64 (five critic steps each: about BAGAN's 20 CPU minutes)
BAGAN_GP = {"steps": 2000, "ae_steps": 1500, "ngf": 32, "ndf": 32, "batch_size": 64, "ema": True, "temperature": 1.25}
NAMES = {"bagan": "BAGAN", "acgan": "ACGAN", "bagan-gp": "BAGAN-GP"}


def imbalanced(x: np.ndarray, y: np.ndarray, minority: int, keep: float, seed: int) -> np.ndarray:
    """Indices of the training set with `keep` of the minority class's images (a seeded random choice)."""
    rng = np.random.default_rng(seed)
    rare = np.flatnonzero(y == minority)
    kept = rng.choice(rare, max(2, round(keep * len(rare))), replace=False)
    return np.sort(np.concatenate([np.flatnonzero(y != minority), kept]))


def train_classifier(x: torch.Tensor, y: torch.Tensor, steps: int, seed: int) -> nn.Module:
    """bench/conditional.py's small CNN, Adam 2e-3 decayed linearly to 0 over `steps` batches of 128: a fixed
    budget in batches (gantools.balance.train_classifier trains whole epochs of a ~4x larger CNN, beyond
    this CPU budget for 12 classifiers)."""
    torch.manual_seed(seed)
    net = small_cnn()
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(net.parameters(), 2e-3)
    decay = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1 - step / steps)
    net.train()

    def batches():
        while True:
            yield from torch.randperm(len(x), generator=g).split(128)

    for _, idx in zip(range(steps), batches()):
        loss = nn.functional.cross_entropy(net(as_input(x[idx])), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        decay.step()
    return net


def accuracies(net: nn.Module, xt: torch.Tensor, yt: torch.Tensor, minority: int) -> dict:
    pred = predict(net, xt)
    per_class = [float((pred[yt == k] == k).float().mean()) for k in range(10)]
    return {"minority": per_class[minority], "macro": float(np.mean(per_class)), "per_class": per_class}


def over_seeds(runs: list[dict]) -> dict:
    """Classifiers trained with several seeds on one set: the means, and each seed's minority accuracy."""
    return {"minority": float(np.mean([r["minority"] for r in runs])), "macro": float(np.mean([r["macro"] for r in runs])),
            "per_class": np.mean([r["per_class"] for r in runs], 0).tolist(), "minority_per_seed": [r["minority"] for r in runs]}


def tempered(temperature: float) -> list:
    """`gantools sample`'s --temperature option, left out at 1 (the default sampling)."""
    return ["--temperature", temperature] if temperature != 1 else []


def sample_class(ckpt: str, n: int, minority: int, out: Path, temperature: float = 1.0) -> torch.Tensor:
    """`gantools sample CKPT -n N --class C [--temperature T]` -> uint8 N x 1 x 32 x 32."""
    gantools("sample", ckpt, "-n", n, "--class", minority, "--seed", 1, "-o", out, "--device", "cpu", "--overwrite",
             *tempered(temperature))
    return torch.from_numpy(np.load(out)["images"]).permute(0, 3, 1, 2).contiguous()


def train_gan(model: str, data: Path, run: Path, settings: dict, extra: list[str]) -> tuple[str, float]:
    """`gantools train` with the settings (hyper-parameters as --set); the checkpoint and the wall seconds.
    A run already in `run` (an earlier bench in the same --work) is resumed to the settings' steps instead."""
    s = dict(settings)
    s.pop("temperature", None)  # a sampling setting
    if (run / "checkpoints" / "last.pt").is_file():
        t0 = time.time()
        ckpt = gantools("train", "--resume", run, "--steps", s["steps"]).strip().splitlines()[-1]
        return ckpt, time.time() - t0
    args = ["train", model, "-d", data, "--out", run, "--device", "cpu", "--resolution", RESOLUTION,
            "--steps", s.pop("steps"), "--batch-size", s.pop("batch_size"), "--sample-every", 0, "--ckpt-every", 100000,
            "--log-every", 50, *extra]
    if "lr" in s:
        lr = s.pop("lr")
        args += ["--lr-g", lr, "--lr-d", lr]
    if s.pop("ema", False):  # ema=true: train with --ema (the commands then sample the weight average)
        args.append("--ema")
    if "class_balanced" in s:  # class_balanced=true/false: --class-balanced or --no-class-balanced
        args.append("--class-balanced" if s.pop("class_balanced") else "--no-class-balanced")
    for k, v in s.items():  # training options (e.g. lr_schedule=linear, augment=diffaug) as options, the rest as --set
        args += as_options(f"{k}={v}")
    t0 = time.time()
    ckpt = gantools(*args).strip().splitlines()[-1]
    return ckpt, time.time() - t0


def grid(ckpt: str, x: torch.Tensor, y: torch.Tensor, path: Path, work: Path, per_side: int = 8,
         temperature: float = 1.0) -> None:
    """One row per class: `per_side` real images, then `per_side` of the checkpoint's (`gantools sample`)."""
    from PIL import Image

    from gantools.data.writers import make_grid

    gantools("sample", ckpt, "-n", 10 * per_side, "--seed", 2, "-o", work / "grid.npz", "--device", "cpu",
             "--overwrite", *tempered(temperature))
    fake = np.load(work / "grid.npz")["images"]  # image i is class i mod 10
    rows = []
    for k in range(10):
        real = x[y == k][:per_side].permute(0, 2, 3, 1).numpy()
        rows += [*real, *fake[k::10][:per_side]]
    img = make_grid(np.stack(rows), nrow=2 * per_side)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img[:, :, 0]).save(path)


def run_class(c: int, args, x, y, xt, yt, judge, work: Path) -> dict:
    """One minority class's experiment: the imbalanced set, both GANs and their fill, the four classifiers."""
    res: dict = {"minority": c, "seconds": {}}
    t0 = time.time()
    sel = imbalanced(x.numpy(), y.numpy(), c, args.keep, args.seed)
    xi, yi = x[sel], y[sel]
    counts = torch.bincount(yi, minlength=10)
    fill = int(counts.max() - counts[c])
    res.update(kept=int(counts[c]), fill=fill)
    data = work / f"imbalanced-{c}.npz"
    # the 28x28 originals (gantools resizes them to 32 as it resizes MNIST's files)
    np.savez(data, images=args.raw[sel].transpose(0, 2, 3, 1), labels=yi.numpy())
    gen = {}
    for model, settings in args.gans.items():
        ckpt, secs = train_gan(model, data, work / f"{model}-{c}", settings, ["--seed", args.train_seed])
        res["seconds"][f"train_{model}"] = round(secs)
        res[f"{model}_checkpoint"] = ckpt
        gen[model] = sample_class(ckpt, fill, c, work / f"{model}-{c}-fill.npz", settings.get("temperature", 1.0))
    real_rare = x[y == c]
    res["ssim_real"] = pair_ssim(real_rare, args.pairs, args.seed)
    for model, images in gen.items():
        res[f"gen_acc_{model}"] = float((predict(judge, images) == c).float().mean())
        res[f"ssim_{model}"] = pair_ssim(images, args.pairs, args.seed)
    t1 = time.time()
    targets = [int(counts.max()) if k == c else int(n) for k, n in enumerate(counts)]  # the minority only, as the fills
    over = oversample(LabelledImages(xi, yi, [str(k) for k in range(10)], str(data)), targets, args.seed)
    sets = {"imbalanced": (xi, yi), "oversampling": (over.images, over.labels)}
    for model, images in gen.items():
        sets[model] = (torch.cat([xi, images]), torch.cat([yi, torch.full((len(images),), c)]))
    res["classifier"] = {name: over_seeds([accuracies(train_classifier(*xy, args.clf_steps, args.seed + s), xt, yt, c)
                                           for s in range(args.clf_seeds)]) for name, xy in sets.items()}
    res["seconds"]["classifiers"] = round(time.time() - t1)
    res["seconds"]["total"] = round(time.time() - t0)
    return res


def table(results: list[dict], gans: list[str]) -> str:
    names = [NAMES[g] for g in gans]
    cols = ["minority (kept)", "imbalanced", "oversampling", *(f"{n} fill" for n in names),
            *(f"gen. acc. {n}" for n in names), "SSIM real", *(f"SSIM {n}" for n in names)]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in results:
        cl = r["classifier"]
        cells = [f"{r['minority']} ({r['kept']})",
                 *(f"{cl[k]['minority']:.3f} ({cl[k]['macro']:.3f})" for k in ("imbalanced", "oversampling", *gans)),
                 *(f"{r[f'gen_acc_{g}']:.3f}" for g in gans), f"{r['ssim_real']:.3f}", *(f"{r[f'ssim_{g}']:.3f}" for g in gans)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def settings(defaults: dict, given: list[str]) -> dict:
    """The defaults with --bagan/--acgan/--bagan-gp KEY=VALUE items over them (values read as JSON where they parse)."""
    out = dict(defaults)
    for item in given:
        k, _, v = item.partition("=")
        try:
            out[k] = json.loads(v)
        except ValueError:
            out[k] = v
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(MNIST), help="the MNIST IDX folder")
    p.add_argument("--minority", default="0,4,7", help="comma list of minority classes, one experiment each")
    p.add_argument("--keep", type=float, default=0.025, help="the minority class's share kept (the paper's 2.5%%)")
    p.add_argument("--bagan", action="append", default=[], help="KEY=VALUE over the BAGAN settings %s" % BAGAN)
    p.add_argument("--acgan", action="append", default=[], help="KEY=VALUE over the ACGAN settings %s" % ACGAN)
    p.add_argument("--bagan-gp", action="append", default=[], help="KEY=VALUE over the BAGAN-GP settings %s" % BAGAN_GP)
    p.add_argument("--gans", default="bagan,acgan", help="comma list of the GANs to compare: bagan, acgan, bagan-gp")
    p.add_argument("--clf-steps", type=int, default=400, help="batches of 128 per classifier")
    p.add_argument("--clf-seeds", type=int, default=1, help="classifiers per set (seeds SEED, SEED+1, ...): the table has their means")
    p.add_argument("--pairs", type=int, default=1000, help="random pairs per SSIM mean")
    p.add_argument("--seed", type=int, default=0, help="the kept minority images and the classifiers' first seed")
    p.add_argument("--train-seed", type=int, default=0, help="`gantools train --seed` for every GAN")
    p.add_argument("--work", default=None, help="folder for data, runs and results.json (default: a new temporary one)")
    p.add_argument("--cache", default="/tmp/gantools-bench-cache", help="the judge's cached weights")
    p.add_argument("--grid", default=None, help="write the real-beside-generated grid here (PNG): the first GAN's")
    args = p.parse_args()
    given = {"bagan": (BAGAN, args.bagan), "acgan": (ACGAN, args.acgan), "bagan-gp": (BAGAN_GP, args.bagan_gp)}
    unknown = set(args.gans.split(",")) - set(given)
    if unknown:
        p.error(f"--gans: unknown {', '.join(sorted(unknown))} (known: {', '.join(given)})")
    args.gans = {g: settings(*given[g]) for g in args.gans.split(",")}
    work = Path(args.work) if args.work else Path(__import__("tempfile").mkdtemp(prefix="bench-balance-"))
    work.mkdir(parents=True, exist_ok=True)
    Path(args.cache).mkdir(parents=True, exist_ok=True)
    print(f"work folder {work}", file=sys.stderr)
    x, y = load_mnist("train", Path(args.data), RESOLUTION)
    args.raw = load_mnist("train", Path(args.data), 28)[0].numpy()
    xt, yt = load_mnist("t10k", Path(args.data), RESOLUTION)
    judge, judge_acc = classifier(Path(args.data), Path(args.cache))
    results = []
    for c in (int(k) for k in args.minority.split(",")):
        results.append(run_class(c, args, x, y, xt, yt, judge, work))
        summary = {"judge_test_accuracy": judge_acc, **args.gans,
                   "clf_steps": args.clf_steps, "clf_seeds": args.clf_seeds, "keep": args.keep, "train_seed": args.train_seed,
                   "results": results}
        (work / "results.json").write_text(json.dumps(summary, indent=1))
        print(table(results[-1:], list(args.gans)).splitlines()[-1], file=sys.stderr)
    first, *_ = args.gans
    if args.grid:
        grid(results[0][f"{first}_checkpoint"], x, y, Path(args.grid), work, temperature=args.gans[first].get("temperature", 1.0))
    temps = "; ".join(f"{NAMES[g]}'s fill at temperature {s.get('temperature', 1.0):g}" for g, s in args.gans.items())
    print(f"judge test accuracy {judge_acc:.4f}; {temps}\n")
    print(table(results, list(args.gans)))


if __name__ == "__main__":
    main()
