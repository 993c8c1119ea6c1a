"""Does `gantools balance --evaluate`'s classifier learn "generated-looking means the rare class"?

On a finished `bench/balance.py` run (its --work folder: the imbalanced MNIST set's seed, BAGAN's checkpoint and
its fill of the minority), train `gantools.balance.train_classifier` (the --evaluate classifier: SmallCNN,
--epochs, rate decayed to 0) on one or more training sets and test on MNIST's test set (32 px):

- over:   plain oversampling of the minority (gantools.balance.oversample)
- bagan:  the bench's BAGAN fill of the minority (the paper's protocol)
- allgen: the same, and every other class also gets --others generated images from the same checkpoint (at
          the same temperature), so that "generated" no longer tells the minority apart
- mix:    half of the fill replaced by oversampling's real copies
- mixall: mix, and every other class also gets --others generated images, as allgen
- overall: over, and every other class also gets --others generated images (mixall's control: does the
          minority's fill help, or only the other classes' generated images?)
- product: mixall as the product builds it: what `gantools balance --model CKPT --real-share R
          --min-generated N --temperature T --seed S` adds to the imbalanced set (gantools.balance.plan_fill
          and filled, --evaluate's arm (b); R, N, T, S: --real-share, --others, --temperature,
          --balance-seed): its own copies and generated images, not the bench's fill

One JSON line per set on stdout: the minority's test accuracy, macro accuracy, what the minority's test
images were read as, and the accuracy on 1,000 unseen generated minority images.

    python bench/balance_shortcut.py /tmp/b11/run-7 --minority 7 --sets bagan,allgen,mix,mixall,overall
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from balance import RESOLUTION, imbalanced  # noqa: E402
from conditional import MNIST, load_mnist  # noqa: E402

import gantools.balance as B  # noqa: E402

SETS = ("over", "bagan", "allgen", "mix", "mixall", "overall", "product")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("work", type=Path, help="a finished bench/balance.py --work folder")
    p.add_argument("--minority", type=int, required=True, help="the run's minority class")
    p.add_argument("--sets", default="bagan,allgen", help=f"comma list of {', '.join(SETS)}")
    p.add_argument("--epochs", type=int, default=10, help="the classifier's epochs (--evaluate's default: 10)")
    p.add_argument("--seed", type=int, default=0, help="the classifier's seed")
    p.add_argument("--others", type=int, default=1000, help="allgen, mixall, overall: generated images given to every other class (product: --min-generated)")
    p.add_argument("--real-share", type=float, default=0.5, help="product: balance's --real-share")
    p.add_argument("--balance-seed", type=int, default=0, help="product: balance's --seed")
    p.add_argument("--temperature", type=float, default=1.25, help="the fill's temperature (the bench's)")
    p.add_argument("--keep", type=float, default=0.025, help="the bench's --keep")
    p.add_argument("--data-seed", type=int, default=0, help="the bench's --seed (which minority images it kept)")
    args = p.parse_args()
    unknown = set(args.sets.split(",")) - set(SETS)
    if unknown:
        p.error(f"--sets: unknown {', '.join(sorted(unknown))}")

    c, names, size = args.minority, [str(k) for k in range(10)], (RESOLUTION, RESOLUTION)
    x, y = load_mnist("train", MNIST, RESOLUTION)
    xt, yt = load_mnist("t10k", MNIST, RESOLUTION)
    sel = imbalanced(x.numpy(), y.numpy(), c, args.keep, args.data_seed)
    base = B.LabelledImages(x[sel], y[sel], names, "imbalanced")
    counts = base.counts()
    targets = [max(counts) if k == c else n for k, n in enumerate(counts)]
    fill = torch.from_numpy(np.load(args.work / f"bagan-{c}-fill.npz")["images"]).permute(0, 3, 1, 2).contiguous()
    ck = torch.load(args.work / f"bagan-{c}" / "checkpoints" / "last.pt", weights_only=True, map_location="cpu")
    unseen = B.generate_classes(ck, np.full(1000, c), names, size, 7, "cpu", temperature=args.temperature)
    others = np.repeat([k for k in range(10) if k != c], args.others)

    @functools.cache
    def other_classes_generated() -> torch.Tensor:
        """The other classes' generated images (allgen, mixall, overall): drawn once, the same for each set."""
        return B.generate_classes(ck, others, names, size, 3, "cpu", temperature=args.temperature)

    def training_set(name: str) -> B.LabelledImages:
        if name == "product":
            plan = B.plan_fill(counts, targets, args.real_share, args.others)
            return B.filled(base, plan, ck, args.balance_seed, "cpu", args.temperature)
        over = B.oversample(base, targets, args.data_seed)
        if name in ("over", "overall"):
            filled = over
        elif name in ("mix", "mixall"):
            copies = over.images[len(base.labels):]
            half = len(fill) // 2
            images = torch.cat([fill[:half], copies[:len(fill) - half]])
            filled = B.with_generated(base, images, torch.full((len(images),), c))
        else:  # bagan, allgen
            filled = B.with_generated(base, fill, torch.full((len(fill),), c))
        if name in ("over", "mix", "bagan"):
            return filled
        return B.with_generated(filled, other_classes_generated(), torch.from_numpy(others))

    for name in args.sets.split(","):
        t0 = time.time()
        data = training_set(name)
        net = B.train_classifier(data, args.epochs, args.seed, "cpu", label=name)
        pred = B.predict(net, xt)
        acc = [float((pred[yt == k] == k).float().mean()) for k in range(10)]
        print(json.dumps({"minority": c, "set": name, "classifier_seed": args.seed, "epochs": args.epochs,
                          "minority_accuracy": round(acc[c], 4), "macro": round(float(np.mean(acc)), 4),
                          "unseen_generated_accuracy": round(float((B.predict(net, unseen) == c).float().mean()), 4),
                          "minority_read_as": torch.bincount(pred[yt == c], minlength=10).tolist(),
                          "train_images": len(data.labels), "seconds": round(time.time() - t0)}), flush=True)


if __name__ == "__main__":
    main()
