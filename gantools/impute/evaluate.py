"""How well an imputer fills holes: hide observed cells at random, impute, compare.

RMSE is the GAIN paper's (and its authors' `rmse_loss`): every numeric column min-max normalised
with the range of its observed values in the original table (with the authors' 1e-6), the squared
errors summed over the hidden cells only, divided by their count, square-rooted. Column-mean
imputation is scored on the same cells beside it; both are decoded alike (integer columns
rounded). Categorical columns are scored by accuracy, beside the column's mode.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from gantools.impute.schema import RANGE_EPS, fit_columns, infer_kinds, layout
from gantools.impute.table import Table


def hide_mcar(table: Table, kinds: list[str], rate: float, seed: int = 0) -> np.ndarray:
    """Hide each observed cell of the imputed columns with probability `rate` (seeded); a column
    keeps at least one observed cell."""
    rng = np.random.default_rng(seed)
    hide = (rng.random(table.missing.shape) < rate) & ~table.missing
    for j, k in enumerate(kinds):
        if k == "ignored":
            hide[:, j] = False
        elif not (~table.missing[:, j] & ~hide[:, j]).any():
            hide[np.flatnonzero(hide[:, j])[0], j] = False
    return hide


def mean_imputation(table: Table, columns) -> dict:
    """The baseline: each numeric column's observed mean (rounded for integer columns), each
    categorical column's most frequent label."""
    num, cat = layout(columns)
    out = {}
    for j in num:
        v = table.parsed(j)[0]
        mean = float(np.nanmean(v))
        out[j] = round(mean) if columns[j].kind == "integer" else mean
    for j in cat:
        cells = table.cells(j)
        obs = np.flatnonzero(~table.missing[:, j])
        labels = [cells[i] for i in obs] if cells is not None else list(np.asarray(table.array[obs, j], float))
        uniq, counts = np.unique(np.asarray(labels, dtype=object if cells is not None else float), return_counts=True)
        out[j] = uniq[int(counts.argmax())]
    return out


def scaled_sq_errors(table: Table, j: int, column, hide: np.ndarray, values) -> np.ndarray:
    """Squared errors of numeric column `j`'s imputations on its hidden cells, each scaled by the
    column's observed range: the terms of the GAIN paper's RMSE. `values`: the column's imputed
    numbers for every row (or one number for all, as column means are)."""
    rows = np.flatnonzero(hide[:, j])
    guess = values[rows] if np.ndim(values) else values
    return ((guess - table.parsed(j)[0][rows]) / (column.hi - column.lo + RANGE_EPS)) ** 2


def interval_coverage(table: Table, num: list[int], hide: np.ndarray, draws: list[dict], level: float = 0.9,
                      seed: int = 0) -> dict:
    """How often a hidden numeric cell's true value lies in its draws' central `level` interval, and
    the intervals' mean width (min-max units). The bounds are the draws' quantiles at Weibull
    plotting positions k/(M+1), so that M exchangeable draws and the truth give `level` coverage
    in expectation (with 20 draws, 90%: nearly from the smallest draw to the largest).

    A column with a point mass (Spam's many exact zeros) covers a truth at the mass whenever the
    interval reaches it, so there `coverage` exceeds `level` even for calibrated draws. Hence also
    `rank_coverage`: the truth's rank among the draws, ties broken at random, (count below + U x
    (ties + 1)) / (M + 1), inside the central `level`: exactly `level` in expectation for exchangeable
    draws, atoms or not (the randomised PIT of Czado, Gneiting and Held 2009); and `at_atom`, the share
    of cells whose truth equals one of their draws."""
    rng = np.random.default_rng(seed)
    inside = ranked = ties = total = 0
    width = 0.0
    tail = (1.0 - level) / 2
    for j in num:
        rows = np.flatnonzero(hide[:, j])
        if not len(rows):
            continue
        v = np.stack([np.asarray(d[j], np.float64)[rows] for d in draws])
        lo, hi = np.quantile(v, [tail, 1.0 - tail], axis=0, method="weibull")
        truth = table.parsed(j)[0][rows]
        inside += int(((truth >= lo) & (truth <= hi)).sum())
        equal = (v == truth).sum(0)
        u = ((v < truth).sum(0) + rng.random(len(rows)) * (equal + 1)) / (len(v) + 1)
        ranked += int(((u >= tail) & (u <= 1.0 - tail)).sum())
        ties += int((equal > 0).sum())
        total += len(rows)
        vals = table.parsed(j)[0]
        width += float(((hi - lo) / (np.nanmax(vals) - np.nanmin(vals) + RANGE_EPS)).sum())
    share = (lambda k: k / total if total else None)  # noqa: E731
    return {"level": level, "draws": len(draws), "cells": total, "coverage": share(inside),
            "rank_coverage": share(ranked), "at_atom": share(ties), "mean_width": share(width)}


def evaluate(table: Table, miss_rate: float = 0.2, seed: int = 0, categorical: str | None = None,
             ignore: str | None = None, imputer=None, device: str = "cpu",
             progress: Callable[[int, int], None] | None = None, draws: int | None = None, **params) -> dict:
    """Hide `miss_rate` of the observed cells (MCAR, seeded), impute them with GAIN (fitted here on
    the rest, or the given `imputer`) and with column means; return the scores as a dict. With
    `draws`, also the coverage of the draws' 90% intervals on the hidden numeric cells."""
    from gantools.impute.imputer import fit_imputer

    if not 0.0 < miss_rate < 1.0:
        from gantools.errors import UsageError

        raise UsageError(f"--miss-rate {miss_rate}: expected a fraction between 0 and 1")
    if imputer is not None:
        imputer.check(table)
        kinds = [c.kind for c in imputer.columns]
    else:
        kinds = infer_kinds(table, categorical, ignore)
    ref = fit_columns(table, kinds)  # the observed columns' ranges, for the RMSE
    hide = hide_mcar(table, kinds, miss_rate, seed)
    masked = table.with_hidden(hide)
    if imputer is None:
        imputer = fit_imputer(masked, kinds=kinds, seed=seed, device=device, progress=progress, **params)
    values = imputer.generate(masked, device=device)
    base = mean_imputation(masked, fit_columns(masked, kinds))
    num, cat = layout(ref)
    sq_gain = sq_mean = 0.0
    n_num = 0
    per_column = []
    for j in num:
        if not hide[:, j].any():
            continue
        c = ref[j]
        eg = scaled_sq_errors(table, j, c, hide, values[j])
        em = scaled_sq_errors(table, j, c, hide, base[j])
        sq_gain += float(eg.sum())
        sq_mean += float(em.sum())
        n_num += len(eg)
        per_column.append({"name": c.name, "kind": c.kind, "hidden": int(len(eg)),
                           "rmse_gain": float(np.sqrt(eg.mean())), "rmse_mean": float(np.sqrt(em.mean()))})
    ok_gain = ok_mode = n_cat = 0
    for j in cat:
        rows = np.flatnonzero(hide[:, j])
        if not len(rows):
            continue
        cells = table.cells(j)
        truth = [cells[i] if cells is not None else float(table.array[i, j]) for i in rows]
        got = [values[j][i] for i in rows]
        g = sum(a == b for a, b in zip(got, truth))
        md = sum(base[j] == b for b in truth)
        ok_gain, ok_mode, n_cat = ok_gain + g, ok_mode + md, n_cat + len(rows)
        per_column.append({"name": ref[j].name, "kind": "categorical", "hidden": int(len(rows)),
                           "accuracy_gain": g / len(rows), "accuracy_mode": md / len(rows)})
    coverage = interval_coverage(table, num, hide, imputer.generate_draws(masked, draws, device=device)) if draws else None
    return {
        "source": table.source,
        "rows": table.n_rows,
        "miss_rate": miss_rate,
        "seed": seed,
        "hidden_cells": int(hide.sum()),
        "numeric_cells": n_num,
        "categorical_cells": n_cat,
        "rmse": {"gain": float(np.sqrt(sq_gain / n_num)), "mean": float(np.sqrt(sq_mean / n_num))} if n_num else None,
        "accuracy": {"gain": ok_gain / n_cat, "mode": ok_mode / n_cat} if n_cat else None,
        "iterations": int(imputer.iterations or imputer.params.iterations),
        "hidden_width": imputer.params.hidden_width(imputer.dim),
        "validation_rmse": imputer.validation.get("rmse"),
        "fit_seconds": round(float(imputer.seconds), 3),
        "interval": coverage,
        "columns": per_column,
    }
