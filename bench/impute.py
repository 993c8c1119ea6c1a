"""GAIN imputation on Letter and Spam at 20% MCAR: gantools vs the paper, baselines and a plain loop.

For each data set and seed the same cells are hidden (gantools.impute.hide_mcar, each observed
cell with probability 0.2), then filled by:

* gantools GAIN with the published settings (10,000 iterations, batch 128, hint 0.9, alpha 100),
  and any other `--variants` of gantools.impute.gain.VARIANTS;
* column means (the baseline `gantools impute --evaluate` prints);
* scikit-learn's KNNImputer (5 neighbours, on min-max normalised columns);
* scikit-learn's IterativeImputer with an ExtraTreesRegressor (a MissForest-like method;
  kept moderate: --et-trees trees, --et-iter rounds);
* a plain PyTorch GAIN loop written here (nn.Sequential networks, autograd, torch.optim.Adam,
  batches drawn with numpy each iteration as the authors' code does), run on the first
  --ref-seeds seeds.

RMSE is the paper's: min-max normalised with the original observed range (+1e-6, as the authors'
code), over the hidden cells only; integer columns are rounded for every method alike (the
authors' code rounds Letter's columns too). Printed: RMSE mean and std over the seeds, training
time as each method runs by default (gantools' GAIN pins itself to one thread; the plain loop
uses torch's default), beside the paper's figures (Letter 0.1198, Spam 0.0513).

Speed (method `speed`): gantools' GAIN loop and the plain loop on the same thread counts
(--speed-threads, default 1 and 2: each loop on one thread, then each on two), --speed-rounds
rounds in alternating order on seed 0's hidden cells, --speed-iterations iterations; training
seconds, medians, and the paired ratio plain / gantools per thread count. gantools' fit pins one
thread on the CPU; to time it on more, the bench keeps that call from lowering the count, and
checks the count in effect while the loop runs.

Variants: `gantools` and `paper` run as `gantools impute` does by default (self-validation: 10%
of the observed cells held out, iteration count and hidden width chosen on them, G's weights
averaged over its iterations where that scores better, tables of <= 1,000 rows averaging the Gs of
several widths, small tables refitted; the draws by predictive mean matching on the held-out cells);
a `-fixed` suffix (`gantools-fixed`) runs the variant as the default did before 2026-11-29: every
observed cell trained on, exactly 10,000 iterations, the variant's width. Runs with self-validation
also make --draws random completions and report how often the hidden cell's true value lies in
their 90% interval.

Small tables (method `small`): --subsets random subsets of --rows rows of each data set (subset k:
rows drawn without replacement by numpy's default_rng(k); its hidden cells: seed k), each variant
on each, paired. The subsets and seeds used here (0..4) are not those the defaults were chosen on
(100..104).

    pip install -e '.[bench]'   # scikit-learn
    python bench/impute.py [--seeds 5] [--datasets letter,spam] [--methods gain,mean,knn,forest,ref,speed]
        [--speed-rounds 3] [--speed-threads 1,2] [--speed-iterations 10000]
    python bench/impute.py --methods small,gain --variants gantools-fixed,gantools [--subsets 5 --rows 500 --draws 20]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gantools.impute import evaluate, fit_columns, hide_mcar, infer_kinds, read_table  # noqa: E402
from gantools.impute.evaluate import scaled_sq_errors  # noqa: E402
from gantools.impute.schema import RANGE_EPS  # noqa: E402

PAPER = {"letter": 0.1198, "spam": 0.0513}


def rmse(table, kinds, hide: np.ndarray, filled: np.ndarray) -> float:
    """The paper's RMSE of a filled numeric matrix over the hidden cells (integer columns rounded)."""
    cols = fit_columns(table, kinds)
    errors = [scaled_sq_errors(table, j, c, hide, np.round(filled[:, j]) if c.kind == "integer" else filled[:, j])
              for j, c in enumerate(cols)]
    return math.sqrt(float(np.concatenate(errors).mean()))


def matrix(table, hide) -> np.ndarray:
    """The numbers with NaN in every missing or hidden cell."""
    return np.stack([table.with_hidden(hide).parsed(j)[0] for j in range(table.n_cols)], 1)


def minmax(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lo, hi = np.nanmin(x, 0), np.nanmax(x, 0)
    return (x - lo) / (hi - lo + RANGE_EPS), lo, hi


# ------------------------------------------------------------------------- the plain loop


def plain_gain(x_nan: np.ndarray, seed: int, iterations: int = 10000, batch: int = 128,
               hint_rate: float = 0.9, alpha: float = 100.0) -> tuple[np.ndarray, float]:
    """GAIN as most people write it in PyTorch; returns (the filled matrix, training seconds)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    norm, lo, hi = minmax(x_nan)
    m = (~np.isnan(norm)).astype(np.float32)
    data = np.nan_to_num(norm, nan=0.0).astype(np.float32)
    n, d = data.shape

    def mlp(out_act):
        net = nn.Sequential(nn.Linear(2 * d, d), nn.ReLU(), nn.Linear(d, d), nn.ReLU(), nn.Linear(d, d), out_act)
        for layer in net:
            if isinstance(layer, nn.Linear):
                nn.init.normal_(layer.weight, 0.0, math.sqrt(2.0 / layer.in_features))
                nn.init.zeros_(layer.bias)
        return net

    G, D = mlp(nn.Sigmoid()), mlp(nn.Sigmoid())
    opt_g, opt_d = torch.optim.Adam(G.parameters()), torch.optim.Adam(D.parameters())
    t0 = time.perf_counter()
    for _ in range(iterations):
        idx = rng.permutation(n)[:batch]
        xb, mb = torch.from_numpy(data[idx]), torch.from_numpy(m[idx])
        z = torch.from_numpy(rng.uniform(0, 0.01, (batch, d)).astype(np.float32))
        h = mb * torch.from_numpy((rng.uniform(size=(batch, d)) < hint_rate).astype(np.float32))
        xin = mb * xb + (1 - mb) * z
        g = G(torch.cat([xin, mb], 1))
        xhat = mb * xb + (1 - mb) * g
        p = D(torch.cat([xhat.detach(), h], 1))
        d_loss = -torch.mean(mb * torch.log(p + 1e-8) + (1 - mb) * torch.log(1 - p + 1e-8))
        opt_d.zero_grad()
        d_loss.backward()
        opt_d.step()
        p = D(torch.cat([xhat, h], 1))
        g_loss = -torch.mean((1 - mb) * torch.log(p + 1e-8)) + alpha * torch.mean((mb * xb - mb * g) ** 2) / torch.mean(mb)
        opt_g.zero_grad()
        g_loss.backward()
        opt_g.step()
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        z = torch.from_numpy(rng.uniform(0, 0.01, (n, d)).astype(np.float32))
        mt, xt = torch.from_numpy(m), torch.from_numpy(data)
        g = G(torch.cat([mt * xt + (1 - mt) * z, mt], 1)).numpy()
    filled = m * data + (1 - m) * g
    return filled * (hi - lo + RANGE_EPS) + lo, seconds


# ------------------------------------------------------------------------- speed at equal thread counts


@contextlib.contextmanager
def torch_threads(n: int, hold: bool = False):
    """Run with n torch threads; hold=True also keeps gantools' fit from pinning itself to one."""
    before, real_set = torch.get_num_threads(), torch.set_num_threads
    real_set(n)
    if hold:
        torch.set_num_threads = lambda _k: real_set(n)
    try:
        yield
    finally:
        torch.set_num_threads = real_set
        real_set(before)


def settings(name: str) -> dict:
    """evaluate()'s keywords for a --variants entry: VARIANT, or VARIANT-fixed (no self-validation)."""
    variant, fixed = (name[:-len("-fixed")], True) if name.endswith("-fixed") else (name, False)
    return {"variant": variant, "validation_rate": 0.0} if fixed else {"variant": variant}


def subset(table, rows: int, seed: int):
    """`rows` rows of `table` drawn without replacement (numpy default_rng(seed)), in table order."""
    idx = np.sort(np.random.default_rng(seed).choice(table.n_rows, rows, replace=False))
    return replace(table, text=[table.text[i] for i in idx], missing=table.missing[idx], _parsed={},
                   source=f"{table.source}[subset {seed}]")


def run_gain(table, miss_rate: float, seed: int, name: str, draws: int) -> dict:
    """One evaluate() of a --variants entry; with self-validation also the draws' coverage."""
    kw = settings(name)
    rep = evaluate(table, miss_rate, seed, draws=None if kw.get("validation_rate") == 0.0 else draws, **kw)
    c = rep["interval"]
    print(f"    {name}: iterations {rep['iterations']}, width {rep['hidden_width']}"
          + (f", {draws} draws' 90% intervals: coverage {c['coverage']:.3f}, rank coverage {c['rank_coverage']:.3f}, "
             f"truths at a draw {c['at_atom']:.2f}" if c else ""), file=sys.stderr)
    return rep


def gantools_fit_seconds(table, variant: str, iterations: int, threads: int) -> float:
    """gantools' GAIN training seconds on `threads` threads (checked while its loop runs)."""
    seen = set()
    with torch_threads(threads, hold=threads > 1):
        rep = evaluate(table, 0.2, 0, variant=variant, iterations=iterations, validation_rate=0.0,
                       progress=lambda done, total: seen.add(torch.get_num_threads()))
    if seen != {threads}:
        sys.exit(f"gantools' loop ran on {sorted(seen)} threads, not {threads}")
    return rep["fit_seconds"]


def speed(table, kinds, variants: list[str], iterations: int, threads: list[int], rounds: int) -> dict:
    """Training seconds per (loop, threads) over `rounds` alternating rounds."""
    x_nan = matrix(table, hide_mcar(table, kinds, 0.2, 0))
    loops = [f"gantools GAIN ({v})" for v in variants] + ["plain loop"]
    times: dict = {(loop, t): [] for t in threads for loop in loops}
    for r in range(rounds):
        for t in threads:
            for loop in (loops if (r + t) % 2 == 0 else loops[::-1]):
                if loop == "plain loop":
                    with torch_threads(t):
                        secs = plain_gain(x_nan, 0, iterations=iterations)[1]
                else:
                    secs = gantools_fit_seconds(table, loop[len("gantools GAIN ("):-1], iterations, t)
                times[(loop, t)].append(secs)
                print(f"  round {r + 1} {loop} on {t} thread(s): {secs:.2f} s", file=sys.stderr, flush=True)
    return times


def print_speed(ds: str, times: dict, iterations: int) -> None:
    print(f"\n{ds}: training seconds of {iterations} iterations (median over rounds); paired = median over "
          f"rounds of plain / gantools on the same thread count\n")
    print("| loop | threads | seconds (median) | rounds | paired: plain / this |")
    print("|---|---:|---:|---|---:|")
    for (loop, t), secs in times.items():
        plain = np.array(times[("plain loop", t)])
        paired = "–" if loop == "plain loop" else f"{np.median(plain / np.array(secs)):.2f}x"
        print(f"| {loop} | {t} | {np.median(secs):.2f} | {', '.join(f'{x:.2f}' for x in secs)} | {paired} |")


# ------------------------------------------------------------------------- scikit-learn


def knn(x_nan: np.ndarray) -> np.ndarray:
    from sklearn.impute import KNNImputer

    norm, lo, hi = minmax(x_nan)
    return KNNImputer(n_neighbors=5).fit_transform(norm) * (hi - lo + RANGE_EPS) + lo


def forest(x_nan: np.ndarray, seed: int, trees: int, rounds: int) -> np.ndarray:
    from sklearn.ensemble import ExtraTreesRegressor
    from sklearn.experimental import enable_iterative_imputer  # noqa: F401
    from sklearn.impute import IterativeImputer

    est = ExtraTreesRegressor(n_estimators=trees, min_samples_leaf=2, max_features=0.5, n_jobs=1, random_state=seed)
    return IterativeImputer(estimator=est, max_iter=rounds, random_state=seed, initial_strategy="mean").fit_transform(x_nan)


# ------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "datasets" / "tabular"))
    ap.add_argument("--datasets", default="letter,spam")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--miss-rate", type=float, default=0.2)
    ap.add_argument("--methods", default="gain,mean,knn,forest,ref,speed")
    ap.add_argument("--variants", default="paper", help="gantools GAIN variants to run (gantools.impute.gain.VARIANTS)")
    ap.add_argument("--ref-seeds", type=int, default=1, help="seeds the plain loop runs on (it is slow)")
    ap.add_argument("--et-trees", type=int, default=10)
    ap.add_argument("--et-iter", type=int, default=5)
    ap.add_argument("--speed-rounds", type=int, default=3)
    ap.add_argument("--speed-threads", default="1,2", help="thread counts both loops run on, in turn")
    ap.add_argument("--speed-iterations", type=int, default=10000)
    ap.add_argument("--subsets", type=int, default=5, help="method small: random subsets per data set")
    ap.add_argument("--rows", type=int, default=500, help="method small: rows per subset")
    ap.add_argument("--draws", type=int, default=20, help="random completions whose 90%% intervals are checked")
    ap.add_argument("--json", help="also write the raw results here")
    args = ap.parse_args()
    methods = set(args.methods.split(","))
    results: dict = {}
    speeds: dict = {}

    small: dict = {}

    def record(ds, name, err, secs, coverage=None):
        results.setdefault(ds, {}).setdefault(name, []).append((err, secs, coverage))
        print(f"  {ds:7s} {name:32s} rmse {err:.4f}  {secs:7.2f} s", file=sys.stderr, flush=True)

    for ds in args.datasets.split(","):
        table = read_table(str(Path(args.data) / f"{ds}.csv"))
        kinds = infer_kinds(table)
        print(f"{ds}: {table.n_rows} x {table.n_cols}, kinds {dict((k, kinds.count(k)) for k in set(kinds))}",
              file=sys.stderr, flush=True)
        if "speed" in methods:
            speeds[ds] = speed(table, kinds, args.variants.split(","), args.speed_iterations,
                               [int(t) for t in args.speed_threads.split(",")], args.speed_rounds)
        if "small" in methods:
            for k in range(args.subsets):
                part = subset(table, args.rows, k)
                for name in args.variants.split(","):
                    rep = run_gain(part, args.miss_rate, k, name, args.draws)
                    small.setdefault(ds, {}).setdefault(name, []).append(rep)
                    print(f"  {ds:7s} {args.rows} rows, subset {k}: {name:20s} rmse {rep['rmse']['gain']:.4f}  "
                          f"{rep['fit_seconds']:7.2f} s", file=sys.stderr, flush=True)
        rmse_seeds = args.seeds if methods - {"speed", "small"} else 0  # `speed`/`small` alone: no full-table runs
        for seed in range(rmse_seeds):
            hide = hide_mcar(table, kinds, args.miss_rate, seed)
            x_nan = matrix(table, hide)
            if "gain" in methods or "mean" in methods:
                for variant in args.variants.split(","):
                    t0 = time.perf_counter()
                    rep = run_gain(table, args.miss_rate, seed, variant, args.draws)
                    wall = time.perf_counter() - t0
                    if "gain" in methods:
                        record(ds, f"gantools GAIN ({variant})", rep["rmse"]["gain"], rep["fit_seconds"],
                               rep["interval"])
                    if variant == args.variants.split(",")[0] and "mean" in methods:
                        record(ds, "column mean", rep["rmse"]["mean"], 0.0)
                    print(f"    (evaluate wall {wall:.1f} s)", file=sys.stderr)
            if "ref" in methods and seed < args.ref_seeds:
                filled, secs = plain_gain(x_nan, seed)
                record(ds, "plain PyTorch GAIN loop (reference)", rmse(table, kinds, hide, filled), secs)
            if "knn" in methods:
                t0 = time.perf_counter()
                filled = knn(x_nan)
                record(ds, "KNNImputer (k=5)", rmse(table, kinds, hide, filled), time.perf_counter() - t0)
            if "forest" in methods:
                t0 = time.perf_counter()
                filled = forest(x_nan, seed, args.et_trees, args.et_iter)
                record(ds, f"IterativeImputer(ExtraTrees {args.et_trees}x{args.et_iter})",
                       rmse(table, kinds, hide, filled), time.perf_counter() - t0)

    for ds, times in speeds.items():
        print_speed(ds, times, args.speed_iterations)
    if small:
        print_small(small, args.rows, args.miss_rate, args.draws)
    if args.json:
        raw = {"rmse": results, "speed": {ds: {f"{loop}, {t} thread(s)": secs for (loop, t), secs in times.items()}
                                          for ds, times in speeds.items()},
               "small": {ds: {name: [{k: r[k] for k in ("rmse", "iterations", "hidden_width", "fit_seconds", "interval")}
                                     for r in reps] for name, reps in by.items()} for ds, by in small.items()}}
        Path(args.json).write_text(json.dumps(raw, indent=1))
    if not results:
        return
    print(f"\nRMSE at {args.miss_rate:.0%} MCAR, mean ± std over seeds; time = training (fit) seconds, mean, "
          f"each method on its default threads (gantools GAIN: 1; plain loop: {torch.get_num_threads()}; "
          f"same-thread speed: method 'speed')\n")
    print("| data | method | seeds | RMSE | time (s), mean / min | vs paper GAIN | 90% interval coverage / rank coverage |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for ds, by in results.items():
        print(f"| {ds} | GAIN paper (Yoon et al. 2018) | | {PAPER[ds]:.4f} | | | |")
        for name, runs in by.items():
            errs = np.array([r[0] for r in runs])
            secs = np.array([r[1] for r in runs])
            covs = [r[2] for r in runs if r[2] is not None]
            std = f" ± {errs.std(ddof=1):.4f}" if len(errs) > 1 else ""
            tm = f"{secs.mean():.2f} / {secs.min():.2f}" if secs.any() else "–"
            cov = coverage_cell(covs)
            print(f"| {ds} | {name} | {len(runs)} | {errs.mean():.4f}{std} | {tm} | {errs.mean() / PAPER[ds]:.3f}x | {cov} |")


def coverage_cell(intervals: list[dict]) -> str:
    """Mean plain and rank coverage of interval_coverage() reports, as one table cell."""
    if not intervals:
        return "–"
    return (f"{np.mean([c['coverage'] for c in intervals]):.3f} / "
            f"{np.mean([c['rank_coverage'] for c in intervals]):.3f}")


def print_small(small: dict, rows: int, miss_rate: float, draws: int) -> None:
    """Per data set and variant: RMSE over the subsets, the paired ratio to the first variant,
    the draws' coverage, the chosen iterations and widths, training seconds."""
    print(f"\n{rows}-row random subsets at {miss_rate:.0%} MCAR: RMSE mean ± std over subsets; ratio = mean "
          f"over subsets of this / first variant on the same cells; coverage of {draws} draws' 90% intervals "
          "/ the truth's randomised rank among the draws inside the central 90% (gantools.impute.interval_coverage)\n")
    print("| data | variant | subsets | RMSE | ratio | coverage / rank coverage | iterations | widths | time (s), mean |")
    print("|---|---|---:|---:|---:|---:|---|---|---:|")
    for ds, by in small.items():
        first = np.array([r["rmse"]["gain"] for r in next(iter(by.values()))])
        for name, reps in by.items():
            errs = np.array([r["rmse"]["gain"] for r in reps])
            cov = coverage_cell([r["interval"] for r in reps if r["interval"]])
            print(f"| {ds} | {name} | {len(reps)} | {errs.mean():.4f} ± {errs.std(ddof=1):.4f} | "
                  f"{np.mean(errs / first):.3f} | {cov} | {', '.join(str(r['iterations']) for r in reps)} | "
                  f"{', '.join(str(r['hidden_width']) for r in reps)} | {np.mean([r['fit_seconds'] for r in reps]):.2f} |")


if __name__ == "__main__":
    main()
