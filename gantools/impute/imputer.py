"""Fit GAIN on a table, fill its missing cells, and keep the fitted imputer as a checkpoint.

    from gantools.impute import read_table, fit_imputer, write_table
    t = read_table("holes.csv")
    imp = fit_imputer(t, categorical="auto")
    write_table(imp.impute(t), "filled.csv")
    imp.save("imputer.pt")            # model 'gain'; `gantools info imputer.pt` reads it

Only missing cells change: observed cells keep their text (or array value) exactly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

from gantools.errors import GantoolsError, first_line
from gantools.impute.schema import Column, as_text, check_columns, decode, encode, fit_columns, infer_kinds
from gantools.impute.table import DEFAULT_MISSING, Table
from gantools.log import warn

MODEL_NAME = "gain"


def _params(params=None, **overrides):
    from gantools.impute.params import DEFAULT_VARIANT, GainParams

    if params is None:
        return GainParams.for_variant(overrides.pop("variant", None) or DEFAULT_VARIANT, **overrides)
    return params


@dataclass
class Imputer:
    """A fitted GAIN imputer: the column schema, the hyper-parameters and the networks."""

    columns: list[Column]
    params: object  # GainParams
    G: object
    D: object = None
    seed: int = 0
    missing_values: tuple = DEFAULT_MISSING
    source: str = ""
    rows: int = 0
    seconds: float = 0.0
    opt_state: dict = field(default_factory=dict)
    metrics: list = field(default_factory=list)
    iterations: int = 0  # the iterations G was trained for (chosen on the validation cells, or fixed)
    validation: dict = field(default_factory=dict)  # rate, cells, rmse, residuals, history
    members: list = field(default_factory=list)  # Gs of other widths whose outputs G's is averaged with
    weights: list = field(default_factory=lambda: [1.0])  # of G's outputs and the members', in the average

    @property
    def cat_sizes(self) -> list[int]:
        return [len(c.categories) for c in self.columns if c.kind == "categorical"]

    @property
    def dim(self) -> int:
        return sum(c.kind in ("numeric", "integer") for c in self.columns) + sum(self.cat_sizes)

    def _outputs(self, table: Table, seeds: list[int], device: str):
        """G's encoded output for every cell of `table`, once per seed of its input noise."""
        import torch

        from gantools.impute.gain import generate

        enc = encode(table, self.columns)
        for name, count in enc.unknown.items():
            warn(f"{table.source}: column {name!r}: {count} value(s) the model was not fitted on; "
                 "they are kept, and the model reads them as missing")
        dev = torch.device(device)
        G = [g.to(dev) for g in (self.G, *self.members)]
        x, m = torch.from_numpy(enc.x).to(dev), torch.from_numpy(enc.m).to(dev)
        for s in seeds:
            yield generate(G, x, m, seed=s, weights=self.weights).cpu().numpy()

    def generate(self, table: Table, seed: int | None = None, device: str = "cpu") -> dict:
        """Decoded generator values for every cell of every imputed column (observed ones too)."""
        (g,) = self._outputs(table, [self.seed if seed is None else seed], device)
        return decode(g, self.columns)

    def generate_draws(self, table: Table, draws: int, seed: int | None = None, device: str = "cpu") -> list[dict]:
        """`draws` decoded random completions (multiple imputation): G's output with fresh input noise,
        each numeric value replaced by the true value of a validation cell whose G value is near its
        own (predictive mean matching), each categorical value drawn from G's probabilities."""
        residuals, predictions = self.validation.get("residuals"), self.validation.get("predictions")
        if residuals is None or predictions is None:
            raise GantoolsError("--draws needs the validation cells' values, and this imputer has none "
                                "(fitted with --validation-rate 0, or saved before gantools kept them)")
        s = self.seed if seed is None else seed
        outs = self._outputs(table, [s + k for k in range(draws)], device)
        return [decode(_draw(g, predictions, residuals, self.cat_sizes, np.random.default_rng([s, k])), self.columns)
                for k, g in enumerate(outs)]

    def impute(self, table: Table, seed: int | None = None, device: str = "cpu") -> Table:
        """`table` with its missing cells filled (ignored columns untouched)."""
        return self._fill(table, self.generate(table, seed, device))

    def impute_draws(self, table: Table, draws: int, seed: int | None = None, device: str = "cpu") -> list[Table]:
        """`draws` completed copies of `table` (see generate_draws); observed cells as read in each."""
        return [self._fill(table, values) for values in self.generate_draws(table, draws, seed, device)]

    def _fill(self, table: Table, values: dict) -> Table:
        fills = {}
        for j, col in enumerate(self.columns):
            if col.kind == "ignored":
                continue
            rows = np.flatnonzero(table.missing[:, j])
            if not len(rows):
                continue
            v = values[j]
            picked = [v[i] for i in rows] if isinstance(v, list) else v[rows]
            fills[j] = (rows, as_text(col, picked) if table.text is not None else picked)
        return table.filled(fills)

    # -- checkpoint -------------------------------------------------------------------
    def to_checkpoint(self) -> dict:
        """A gantools checkpoint (model 'gain'): hparams, the table schema in `data`, G and D."""
        from gantools.checkpoint import new_checkpoint

        data = {
            "kind": "table",
            "dim": self.dim,
            "n_num": self.dim - sum(self.cat_sizes),
            "cat_sizes": self.cat_sizes,
            "columns": [c.as_dict() for c in self.columns],
            "missing_values": list(self.missing_values),
            "rows": self.rows,
            "source": self.source,
            "value_range": [0.0, 1.0],
            "num_classes": 0,
            "class_names": [],
        }
        state = {"G": _cpu_state(self.G), "D": _cpu_state(self.D) if self.D is not None else None}
        if self.members:
            state["G_members"] = [_cpu_state(g) for g in self.members]
        state.update({k: v for k, v in self.opt_state.items()})
        return new_checkpoint(MODEL_NAME, self.params.as_dict(), data, state,
                              step=int(self.iterations or self.params.iterations),
                              config={"seed": self.seed, "fit_seconds": round(self.seconds, 3),
                                      "validation": self.validation},
                              metrics=list(self.metrics))

    def save(self, path: str | os.PathLike, overwrite: bool = False) -> None:
        """Write the imputer as a `gain` checkpoint; an existing file only with `overwrite`."""
        from gantools.checkpoint import save_checkpoint

        save_checkpoint(self.to_checkpoint(), path, overwrite)

    @classmethod
    def from_checkpoint(cls, ckpt: dict, path: str = "<checkpoint>") -> "Imputer":
        from gantools.impute.gain import GainParams, build_networks

        if ckpt.get("model") != MODEL_NAME:
            raise GantoolsError(f"{path}: a {ckpt.get('model')!r} checkpoint, not a GAIN imputer "
                                f"(model '{MODEL_NAME}', written by `gantools impute --save-model`)")
        hp, data, config = ckpt["hparams"], ckpt["data"], ckpt.get("config", {})
        try:
            params = GainParams(**hp)
            columns = [Column.from_dict(c) for c in data["columns"]]
            G, D = build_networks(hp, data)
            G.load_state_dict(ckpt["state"]["G"])
            members = []  # the other widths' Gs, averaged with G: [width multiplier, iterations, weight]
            ensemble = (config.get("validation") or {}).get("ensemble", [[None, None, 1.0]])
            for (mult, _, _), sd in zip(ensemble[1:], ckpt["state"].get("G_members", []), strict=True):
                members.append(build_networks(dict(hp, hidden=None, hidden_mult=mult), data)[0])
                members[-1].load_state_dict(sd)
            if ckpt["state"].get("D") is not None:
                D.load_state_dict(ckpt["state"]["D"])
        except (KeyError, TypeError, RuntimeError, ValueError) as e:
            first = first_line(e)
            raise GantoolsError(f"{path}: damaged GAIN checkpoint ({first})") from None
        return cls(columns=columns, params=params, G=G, D=D, seed=int(config.get("seed", 0)),
                   iterations=int(ckpt.get("step", 0)), validation=dict(config.get("validation") or {}),
                   missing_values=tuple(data.get("missing_values", DEFAULT_MISSING)),
                   source=data.get("source", ""), rows=int(data.get("rows", 0)), metrics=list(ckpt.get("metrics", [])),
                   members=members, weights=[float(e[2]) for e in ensemble])

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Imputer":
        from gantools.checkpoint import load_checkpoint

        return cls.from_checkpoint(load_checkpoint(path), str(path))

    def check(self, table: Table, path: str = "the model") -> None:
        """Raise GantoolsError when `table` does not have this imputer's columns."""
        check_columns(table, self.columns, path)


def _draw(g: np.ndarray, predictions: list[list[float]], residuals: list[list[float]], cat_sizes: list[int],
          rng: np.random.Generator) -> np.ndarray:
    """One random completion of G's encoded output `g`. Each numeric entry takes the true value of a
    held-out cell (of any numeric column) drawn from the 5% (at least 50, at most half) whose G values
    are nearest its own: predictive mean matching (R mice's `pmm`, with the held-out cells as donors), so the
    draws keep the values' atoms (a sparse column's zeros) and their spread at that G value; adding a
    neighbour's error to G's value instead smeared the atoms and gave Spam 85% rank coverage. A one-hot
    block is drawn from its probabilities."""
    out = g.astype(np.float64)
    n = len(g)
    values = np.concatenate([[], *predictions])
    truths = np.clip(values + np.concatenate([[], *residuals]), 0.0, 1.0)  # both stored to 4 decimals
    if len(values):
        order = np.argsort(values, kind="stable")
        values, truths = values[order], truths[order]
        near = max(1, min(max(50, len(values) // 20), len(values) // 2))  # a small pool: its nearer half
        for k in range(len(residuals)):
            start = np.clip(np.searchsorted(values, out[:, k]) - near // 2, 0, len(values) - near)
            out[:, k] = truths[start + rng.integers(0, near, n)]
    start = len(residuals)
    for size in cat_sizes:
        p = out[:, start:start + size]
        pick = (rng.random((n, 1)) > np.cumsum(p / p.sum(1, keepdims=True), 1)).sum(1).clip(0, size - 1)
        out[:, start:start + size] = np.eye(size)[pick]
        start += size
    return out


def _cpu_state(module) -> dict:
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def check_missingness(table: Table, kinds: list[str]) -> None:
    """More than half of all cells missing is an error; a column more than half missing, or rows
    with no observed cell, a warning."""
    cols = [j for j, k in enumerate(kinds) if k != "ignored"]
    if not cols:
        raise GantoolsError(f"{table.source}: every column is ignored: nothing to impute")
    miss = table.missing[:, cols]
    frac = float(miss.mean())
    if frac > 0.5:
        raise GantoolsError(f"{table.source}: {100 * frac:.0f}% of the cells are missing (more than half): "
                            "too little observed data to learn from")
    sparse = [table.names[j] for j, f in zip(cols, miss.mean(0)) if f > 0.5]
    if sparse:
        shown = ", ".join(repr(s) for s in sparse[:10]) + (", ..." if len(sparse) > 10 else "")
        warn(f"{table.source}: column(s) {shown} more than half missing: their imputations lean on few values")
    empty_rows = int(miss.all(1).sum())
    if empty_rows:
        warn(f"{table.source}: {empty_rows} row(s) with no observed cell: filled from the model alone")


def fit_imputer(table: Table, categorical: str | None = None, ignore: str | None = None, params=None,
                seed: int = 0, device: str = "cpu", kinds: list[str] | None = None,
                progress: Callable[[int, int], None] | None = None,
                missing_values: tuple = DEFAULT_MISSING, **overrides) -> Imputer:
    """Type the columns, encode the table and train GAIN on it (seeded).

    params: a GainParams (default: the "gantools" variant; variant="paper" is GAIN as published;
    `overrides` such as iterations=, alpha=, batch_size=, hint_rate= change it). kinds: the column kinds, when already decided.
    """
    import torch

    from gantools.impute.gain import fit

    params = _params(params, **overrides)
    kinds = kinds or infer_kinds(table, categorical, ignore)
    check_missingness(table, kinds)
    columns = fit_columns(table, kinds)
    enc = encode(table, columns)
    dev = torch.device(device)
    res = fit(torch.from_numpy(enc.x).to(dev), torch.from_numpy(enc.m).to(dev), enc.n_num, enc.cat_sizes,
              params, seed=seed, progress=progress)
    validation = dict(res.validation, history=res.history) if res.validation else {}
    if "hidden_mult" in validation:  # the width chosen on the validation cells
        params = replace(params, hidden_mult=validation["hidden_mult"])
    return Imputer(columns=columns, params=params, G=res.G, D=res.D, members=res.members, weights=res.weights,
                   seed=seed, source=table.source,
                   missing_values=tuple(missing_values),
                   rows=table.n_rows, seconds=res.seconds, opt_state=res.opt_state,
                   metrics=[{"step": res.iterations, "fit_seconds": round(res.seconds, 3)}],
                   iterations=res.iterations, validation=validation)
