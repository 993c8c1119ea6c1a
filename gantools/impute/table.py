"""Tables in and out for `gantools impute`: CSV/TSV, .npy, .npz, .h5, and CSV on stdin.

Text tables keep every cell's text exactly as read, so that writing them back changes only the
cells that were missing. Array tables keep the array (NaN = missing) and change only the
missing entries. Nothing here imports torch.
"""

from __future__ import annotations

import csv
import io
import math
import os
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from gantools.errors import GantoolsError, UsageError, first_line
from gantools.fsutil import atomic_path, check_target

DEFAULT_MISSING = ("", "NA", "NaN", "null", "?")
TEXT_FORMATS = ("csv", "tsv")
ARRAY_FORMATS = ("npy", "npz", "h5")
_SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".txt": "csv", ".npy": "npy", ".npz": "npz",
             ".h5": "h5", ".hdf5": "h5"}


def parse_missing_values(values: list[str] | None) -> tuple[str, ...]:
    """The missing-cell markers: each option value is split on commas; None gives the defaults."""
    if not values:
        return DEFAULT_MISSING
    out: list[str] = []
    for v in values:
        out.extend(s.strip() for s in v.split(","))
    return tuple(dict.fromkeys(out))


def format_of(path: str) -> str:
    """The table format named by a path's suffix ('-' is CSV on stdin)."""
    if path == "-":
        return "csv"
    fmt = _SUFFIXES.get(Path(path).suffix.lower())
    if fmt is None:
        raise UsageError(f"{path}: unknown table format (expected .csv, .tsv, .npy, .npz, .h5 or -)")
    return fmt


def to_number(text: str) -> float | None:
    """The finite number a cell's text spells, or None (text, 'inf', '1_000' are not numbers)."""
    if "_" in text:
        return None
    try:
        v = float(text)
    except ValueError:
        return None
    return v if math.isfinite(v) else None


@dataclass
class Table:
    """A table read from a file: column names, cells (text or an array) and the missing mask.

    `text` holds the rows of cell texts of a CSV/TSV table (header excluded); `array` the numbers
    of an array table. `missing[i, j]` is True where cell (i, j) is missing.
    """

    source: str
    fmt: str
    names: list[str]
    missing: np.ndarray
    text: list[list[str]] | None = None
    array: np.ndarray | None = None
    header: bool = False
    header_cells: list[str] | None = None  # the header row's texts, written back as they were
    delimiter: str = ","
    lineterminator: str = "\n"
    bom: bool = False
    key: str | None = None  # the array's name in a .npz / .h5 file
    shape: tuple = ()  # the array's original shape (a 1-D .npy is one column)
    others: dict = field(default_factory=dict)  # the file's other arrays, written back as they were
    _parsed: dict = field(default_factory=dict, repr=False)

    @property
    def n_rows(self) -> int:
        return int(self.missing.shape[0])

    @property
    def n_cols(self) -> int:
        return int(self.missing.shape[1])

    def cells(self, j: int) -> list[str] | None:
        """Column j's cell texts (text tables), else None."""
        return None if self.text is None else [row[j] for row in self.text]

    def parsed(self, j: int) -> tuple[np.ndarray, np.ndarray]:
        """(numbers, bad) for column j: the values (NaN where missing or not a number) and a mask of
        the observed cells whose text is not a number."""
        if j not in self._parsed:
            if self.text is None:
                vals = np.asarray(self.array[:, j], dtype=np.float64).copy()
                bad = np.zeros(self.n_rows, bool)
            else:
                nums = [to_number(c) for c in self.cells(j)]
                bad = np.array([v is None for v in nums], bool)
                vals = np.array([np.nan if v is None else v for v in nums], np.float64)
            self._parsed[j] = (vals, bad)
        vals, bad = self._parsed[j]
        miss = self.missing[:, j]
        return np.where(miss, np.nan, vals), bad & ~miss

    def with_hidden(self, hide: np.ndarray) -> "Table":
        """A copy in which the cells where `hide` is True are missing too (the evaluation's holes)."""
        t = replace(self, missing=self.missing | hide, _parsed=self._parsed)
        return t

    def filled(self, fills: dict[int, tuple[np.ndarray, list]]) -> "Table":
        """A copy with the given cells filled: fills[j] = (row indices, new values) — texts for text
        tables, numbers for array tables. Only cells that are missing may be filled."""
        if self.text is not None:
            rows = [list(r) for r in self.text]
            for j, (idx, values) in fills.items():
                for i, v in zip(idx.tolist(), values):
                    rows[i][j] = v
            return replace(self, text=rows, missing=self.missing.copy(), _parsed={})
        arr = self.array.copy()
        for j, (idx, values) in fills.items():
            arr[idx, j] = np.asarray(values, dtype=np.float64).astype(arr.dtype)
        return replace(self, array=arr, missing=self.missing.copy(), _parsed={})


# ------------------------------------------------------------------------------------ reading


def read_table(path: str, missing_values: tuple[str, ...] = DEFAULT_MISSING,
               header: bool | None = None, stdin=None) -> Table:
    """Read a table; `path` '-' reads CSV (or TSV, by its first line) from `stdin` (sys.stdin).

    header: True/False, or None to detect it (a first row with no numbers, over numeric columns or
    of names not repeated below). Raises GantoolsError naming the file on an unreadable table.
    """
    fmt = format_of(path)
    if path != "-" and not os.path.isfile(path):
        raise GantoolsError(f"{path}: no such file")
    if fmt in TEXT_FORMATS:
        if path == "-":
            stream = stdin if stdin is not None else sys.stdin
            raw = stream.buffer.read() if hasattr(stream, "buffer") else stream.read()
        else:
            raw = Path(path).read_bytes()
        if isinstance(raw, str):
            raw = raw.encode()
        return _read_text(raw, "<stdin>" if path == "-" else path, fmt, missing_values, header)
    return _read_array(path, fmt, missing_values)


def _marker_set(missing_values: tuple[str, ...]) -> set[str]:
    return {m.strip().lower() for m in missing_values}


def _read_text(raw: bytes, name: str, fmt: str, missing_values, header: bool | None) -> Table:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise GantoolsError(f"{name}: not UTF-8 text (byte {e.start})") from None
    bom = text.startswith("\ufeff")
    text = text[1:] if bom else text
    if not text.strip():
        raise GantoolsError(f"{name}: empty file (no rows)")
    first_line = text.split("\n", 1)[0]
    lineterminator = "\r\n" if first_line.endswith("\r") else "\n"
    if fmt == "csv" and "\t" in first_line and "," not in first_line:
        fmt = "tsv"
    delimiter = "\t" if fmt == "tsv" else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    rows: list[list[str]] = []
    lines: list[int] = []
    try:
        for row in reader:
            rows.append(row)
            lines.append(reader.line_num)
    except csv.Error as e:
        raise GantoolsError(f"{name}: line {reader.line_num}: not valid {fmt.upper()} ({e})") from None
    while rows and rows[-1] == []:  # blank lines at the end
        rows.pop()
        lines.pop()
    ncols = max(len(rows[0]), 1)
    for k, row in enumerate(rows):
        if row == [] and ncols == 1:
            rows[k] = [""]
        elif len(row) != ncols:
            raise GantoolsError(f"{name}: line {lines[k]} has {len(row)} fields, expected {ncols} "
                                f"(as on line {lines[0]})")
    markers = _marker_set(missing_values)
    if header is None:
        header = _looks_like_header(rows, markers)
    names = [c.strip() or str(j) for j, c in enumerate(rows[0])] if header else [str(j) for j in range(ncols)]
    body = rows[1:] if header else rows
    if not body:
        raise GantoolsError(f"{name}: no data rows (only a header)")
    missing = np.array([[c.strip().lower() in markers for c in row] for row in body], bool)
    return Table(source=name, fmt=fmt, names=names, missing=missing, text=body, header=header,
                 header_cells=rows[0] if header else None, delimiter=delimiter, lineterminator=lineterminator, bom=bom)


def _looks_like_header(rows: list[list[str]], markers: set[str]) -> bool:
    """A first row is a header when none of its cells is a number, and it either stands over a
    numeric column or names that recur nowhere below them."""
    first, rest = rows[0], rows[1:]
    if any(to_number(c) is not None for c in first):
        return False
    if not rest:
        return True
    for j, c in enumerate(first):
        below = [r[j] for r in rest if r[j].strip().lower() not in markers]
        if c.strip().lower() not in markers and below and all(to_number(v) is not None for v in below):
            return True
    if any(c.strip().lower() in markers for c in first) or len(set(first)) != len(first):
        return False
    return all(c not in {r[j] for r in rest} for j, c in enumerate(first))


def _read_array(path: str, fmt: str, missing_values) -> Table:
    others: dict = {}
    key = None
    try:
        if fmt == "npy":
            arr = np.load(path, allow_pickle=False)
        elif fmt == "npz":
            with np.load(path, allow_pickle=False) as z:
                data = {k: z[k] for k in z.files}
            key = _pick_key(path, {k: v.shape for k, v in data.items()})
            arr = data.pop(key)
            others = data
        else:
            import h5py

            with h5py.File(path, "r") as f:
                shapes = {k: f[k].shape for k in f.keys() if isinstance(f[k], h5py.Dataset)}
                key = _pick_key(path, shapes)
                arr = f[key][()]
    except GantoolsError:
        raise
    except (OSError, ValueError, EOFError) as e:
        first = first_line(e)
        raise GantoolsError(f"{path}: not a readable .{fmt} table ({first})") from None
    if arr.dtype.kind not in "biuf":
        raise GantoolsError(f"{path}: the array holds {arr.dtype} values; impute reads numbers from arrays "
                            "(use a CSV for text columns)")
    shape = arr.shape
    if arr.ndim == 1:
        arr = arr.reshape(-1, 1)
    if arr.ndim != 2:
        raise GantoolsError(f"{path}: expected a 2-D array (rows x columns), got shape {tuple(shape)}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise GantoolsError(f"{path}: empty table (shape {tuple(shape)})")
    numeric_markers = [v for v in (to_number(m) for m in missing_values) if v is not None]
    values = arr.astype(np.float64)
    missing = np.isnan(values) if arr.dtype.kind == "f" else np.zeros(arr.shape, bool)
    for v in numeric_markers:
        missing |= values == v
    return Table(source=path, fmt=fmt, names=[str(j) for j in range(arr.shape[1])], missing=missing,
                 array=arr, key=key, shape=shape, others=others)


def _pick_key(path: str, shapes: dict) -> str:
    if "x" in shapes:
        return "x"
    two_d = [k for k, s in shapes.items() if len(s) == 2]
    if len(two_d) == 1:
        return two_d[0]
    raise GantoolsError(f"{path}: no array 'x' and {'no' if not two_d else 'several'} 2-D arrays to take "
                        f"instead (has: {', '.join(shapes) or 'nothing'})")


# ------------------------------------------------------------------------------------ writing

DRAW_COLUMNS = (".imp", ".id")  # R mice's complete(imp, "long"): draw number, then row number, from 1


def stack_draws(tables: list[Table]) -> Table:
    """Completed copies of one table as one table: text tables in R mice's long format (columns
    `.imp` and `.id` first, the draws one after another), arrays stacked on a new first axis."""
    first = tables[0]
    if first.text is not None:
        rows = [[str(k), str(i)] + row for k, t in enumerate(tables, 1) for i, row in enumerate(t.text, 1)]
        header = list(DRAW_COLUMNS) + list(first.header_cells or []) if first.header else None
        missing = np.zeros((len(rows), first.n_cols + 2), bool)
        return replace(first, text=rows, header_cells=header, names=list(DRAW_COLUMNS) + first.names,
                       missing=missing, _parsed={})
    arr = np.stack([t.array.reshape(t.shape) for t in tables])
    return replace(first, array=arr, shape=arr.shape, missing=np.zeros((0, first.n_cols), bool), _parsed={})



def output_format(table: Table, out: str | None, stdout=None) -> str:
    """Check that `out` is in the input's format (tables are written as they were read) and that
    binary tables do not go to a terminal (`stdout`: default sys.stdout)."""
    if out in (None, "-"):
        if table.fmt in ("npz", "h5"):
            raise UsageError(f"{table.source}: a .{table.fmt} table is written to a file: give -o OUT.{table.fmt}")
        if table.text is None and (stdout if stdout is not None else sys.stdout).isatty():
            raise UsageError(f"stdout is a terminal: give -o OUT.{table.fmt} for the .{table.fmt} table (or pipe it)")
        return table.fmt
    fmt = _SUFFIXES.get(Path(out).suffix.lower())
    same = fmt == table.fmt or (fmt in TEXT_FORMATS and table.fmt in TEXT_FORMATS)
    if fmt is not None and not same:
        raise UsageError(f"{out}: the output is written in the input's format (.{table.fmt}), not .{fmt}")
    return table.fmt


def table_bytes(table: Table) -> bytes:
    """A text or .npy table as the bytes of its file."""
    if table.text is not None:
        buf = io.StringIO(newline="")
        if table.bom:
            buf.write("\ufeff")
        w = csv.writer(buf, delimiter=table.delimiter, lineterminator=table.lineterminator)
        if table.header:
            w.writerow(table.header_cells)
        w.writerows(table.text)
        return buf.getvalue().encode("utf-8")
    buf = io.BytesIO()
    np.save(buf, table.array.reshape(table.shape), allow_pickle=False)
    return buf.getvalue()


def write_table(table: Table, out: str | None, stdout=None, overwrite: bool = False) -> None:
    """Write `table` to `out` (None or '-': stdout) atomically, in its own format; an existing file
    is refused unless `overwrite`, and the table's own source file always."""
    output_format(table, out, stdout)
    if out in (None, "-"):
        stream = stdout if stdout is not None else sys.stdout
        data = table_bytes(table)
        if hasattr(stream, "buffer"):
            stream.flush()
            stream.buffer.write(data)
            stream.buffer.flush()
        else:
            stream.write(data.decode("utf-8"))
            stream.flush()
        return
    check_target(out, overwrite, inputs=[table.source])
    with atomic_path(out, overwrite) as tmp:
        if table.fmt in ("csv", "tsv", "npy"):
            tmp.write_bytes(table_bytes(table))
        elif table.fmt == "npz":
            with open(tmp, "wb") as f:
                np.savez(f, **{table.key: table.array.reshape(table.shape)}, **table.others)
        else:
            import h5py

            with h5py.File(table.source, "r") as src, h5py.File(tmp, "w") as dst:
                for k in src.keys():
                    if k != table.key:
                        src.copy(src[k], dst, name=k)
                dst.create_dataset(table.key, data=table.array.reshape(table.shape))
                for k, v in src[table.key].attrs.items():
                    dst[table.key].attrs[k] = v
