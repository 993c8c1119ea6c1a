"""`gantools impute` and gantools.impute on small generated tables: the contract of the issue."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from gantools.impute import read_table

ITER = "300"
MARKERS = {"", "na", "nan", "null", "?"}


def _rows(data: bytes, delimiter: str = ",") -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode(), newline=""), delimiter=delimiter))


def _mixed_csv(n: int = 120, seed: int = 0) -> str:
    """A table with a float column (2 decimals), an integer column, a text category (one label holds
    a comma), an exponent-written column and an ID column; cells missing under every default marker."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=n)
    markers = ["", "NA", "NaN", "null", "?", " na "]
    out = io.StringIO(newline="")
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["height", "count", "colour", "tiny", "id"])
    labels = ["red", "green", "blue, dark"]
    for i in range(n):
        row = [f"{1.5 + z[i]:.2f}", str(int(10 + 3 * z[i] > 10) + int(rng.integers(0, 4))),
               labels[int(z[i] > 0) + int(z[i] > 1)], f"{abs(z[i]) * 1e-3:.3e}", f"id-{i:04d}"]
        for j in range(4):
            if rng.random() < 0.15:
                row[j] = markers[int(rng.integers(0, len(markers)))]
        if rng.random() < 0.1:
            row[4] = ""
        w.writerow(row)
    return out.getvalue()


def _is_missing(c: str) -> bool:
    return c.strip().lower() in MARKERS


@pytest.fixture
def mixed(tmp_path):
    p = tmp_path / "mixed.csv"
    p.write_text(_mixed_csv())
    return p


def test_observed_cells_untouched_and_types_kept(cli, mixed, tmp_path):
    out = tmp_path / "filled.csv"
    r = cli("impute", mixed, "-o", out, "--iterations", ITER, "--ignore", "id")
    assert r.code == 0, r.err
    assert r.out == b""  # the table went to the file; talk went to stderr
    src, dst = _rows(mixed.read_bytes()), _rows(out.read_bytes())
    assert dst[0] == src[0] and len(dst) == len(src)
    filled = 0
    for a, b in zip(src[1:], dst[1:]):
        assert len(a) == len(b) == 5
        for j, (ca, cb) in enumerate(zip(a, b)):
            if j == 4 or not _is_missing(ca):
                assert cb == ca  # observed cells and the ignored column: the same text
            else:
                filled += 1
                assert not _is_missing(cb)
        # the types of the columns survive
        assert len(b[0].split(".")[1]) == 2
        assert b[1].lstrip("-").isdigit()
        assert b[2] in {"red", "green", "blue, dark"}
        assert "e" in b[3]
    assert filled > 40
    assert "blue, dark" in out.read_text() and '"blue, dark"' in out.read_text()


def test_stdout_is_the_table_and_markers_override(cli, tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("x,y\n1,10\n2,-999\n3,30\n4,40\n-999,50\n6,60\n7,70\n8,80\n")
    r = cli("impute", p, "--iterations", ITER, "--missing-values", "-999")
    assert r.code == 0, r.err
    rows = _rows(r.out)
    assert rows[0] == ["x", "y"] and len(rows) == 9
    assert all("-999" not in row for row in rows)
    body = rows[1:]
    assert [r[0] for k, r in enumerate(body) if k != 4] == ["1", "2", "3", "4", "6", "7", "8"]
    assert [r[1] for k, r in enumerate(body) if k != 1] == ["10", "30", "40", "50", "60", "70", "80"]
    assert body[4][0].lstrip("-").isdigit() and body[1][1].lstrip("-").isdigit()
    assert "impute:" in r.err  # progress on stderr


def test_auto_categorical_round_trips_labels(cli, tmp_path):
    rng = np.random.default_rng(1)
    n = 150
    level = rng.integers(0, 3, n)
    lines = ["grade,score"]
    for i in range(n):
        g = "" if rng.random() < 0.2 else str(level[i] * 5)
        lines.append(f"{g},{level[i] + rng.normal() * 0.1:.3f}")
    p = tmp_path / "g.csv"
    p.write_text("\n".join(lines) + "\n")
    out = tmp_path / "o.csv"
    r = cli("impute", p, "--categorical", "auto", "--iterations", ITER, "-o", out, "-v")
    assert r.code == 0, r.err
    col = [row[0] for row in _rows(out.read_bytes())[1:]]
    assert set(col) == {"0", "5", "10"}
    assert "1 categorical" in r.err


def test_save_apply_and_info(cli, mixed, tmp_path):
    import torch

    model = tmp_path / "imp.pt"
    r = cli("impute", mixed, "--iterations", ITER, "--ignore", "id", "--save-model", model, "--seed", "3")
    assert r.code == 0, r.err
    fitted = r.out
    ck = torch.load(model, weights_only=True)
    assert ck["model"] == "gain" and ck["data"]["kind"] == "table"
    assert [c["kind"] for c in ck["data"]["columns"]] == ["numeric", "integer", "categorical", "numeric", "ignored"]
    assert ck["data"]["columns"][2]["categories"] == ["blue, dark", "green", "red"]
    info = cli("info", model, "--json")
    assert info.code == 0, info.err
    s = json.loads(info.out)
    assert s["model"] == "gain" and s["step"] == 300 and s["hparams"]["alpha"] == 100.0
    assert s["parameters"]["G"] > 0
    # applying the saved imputer to the same file gives the same table as the fit did (same seed)
    r2 = cli("impute", mixed, "--model", model, "--seed", "3")
    assert r2.code == 0, r2.err
    assert r2.out == fitted
    # to new rows: fit on one file, impute another, without refitting
    other = tmp_path / "other.csv"
    other.write_text(_mixed_csv(n=40, seed=9))
    r3 = cli("impute", other, "--model", model)
    assert r3.code == 0, r3.err
    assert "fitted GAIN" not in r3.err
    for a, b in zip(_rows(other.read_bytes()), _rows(r3.out)):
        assert all(cb == ca for ca, cb in zip(a, b) if not _is_missing(ca))
    # a table with other columns is refused
    bad = tmp_path / "bad.csv"
    bad.write_text("p,q\n1,2\n3,\n")
    r4 = cli("impute", bad, "--model", model)
    assert r4.code == 1 and r4.err.strip().splitlines() == [
        f"gantools: error: {bad}: 2 columns, but the model {model} was fitted on 5"]


def test_the_model_is_in_the_registry(cli):
    r = cli("models", "--json")
    assert r.code == 0
    gain = [m for m in json.loads(r.out)["models"] if m["name"] == "gain"]
    assert gain and gain[0]["data"] == "table" and gain[0]["trained_by"] == "impute"


def test_defaults_agree_across_registry_cli_and_params():
    """The registry's `gain` defaults and the CLI's --variant default are the default variant's."""
    import typer.main

    from gantools.cli import app
    from gantools.impute.params import DEFAULT_VARIANT, GainParams
    from gantools.registry import MODELS

    assert MODELS.get("gain").defaults == GainParams.for_variant(DEFAULT_VARIANT).as_dict()
    impute = typer.main.get_command(app).get_command(None, "impute")
    assert next(p.default for p in impute.params if p.name == "variant") == DEFAULT_VARIANT


@pytest.mark.parametrize("content,what", [
    ("", "empty file"),
    ("a,b\n1,2\n3\n4,5\n", "line 3 has 1 fields, expected 2"),
    ("a,b\n1,2\n3,4\nabc,5\n6,7\n", "column 'a' is numeric but row 3 holds 'abc'"),
    ("a,b\n1,\n3,NA\n4,?\n", "column 'b' has no observed value"),
    ("a,b,c\n1,,\n,2,\n,,3\n4,,\n", "more than half"),
    ("a,b\n", "no data rows"),
])
def test_bad_input_is_one_line_and_writes_nothing(cli, tmp_path, content, what):
    p = tmp_path / "bad.csv"
    p.write_text(content)
    out = tmp_path / "out.csv"
    r = cli("impute", p, "-o", out, "--iterations", "5")
    assert r.code == 1, r.err
    lines = r.err.strip().splitlines()
    assert lines[-1].startswith("gantools: error: ") and str(p) in lines[-1] and what in lines[-1]
    assert "Traceback" not in r.err
    assert not out.exists() and sorted(os.listdir(tmp_path)) == ["bad.csv"]


def test_sparse_column_is_a_warning_that_names_it(cli, tmp_path):
    rng = np.random.default_rng(2)
    lines = ["a,b,rare"] + [f"{i},{i * 2 + rng.normal():.2f},{'' if i % 3 else i}" for i in range(60)]
    p = tmp_path / "s.csv"
    p.write_text("\n".join(lines) + "\n")
    r = cli("impute", p, "--iterations", "50")
    assert r.code == 0, r.err
    assert "warning" in r.err and "'rare'" in r.err
    assert all(row[2] != "" for row in _rows(r.out)[1:])


def test_usage_errors_exit_2(cli, mixed, tmp_path):
    assert cli("impute", mixed, "--json").code == 2
    assert cli("impute", mixed, "--ignore", "nope").code == 2
    assert cli("impute", mixed, "-o", tmp_path / "x.npy").code == 2
    assert cli("impute", mixed, "--hint-rate", "1.5").code == 2
    r = cli("impute", tmp_path / "missing.csv")
    assert r.code == 1 and "missing.csv" in r.err


def test_pipe_through_stdin_and_stdout(mixed, tmp_path):
    out = tmp_path / "b.csv"
    with open(mixed, "rb") as fin, open(out, "wb") as fout:
        p = subprocess.run([sys.executable, "-c", "from gantools.cli import main; main()", "impute", "-",
                            "--iterations", "50"], stdin=fin, stdout=fout, stderr=subprocess.PIPE, timeout=300)
    assert p.returncode == 0, p.stderr.decode()
    src, dst = _rows(mixed.read_bytes()), _rows(out.read_bytes())
    assert len(src) == len(dst) and dst[0] == src[0]
    for a, b in zip(src, dst):
        assert all(cb == ca for ca, cb in zip(a, b) if not _is_missing(ca))
        assert not any(_is_missing(c) for c in b[:4])
    assert b"impute:" in p.stderr


def test_tsv_and_headerless(cli, tmp_path):
    p = tmp_path / "t.tsv"
    p.write_text("1\t2\t3\n4\t\t6\n7\t8\t9\n10\t11\tNA\n")
    r = cli("impute", p, "--iterations", "50")
    assert r.code == 0, r.err
    rows = _rows(r.out, "\t")
    assert len(rows) == 4 and rows[0] == ["1", "2", "3"] and rows[1][1].isdigit() and rows[3][2].isdigit()
    assert read_table(str(p)).header is False


def test_arrays_npy_npz_h5(cli, tmp_path):
    import h5py

    rng = np.random.default_rng(3)
    x = rng.normal(size=(80, 3)).astype(np.float32)
    x[:, 2] = np.round(x[:, 2] * 3)
    holes = rng.random(x.shape) < 0.2
    xm = np.where(holes, np.nan, x).astype(np.float32)
    np.save(tmp_path / "a.npy", xm)
    np.savez(tmp_path / "a.npz", x=xm, y=np.arange(80))
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f["x"] = xm
        f["labels"] = np.arange(80)
    for name in ("a.npy", "a.npz", "a.h5"):
        out = tmp_path / ("out" + os.path.splitext(name)[1])
        r = cli("impute", tmp_path / name, "-o", out, "--iterations", "50")
        assert r.code == 0, r.err
        if name.endswith(".npy"):
            y = np.load(out)
        elif name.endswith(".npz"):
            z = np.load(out)
            y = z["x"]
            assert np.array_equal(z["y"], np.arange(80))
        else:
            with h5py.File(out) as f:
                y = f["x"][()]
                assert np.array_equal(f["labels"][()], np.arange(80))
        assert y.dtype == np.float32 and y.shape == x.shape
        assert np.array_equal(y[~holes].view(np.uint32), xm[~holes].view(np.uint32))  # bit for bit
        assert not np.isnan(y).any()
        assert np.array_equal(y[:, 2], np.round(y[:, 2]))  # the integer column stays whole
    # .npz and .h5 need a file to go to
    assert cli("impute", tmp_path / "a.npz", "--iterations", "5").code == 2


def _correlated(n: int = 1000, seed: int = 0) -> tuple[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    z = rng.uniform(-1, 1, size=(n, 1))
    w = np.array([[1.0, -2.0, 0.5, 3.0, 1.5]])
    x = z @ w + 0.03 * rng.normal(size=(n, 5))
    body = "\n".join(",".join(f"{v:.4f}" for v in row) for row in x)
    return "a,b,c,d,e\n" + body + "\n", x


def test_evaluate_json_and_gain_beats_the_mean_on_correlated_columns(cli, tmp_path):
    text, _ = _correlated()
    p = tmp_path / "corr.csv"
    p.write_text(text)
    r = cli("impute", p, "--evaluate", "--miss-rate", "0.2", "--json", "--iterations", "1000", "--seed", "1")
    assert r.code == 0, r.err
    rep = json.loads(r.out)
    assert rep["miss_rate"] == 0.2 and abs(rep["hidden_cells"] / 5000 - 0.2) < 0.03
    assert rep["numeric_cells"] == rep["hidden_cells"] and rep["accuracy"] is None
    gain, mean = rep["rmse"]["gain"], rep["rmse"]["mean"]
    assert 0.15 < mean < 0.4  # uniform columns: the mean is off by about 0.29 of the range
    assert gain < 0.5 * mean, rep["rmse"]
    assert not (tmp_path / "corr.csv.tmp").exists() and sorted(os.listdir(tmp_path)) == ["corr.csv"]
    # the human report names both
    h = cli("impute", p, "--evaluate", "--iterations", "50")
    assert h.code == 0 and b"gain" in h.out and b"column mean" in h.out


def test_evaluation_rmse_is_the_papers_definition(tmp_path):
    """The mean baseline's RMSE by hand: original observed range (+1e-6), hidden cells only."""
    from gantools.impute import evaluate
    from gantools.impute.evaluate import hide_mcar
    from gantools.impute.schema import infer_kinds

    p = tmp_path / "t.csv"
    p.write_text("a,b\n0,1.5\n10,2.5\n2,3.5\n4,\n6,5.5\n8,6.5\n1,7.5\n3,1.0\n")
    tab = read_table(str(p))
    kinds = infer_kinds(tab)
    assert kinds == ["integer", "numeric"]
    rep = evaluate(tab, 0.4, seed=4, iterations=20)
    hide = hide_mcar(tab, kinds, 0.4, seed=4)
    assert rep["hidden_cells"] == int(hide.sum()) > 0 and not (hide & tab.missing).any()
    sq, n = 0.0, 0
    for j, lo, hi in ((0, 0.0, 10.0), (1, 1.0, 7.5)):
        vals = tab.parsed(j)[0]
        keep = ~hide[:, j] & ~np.isnan(vals)
        mean = vals[keep].mean()
        mean = round(mean) if j == 0 else mean
        err = (mean - vals[hide[:, j]]) / (hi - lo + 1e-6)
        sq, n = sq + float((err ** 2).sum()), n + int(hide[:, j].sum())
    assert rep["rmse"]["mean"] == pytest.approx(np.sqrt(sq / n), rel=1e-9)


def test_a_binary_table_is_not_written_to_a_terminal(tmp_path):
    """.npy output without -o: refused when stdout is a terminal, before anything is encoded."""
    import io

    from gantools.errors import UsageError
    from gantools.impute.table import output_format, read_table, write_table

    p = tmp_path / "x.npy"
    np.save(p, np.array([[1.0, np.nan], [2.0, 3.0]]))
    table = read_table(str(p))

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    with pytest.raises(UsageError, match="stdout is a terminal"):
        output_format(table, None, Terminal())
    with pytest.raises(UsageError, match="give -o OUT.npy"):
        write_table(table, "-", Terminal())


# ------------------------------------------------------------------ self-validation and multiple imputation


def test_validation_chooses_the_count_and_the_saved_model_keeps_it(tmp_path):
    """The held-out cells are observed cells; G is scored on them every eval_every iterations and
    the best iterate is kept; the checkpoint stores the chosen count and the validation record."""
    import torch

    from gantools.impute import Imputer, fit_imputer

    text, _ = _correlated(n=300, seed=4)
    p = tmp_path / "c.csv"
    p.write_text(text)
    tab = read_table(str(p))
    imp = fit_imputer(tab, iterations=600, select_iterations=True, eval_every=100, patience=200, seed=2,
                      width_choices=(), refit_rows=0)
    val = imp.validation
    steps = [s for s, _ in val["history"]]
    assert steps[0] == 100 and all(b - a == 100 for a, b in zip(steps, steps[1:])) and steps[-1] <= 600
    best_step, best = min(val["history"], key=lambda h: h[1])
    assert imp.iterations == best_step and val["rmse"] == pytest.approx(best, rel=1e-5)
    assert steps[-1] == 600 or steps[-1] - best_step >= 200  # stopped only after `patience` without a better score
    assert abs(val["cells"] / 1500 - 0.1) < 0.03 and len(val["residuals"]) == 5
    model = tmp_path / "m.pt"
    imp.save(model)
    ck = torch.load(model, weights_only=True)
    assert ck["step"] == imp.iterations and ck["config"]["validation"]["history"] == val["history"]
    again = Imputer.load(model)
    assert again.iterations == imp.iterations and again.validation["residuals"] == val["residuals"]


def test_validation_cells_are_never_written_back_changed(cli, mixed, tmp_path):
    """With the default validation (10% of the observed cells held out of training), every observed
    cell still comes back as read, and the chosen count is reported on stderr."""
    out = tmp_path / "filled.csv"
    r = cli("impute", mixed, "-o", out, "--iterations", ITER, "--ignore", "id", "--validation-rate", "0.3")
    assert r.code == 0, r.err
    assert "validation on" in r.err and "held-out cells (30% of the observed)" in r.err
    src, dst = _rows(mixed.read_bytes()), _rows(out.read_bytes())
    assert len(src) == len(dst)
    kept = sum(ca == cb for a, b in zip(src[1:], dst[1:]) for ca, cb in zip(a, b) if not _is_missing(ca))
    observed = sum(not _is_missing(c) for a in src[1:] for c in a)
    assert kept == observed


def test_draws_differ_only_in_missing_cells_and_are_seeded(cli, mixed, tmp_path):
    a, b, c = tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "c.csv"
    for out, seed in ((a, "5"), (b, "5"), (c, "6")):
        r = cli("impute", mixed, "--draws", "4", "-o", out, "--iterations", ITER, "--ignore", "id", "--seed", seed)
        assert r.code == 0, r.err
    assert a.read_bytes() == b.read_bytes()  # the same seed: the same draws
    assert a.read_bytes() != c.read_bytes()
    src, long = _rows(mixed.read_bytes()), _rows(a.read_bytes())
    assert long[0] == [".imp", ".id"] + src[0]  # R mice's complete(imp, "long")
    body = src[1:]
    draws = {}
    for row in long[1:]:
        draws.setdefault(row[0], []).append(row[2:])
        assert row[1] == str(len(draws[row[0]]))
    assert sorted(draws) == ["1", "2", "3", "4"] and all(len(d) == len(body) for d in draws.values())
    differ = 0
    for d in draws.values():
        for a_row, d_row in zip(body, d):
            for ca, cd in zip(a_row, d_row):
                if not _is_missing(ca):
                    assert cd == ca
        differ += sum(x != y for r1, r2 in zip(draws["1"], d) for x, y in zip(r1, r2))
    assert differ > 0  # the draws are not copies of one another (and differ only where cells were missing)


def test_draws_of_an_array_table_stack_on_a_new_axis(cli, tmp_path):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(60, 3))
    xm = np.where(rng.random(x.shape) < 0.2, np.nan, x)
    np.savez(tmp_path / "a.npz", x=xm, y=np.arange(60))
    out = tmp_path / "d.npz"
    r = cli("impute", tmp_path / "a.npz", "--draws", "3", "-o", out, "--iterations", "50")
    assert r.code == 0, r.err
    z = np.load(out)
    assert z["x"].shape == (3, 60, 3) and np.array_equal(z["y"], np.arange(60))
    holes = np.isnan(xm)
    for d in z["x"]:
        assert np.array_equal(d[~holes], xm[~holes]) and not np.isnan(d).any()
    assert not np.array_equal(z["x"][0][holes], z["x"][1][holes])


def test_draws_need_validation_cells(cli, mixed, tmp_path):
    r = cli("impute", mixed, "--draws", "2", "--validation-rate", "0", "--iterations", "5")
    assert r.code == 2 and "--validation-rate" in r.err and "Traceback" not in r.err
    model = tmp_path / "m.pt"
    assert cli("impute", mixed, "--validation-rate", "0", "--iterations", "5", "--save-model", model).code == 0
    r = cli("impute", mixed, "--model", model, "--draws", "2")
    assert r.code == 1 and r.err.strip().splitlines()[-1].startswith("gantools: error: --draws needs")


def test_interval_coverage_counts_truths_inside_the_draws_range(tmp_path):
    """The 90% interval of M draws runs between their quantiles at Weibull plotting positions: for
    20 draws, from 5% of the way between the two smallest to 5% short of the largest."""
    from gantools.impute.evaluate import interval_coverage

    p = tmp_path / "t.csv"
    p.write_text("a\n0\n1.5\n1.2\n3\n1.001\n10\n")
    tab = read_table(str(p))
    hide = np.zeros((6, 1), bool)
    hide[:5, 0] = True  # truths 0, 1.5, 1.2, 3, 1.001
    draws = [{0: np.full(6, 1.0 + k / 19)} for k in range(20)]  # 20 draws evenly from 1 to 2
    rep = interval_coverage(tab, [0], hide, draws)
    assert rep["cells"] == 5 and rep["coverage"] == 0.4  # 1.5 and 1.2 inside; 0, 3 and 1.001 outside
    lo, hi = 1.0 + 0.05 / 19, 2.0 - 0.05 / 19
    assert rep["mean_width"] == pytest.approx((hi - lo) / (10 + 1e-6), rel=1e-6)


def test_rank_coverage_is_the_level_for_calibrated_draws_with_a_point_mass(tmp_path):
    """Truth and 20 draws from one distribution with 70% exact zeros: the plain interval covers
    nearly every truth (it reaches the zeros), the randomised rank covers the level."""
    from gantools.impute.evaluate import interval_coverage

    rng = np.random.default_rng(7)  # not interval_coverage's tie-breaking stream (seed 0)
    n = 20000

    def mixed(size):
        return np.where(rng.random(size) < 0.7, 0.0, rng.exponential(1.0, size))

    truth = mixed(n)
    p = tmp_path / "t.csv"
    p.write_text("a\n" + "\n".join(f"{t:.17g}" for t in truth) + "\n")
    tab = read_table(str(p))
    hide = np.ones((n, 1), bool)
    draws = [{0: mixed(n)} for _ in range(20)]
    rep = interval_coverage(tab, [0], hide, draws)
    assert rep["coverage"] > 0.95  # every zero truth lies in [0, ...]
    assert abs(rep["rank_coverage"] - 0.9) < 0.02, rep
    assert abs(rep["at_atom"] - 0.7) < 0.03, rep
    shifted = [{0: d[0] + 1.0} for d in draws]  # miscalibrated: the rank says so too
    assert interval_coverage(tab, [0], hide, shifted)["rank_coverage"] < 0.5


def test_evaluate_reports_the_coverage_of_the_draws(cli, tmp_path):
    text, _ = _correlated(n=400, seed=2)
    p = tmp_path / "corr.csv"
    p.write_text(text)
    r = cli("impute", p, "--evaluate", "--draws", "20", "--json", "--iterations", "800", "--seed", "3")
    assert r.code == 0, r.err
    c = json.loads(r.out)["interval"]
    assert c["draws"] == 20 and c["cells"] == json.loads(r.out)["numeric_cells"]
    assert 0.75 < c["coverage"] <= 1.0, c  # the errors added are the held-out cells' own
    assert 0.75 < c["rank_coverage"] <= 1.0 and 0 <= c["at_atom"] <= 1, c


def test_the_self_validating_fit_is_seeded_through_screen_and_refit(tmp_path):
    """Width screen, early stopping and the refit on every cell: the same seed, the same table."""
    from gantools.impute import fit_imputer

    text, _ = _correlated(n=200, seed=6)
    p = tmp_path / "c.csv"
    p.write_text(text)
    tab = read_table(str(p))
    hide = np.random.default_rng(0).random(tab.missing.shape) < 0.15
    holes = tab.with_hidden(hide)
    kw = dict(iterations=400, select_iterations=True, screen_iterations=100, eval_every=50, patience=150)
    fits = [fit_imputer(holes, seed=s, **kw) for s in (3, 3, 4)]
    a, b, c = fits
    assert a.validation["refit"] and len(a.validation["widths_tried"]) == 2  # widths 20 and 40 of dim 5
    assert a.params.hidden_mult == a.validation["hidden_mult"] and a.iterations <= 400
    assert a.validation == b.validation and a.impute(holes).text == b.impute(holes).text
    assert a.impute(holes).text != c.impute(holes).text


def test_draws_take_the_values_of_held_out_cells_with_the_nearest_g_values():
    """Predictive mean matching: a drawn numeric value is the true value of one of the 50 held-out
    cells (of any numeric column) whose G values are nearest; exact atoms such as zeros stay exact."""
    from gantools.impute.imputer import _draw

    rng = np.random.default_rng(3)
    pred = [np.sort(rng.random(120)).round(4), np.sort(rng.random(80)).round(4)]
    truth = [np.where(rng.random(len(p)) < 0.5, 0.0, rng.random(len(p)).round(4)) for p in pred]
    values, truths = np.concatenate(pred), np.concatenate(truth)
    near = np.argsort(np.abs(values - 0.3), kind="stable")[:50]
    g = np.full((400, 2), 0.3)
    out = np.stack([_draw(g, [p.tolist() for p in pred], [(t - p).tolist() for p, t in zip(pred, truth)], [],
                          np.random.default_rng(k)) for k in range(5)])
    allowed = truths[near]
    gap = np.abs(out.reshape(-1, 1) - allowed.reshape(1, -1)).min(1)
    assert gap.max() < 1e-9  # every draw is a donor's value
    assert (out == 0.0).mean() == pytest.approx((allowed == 0).mean(), abs=0.05)  # zeros drawn as often as donated
    assert len(np.unique(out)) > 0.5 * len(np.unique(allowed))  # from across the donors, not one
    few = _draw(g, [pred[0][:20].tolist()], [(truth[0][:20] - pred[0][:20]).tolist()], [], np.random.default_rng(0))
    nearest = truth[0][:20][np.argsort(np.abs(pred[0][:20] - 0.3), kind="stable")[:10]]
    assert np.abs(few[:, :1] - nearest.reshape(1, -1)).min(1).max() < 1e-9  # a pool of 20: its 10 nearest


def test_a_small_table_averages_gs_of_several_widths_and_the_model_keeps_them(tmp_path, monkeypatch):
    """At most ensemble_rows rows: every screened width trains on; the filling is the mean of their
    outputs with the weights chosen on the held-out cells (here made equal, so that every width
    stays in), and --save-model / --model keep every G and weight."""
    import torch

    import gantools.impute.gain as gain
    from gantools.impute import Imputer, fit_imputer
    from gantools.impute.schema import encode

    text, _ = _correlated(n=200, seed=8)
    p = tmp_path / "c.csv"
    p.write_text(text)
    holes = read_table(str(p)).with_hidden(np.random.default_rng(1).random((200, 5)) < 0.15)
    kw = dict(iterations=300, select_iterations=True, screen_iterations=100, eval_every=50, patience=100, seed=2)
    single = fit_imputer(holes, ensemble_rows=0, **kw)  # above the threshold: the best width alone
    assert single.members == [] and single.weights == [1.0] and "ensemble" not in single.validation
    monkeypatch.setattr(gain, "_ensemble_weights", lambda preds, val: [0.7] + [0.3 / (len(preds) - 1)] * (len(preds) - 1))
    imp = fit_imputer(holes, **kw)
    widths = sorted(round(w * imp.dim) for w, _ in imp.validation["widths_tried"])
    assert sorted(g.l1.out_features for g in (imp.G, *imp.members)) == widths and len(widths) == 2
    assert imp.weights == [0.7, 0.3] and [e[2] for e in imp.validation["ensemble"]] == imp.weights
    enc = encode(holes, imp.columns)
    x, m = torch.from_numpy(enc.x), torch.from_numpy(enc.m)
    each = [gain.generate(g, x, m, seed=imp.seed) for g in (imp.G, *imp.members)]
    assert not torch.allclose(each[0], each[1])
    torch.testing.assert_close(gain.generate([imp.G, *imp.members], x, m, seed=imp.seed, weights=imp.weights),
                               0.7 * each[0] + 0.3 * each[1])
    model = tmp_path / "m.pt"
    imp.save(model)
    again = Imputer.load(model)
    assert again.weights == imp.weights and again.impute(holes).text == imp.impute(holes).text
    assert again.impute(holes).text != single.impute(holes).text


def test_ensemble_weights_pick_on_the_held_out_cells():
    """Greedy selection with replacement: two predictions with independent errors share the weight
    (their mean is closer to the truth), a far worse one gets none."""
    import torch

    from gantools.impute.gain import Validation, _ensemble_weights, cell_weight

    g = torch.Generator().manual_seed(0)
    x = torch.rand(400, 3, generator=g)
    m = torch.ones_like(x)
    val = Validation(x, m, m.clone(), cell_weight(3, 3, [], "cpu"), 3, seed=0)
    a, b = (x + 0.1 * torch.randn(x.shape, generator=g) for _ in range(2))
    bad = x + 0.5 * torch.randn(x.shape, generator=g)
    w = _ensemble_weights([bad, a, b], val)
    assert w[0] == 0 and w[1] > 0.3 and w[2] > 0.3 and sum(w) == pytest.approx(1.0)
    assert _ensemble_weights([a, bad], val) == [1.0, 0.0]  # nothing to gain: the best alone


def test_an_interrupt_while_writing_the_table_leaves_no_saved_model(cli, mixed, tmp_path, monkeypatch):
    """--save-model appears only with a complete -o: Ctrl-C while the table is written leaves neither."""
    import gantools.impute.table

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(gantools.impute.table, "write_table", interrupted)
    r = cli("impute", mixed, "-o", tmp_path / "filled.csv", "--iterations", "5", "--validation-rate", "0",
            "--save-model", tmp_path / "imp.pt")
    assert r.code == 130 and r.err.strip().splitlines()[-1] == "gantools: interrupted"
    assert sorted(os.listdir(tmp_path)) == ["mixed.csv"]
