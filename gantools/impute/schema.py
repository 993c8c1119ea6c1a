"""Column typing and encoding for GAIN: numeric, integer, categorical and ignored columns.

Numeric and integer columns are min-max normalised with the range of their observed values
(the GAIN authors' `normalization`, with its 1e-6); categorical columns become one-hot blocks.
The encoded matrix puts the numeric columns first (table order), then one block per categorical
column, which is the layout `gantools.impute.gain` expects. Nothing here imports torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from gantools.errors import GantoolsError, UsageError
from gantools.impute.table import Table, to_number

KINDS = ("numeric", "integer", "categorical", "ignored")
AUTO_MAX_LEVELS = 10  # --categorical auto: integer columns with at most this many distinct values
RANGE_EPS = 1e-6  # as in the GAIN authors' normalization


@dataclass
class Column:
    """One column's type and what encoding and decoding need.

    lo, hi: the observed range (numeric and integer); categories: the labels in one-hot order
    (cell texts for text tables, numbers for array tables); decimals: digits after the point when
    an imputed number is written as text (None: 6 significant digits); exponent: written as
    1.234e-05 (digits after the point of the mantissa), like the column's own cells.
    """

    name: str
    kind: str
    lo: float = 0.0
    hi: float = 0.0
    categories: list = field(default_factory=list)
    decimals: int | None = None
    exponent: bool = False

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Column":
        return cls(**{k: d[k] for k in ("name", "kind", "lo", "hi", "categories", "decimals", "exponent")
                      if k in d})


def column_indices(spec: str | None, names: list[str], option: str) -> list[int]:
    """Columns named by a comma-separated list of names or 0-based indices."""
    if not spec:
        return []
    out = []
    for tok in (t.strip() for t in spec.split(",")):
        if not tok:
            continue
        if tok in names:
            out.append(names.index(tok))
        elif tok.lstrip("-").isdigit() and 0 <= int(tok) < len(names):
            out.append(int(tok))
        else:
            shown = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")
            raise UsageError(f"{option}: no column {tok!r} (columns: {shown}; or 0-based indices)")
    return sorted(set(out))


def infer_kinds(table: Table, categorical: str | None = None, ignore: str | None = None) -> list[str]:
    """Each column's kind: ignored (--ignore), categorical (named, text, or with `auto` an integer
    column of few values), integer (whole numbers) or numeric.

    A column whose observed cells are at least half numbers and yet holds text is an error naming
    the file, the column, the row and the text.
    """
    ignored = set(column_indices(ignore, table.names, "--ignore"))
    auto = (categorical or "").strip().lower() == "auto"
    named = set() if auto else set(column_indices(categorical, table.names, "--categorical"))
    both = ignored & named
    if both:
        raise UsageError(f"column {table.names[min(both)]!r} is both --ignore'd and --categorical")
    kinds = []
    for j, name in enumerate(table.names):
        if j in ignored:
            kinds.append("ignored")
            continue
        observed = ~table.missing[:, j]
        if not observed.any():
            raise GantoolsError(f"{table.source}: column {name!r} has no observed value "
                                f"(nothing to learn it from; pass it through with --ignore {name})")
        if j in named:
            kinds.append("categorical")
            continue
        vals, bad = table.parsed(j)
        n_bad, n_obs = int(bad.sum()), int(observed.sum())
        if n_bad:
            if 2 * n_bad <= n_obs:  # mostly numbers: the text is junk, not a category
                i = int(np.flatnonzero(bad)[0])
                raise GantoolsError(
                    f"{table.source}: column {name!r} is numeric but row {i + 1} holds "
                    f"{table.text[i][j]!r} (mark missing cells with --missing-values, or declare the "
                    f"column with --categorical {name})")
            kinds.append("categorical")
            continue
        v = vals[observed]
        integral = bool(np.all(v == np.round(v)))
        if auto and integral and len(np.unique(v)) <= AUTO_MAX_LEVELS:
            kinds.append("categorical")
        else:
            kinds.append("integer" if integral else "numeric")
    return kinds


def fit_columns(table: Table, kinds: list[str]) -> list[Column]:
    """The columns' ranges, labels and text formats, from the table's observed cells."""
    cols = []
    for j, (name, kind) in enumerate(zip(table.names, kinds)):
        col = Column(name, kind)
        observed = ~table.missing[:, j]
        if kind != "ignored" and not observed.any():
            raise GantoolsError(f"{table.source}: column {name!r} has no observed value "
                                f"(nothing to learn it from; pass it through with --ignore {name})")
        if kind in ("numeric", "integer"):
            v = table.parsed(j)[0][observed]
            col.lo, col.hi = float(v.min()), float(v.max())
            col.decimals, col.exponent = _decimals(table, j, observed)
        elif kind == "categorical":
            col.categories = sorted(set(_labels(table, j, observed)), key=_label_order)
        cols.append(col)
    return cols


def _decimals(table: Table, j: int, observed: np.ndarray) -> tuple[int | None, bool]:
    """(digits after the point, exponent notation) of the column's observed texts."""
    cells = table.cells(j)
    if cells is None:
        return None, False
    dec, exp = 0, False
    for c in (cells[i].strip() for i in np.flatnonzero(observed)):
        if "e" in c or "E" in c:
            exp = True
            c = c[:c.lower().index("e")]
        if "." in c:
            dec = max(dec, len(c) - c.index(".") - 1)
    return dec, exp


def _labels(table: Table, j: int, rows: np.ndarray) -> list:
    cells = table.cells(j)
    if cells is None:
        return [float(v) for v in np.asarray(table.array[:, j], np.float64)[rows]]
    return [cells[i] for i in np.flatnonzero(rows)]


def _label_order(label):
    if isinstance(label, str):
        v = to_number(label)
        return (v is None, v if v is not None else 0.0, label)
    return (False, float(label), "")


@dataclass
class Encoded:
    """A table encoded for GAIN: x (rows, dim; 0 where missing) and mask m, both float32."""

    x: np.ndarray
    m: np.ndarray
    n_num: int
    cat_sizes: list[int]
    unknown: dict  # column name -> count of labels not among the column's categories


def layout(columns: list[Column]) -> tuple[list[int], list[int]]:
    """(numeric column indices, categorical column indices) in encoded order."""
    num = [j for j, c in enumerate(columns) if c.kind in ("numeric", "integer")]
    cat = [j for j, c in enumerate(columns) if c.kind == "categorical"]
    return num, cat


def encode(table: Table, columns: list[Column]) -> Encoded:
    """Min-max normalise the numeric columns, one-hot the categorical ones; mask 0 where missing."""
    num, cat = layout(columns)
    n = table.n_rows
    sizes = [len(columns[j].categories) for j in cat]
    d = len(num) + sum(sizes)
    x = np.zeros((n, d), np.float32)
    m = np.zeros((n, d), np.float32)
    for k, j in enumerate(num):
        c = columns[j]
        vals, bad = table.parsed(j)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise GantoolsError(f"{table.source}: column {c.name!r} is numeric but row {i + 1} holds "
                                f"{table.text[i][j]!r}")
        obs = ~np.isnan(vals)
        x[:, k] = np.where(obs, (vals - c.lo) / (c.hi - c.lo + RANGE_EPS), 0.0)
        m[:, k] = obs
    unknown = {}
    start = len(num)
    for j, size in zip(cat, sizes):
        c = columns[j]
        index = {lab: i for i, lab in enumerate(c.categories)}
        observed = ~table.missing[:, j]
        labels = _labels(table, j, observed)
        codes = np.array([index.get(lab, -1) for lab in labels], np.int64)
        rows = np.flatnonzero(observed)
        if (codes < 0).any():
            unknown[c.name] = int((codes < 0).sum())
        ok = codes >= 0
        x[rows[ok], start + codes[ok]] = 1.0
        m[rows[ok], start:start + size] = 1.0
        start += size
    return Encoded(x, m, len(num), sizes, unknown)


def decode(g: np.ndarray, columns: list[Column]) -> dict[int, np.ndarray | list]:
    """The generator's encoded output back to column values: numbers (integer columns rounded)
    and category labels."""
    num, cat = layout(columns)
    out: dict[int, np.ndarray | list] = {}
    for k, j in enumerate(num):
        c = columns[j]
        v = g[:, k].astype(np.float64) * (c.hi - c.lo + RANGE_EPS) + c.lo
        out[j] = np.round(v) if c.kind == "integer" else v
    start = len(num)
    for j in cat:
        c = columns[j]
        size = len(c.categories)
        codes = g[:, start:start + size].argmax(1)
        out[j] = [c.categories[i] for i in codes]
        start += size
    return out


def as_text(column: Column, values) -> list[str]:
    """Imputed values as cell texts, in the column's own style (decimals, whole numbers)."""
    if column.kind == "categorical":
        return [str(v) for v in values]
    out = []
    for v in values:
        v = float(v) + 0.0
        if column.exponent:
            out.append(f"{v:.{column.decimals or 0}e}")
        elif column.kind == "integer" and not column.decimals:
            out.append(str(int(round(v))))
        elif column.decimals is None:
            out.append(f"{v:.6g}")
        else:
            s = f"{v:.{column.decimals}f}"
            out.append("0" + s[2:] if s.startswith("-0") and float(s) == 0 else s)
    return out


def check_columns(table: Table, columns: list[Column], source: str) -> None:
    """A table to be imputed with a saved model must have the model's columns."""
    names = [c.name for c in columns]
    if len(names) != table.n_cols:
        raise GantoolsError(f"{table.source}: {table.n_cols} columns, but the model {source} was fitted "
                            f"on {len(names)}")
    if table.header and table.names != names:
        diff = next(i for i, (a, b) in enumerate(zip(table.names, names)) if a != b)
        raise GantoolsError(f"{table.source}: column {diff} is {table.names[diff]!r}, but the model "
                            f"{source} has {names[diff]!r} there")
