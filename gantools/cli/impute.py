"""`gantools impute DATA`: fill a table's missing cells with GAIN; observed cells stay as they were."""

from __future__ import annotations

import contextlib
from typing import List, Literal, Optional

import typer

from gantools.cli import app
from gantools.cli.common import QuietOpt, VerboseOpt, handle_errors, print_json
from gantools.cli.names import complete_checkpoints, complete_devices

# The keys of gantools.impute.params.VARIANTS (importing that package here would import numpy).
VARIANT_NAMES = ("gantools", "paper")


@app.command(
    help="Fill the missing cells of a table with GAIN (Yoon et al. 2018). Only missing cells change.\n\n"
    "DATA: CSV or TSV (header detected), .npy, .npz, .h5 (array 'x' or the only 2-D one), or - (CSV on "
    "stdin). The output has the input's format, columns and order; without -o it goes to stdout. "
    "Integer columns stay integers; categorical columns (text, --categorical COLS, or with 'auto' "
    "integer columns of at most 10 values) are one-hot encoded and written back as their labels. "
    "COLS: comma-separated names or 0-based indices.",
    epilog="Examples: gantools impute holes.csv -o filled.csv --save-model imp.pt ; "
    "gantools impute new.csv --model imp.pt > new-filled.csv ; "
    "gantools impute holes.csv --evaluate --miss-rate 0.2 --json",
)
@handle_errors
def impute(
    data: str = typer.Argument(..., help="The table: x.csv, x.tsv, x.npy, x.npz, x.h5, or - (CSV on stdin).", show_default=False),
    out: Optional[str] = typer.Option(None, "--out", "-o", help="Output table (the input's format), or - for stdout [default: stdout]."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing file named by -o or --save-model (never the input DATA or --model)."),
    missing_values: Optional[List[str]] = typer.Option(None, "--missing-values", help="Markers of missing cells, comma-separated (repeatable); replaces the default: empty, NA, NaN, null, ? (case-insensitive)."),
    categorical: Optional[str] = typer.Option(None, "--categorical", help="Categorical columns: COLS, or 'auto' (also integer columns of at most 10 values). Text columns always are."),
    ignore: Optional[str] = typer.Option(None, "--ignore", help="Columns passed through untouched (IDs, free text): COLS."),
    header: Optional[bool] = typer.Option(None, "--header/--no-header", help="Whether the first CSV row is a header [default: detected]."),
    iterations: Optional[int] = typer.Option(None, "--iterations", help="Train exactly this many iterations, at the variant's width [default: up to 10000, the count and the hidden width chosen on the validation cells]."),
    validation_rate: Optional[float] = typer.Option(None, "--validation-rate", help="Fraction of the observed cells held out of training (seeded) to choose the iteration count and hidden width on, and to draw --draws' values from, or 0 (none): train on every observed cell [default: 0.1]."),
    draws: Optional[int] = typer.Option(None, "--draws", help="Write this many random completions (multiple imputation): CSV/TSV in R mice's long format (columns .imp and .id first), arrays with a new first axis; with --evaluate, report the coverage of their 90% intervals."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", "-b", help="Rows per batch [default: 128]."),
    hint_rate: Optional[float] = typer.Option(None, "--hint-rate", help="Probability a cell's mask entry is revealed to D [default: 0.9]."),
    alpha: Optional[float] = typer.Option(None, "--alpha", help="Weight of the reconstruction loss on observed cells [default: 100]."),
    variant: Literal[VARIANT_NAMES] = typer.Option("gantools", "--variant", help="gantools: GAIN that also trains G to rebuild observed cells it is not shown, with wider layers (lower RMSE on Letter and Spam, bench/RESULTS.md); paper: GAIN as published (exactly so with --validation-rate 0)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the initialisation, batches, hints and noise (and of the hidden cells with --evaluate)."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:N, mps or auto (the networks are tiny: the CPU is usually fastest).",
                               autocompletion=complete_devices),
    save_model: Optional[str] = typer.Option(None, "--save-model", help="Save the fitted imputer here (a gantools checkpoint, model 'gain')."),
    model: Optional[str] = typer.Option(None, "--model", help="Apply this saved imputer instead of fitting one (same columns).",
                                        autocompletion=complete_checkpoints),
    evaluate: bool = typer.Option(False, "--evaluate", help="Hide --miss-rate of the observed cells, impute them, report RMSE (GAIN and column means) instead of writing the table."),
    miss_rate: float = typer.Option(0.2, "--miss-rate", help="With --evaluate: the fraction of observed cells hidden (MCAR, seeded)."),
    json_: bool = typer.Option(False, "--json", help="With --evaluate: one JSON object on stdout."),
    quiet: bool = QuietOpt,
    verbose: bool = VerboseOpt,
) -> None:
    import time

    from gantools.errors import UsageError
    from gantools.impute.table import output_format, parse_missing_values, read_table, write_table
    from gantools.log import ProgressReporter, info

    if model and save_model:
        raise UsageError("--model applies a saved imputer; --save-model saves a newly fitted one: give one of them")
    if evaluate and (out is not None or save_model):
        raise UsageError("--evaluate reports scores on stdout: it writes no table (-o) and no model (--save-model)")
    if json_ and not evaluate:
        raise UsageError("--json goes with --evaluate (the imputed table itself is the output otherwise)")
    if model and (categorical or ignore):
        raise UsageError("--categorical and --ignore come from the saved model (--model): leave them out")
    if not evaluate and miss_rate != 0.2:
        raise UsageError("--miss-rate goes with --evaluate")
    _check_outputs(data, model, out, save_model, overwrite)
    from gantools.impute.params import DEFAULT_VARIANT

    params = {"iterations": iterations, "batch_size": batch_size, "hint_rate": hint_rate, "alpha": alpha,
              "validation_rate": validation_rate}
    if model and (any(v is not None for v in params.values()) or variant != DEFAULT_VARIANT):
        raise UsageError("--iterations/--batch-size/--hint-rate/--alpha/--validation-rate/--variant train a new "
                         "imputer; --model applies a saved one")
    if draws and validation_rate == 0:
        raise UsageError("--draws draws its values from the validation cells: it needs --validation-rate above 0")

    params["variant"] = variant
    imputer = None
    if model:
        from gantools.impute.imputer import Imputer

        imputer = Imputer.load(model)
    markers = parse_missing_values(missing_values) if missing_values else (
        imputer.missing_values if imputer is not None else parse_missing_values(None))
    table = read_table(data, markers, header=header)
    if imputer is not None:
        imputer.check(table, model)
    if not evaluate:
        output_format(table, out)  # a wrong -o, or a binary table for a terminal: usage errors before any work
    dev = _device(device)
    name = "<stdin>" if data == "-" else data
    info(f"impute: {name}: {table.n_rows} rows x {table.n_cols} columns, "
         f"{int(table.missing.sum())} missing cells ({100 * float(table.missing.mean()):.1f}%)")

    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = ProgressReporter(total, "gain")
        bar.update(done)

    try:
        if evaluate:
            from gantools.impute.evaluate import evaluate as run_evaluation

            report = run_evaluation(table, miss_rate, seed, categorical, ignore, imputer=imputer, device=str(dev),
                                    progress=progress, draws=draws, **params)
            if bar is not None:
                bar.close()
            _print_report(report, json_)
            return
        if imputer is None:
            from gantools.impute.imputer import fit_imputer

            imputer = fit_imputer(table, categorical, ignore, seed=seed, device=str(dev), progress=progress,
                                  missing_values=markers, **params)
            if bar is not None:
                bar.close()
            _describe(imputer)
        t0 = time.perf_counter()
        if draws:
            from gantools.impute.table import stack_draws

            filled = stack_draws(imputer.impute_draws(table, draws, seed=seed, device=str(dev)))
        else:
            filled = imputer.impute(table, seed=seed, device=str(dev))
        info(f"impute: filled {int(table.missing[:, [c.kind != 'ignored' for c in imputer.columns]].sum())} "
             f"cells{f' {draws} times' if draws else ''} in {time.perf_counter() - t0:.2f} s")
        with contextlib.ExitStack() as after_the_table:
            if save_model:  # written now, under a temporary name that becomes SAVE_MODEL only once OUT is complete
                from gantools.fsutil import atomic_path

                imputer.save(after_the_table.enter_context(atomic_path(save_model, overwrite)), overwrite=True)
            write_table(filled, out, overwrite=overwrite)
        if save_model:
            info(f"impute: saved the imputer to {save_model}")
    finally:
        if bar is not None:
            bar.close()


def _check_outputs(data: str, model: Optional[str], out: Optional[str], save_model: Optional[str],
                   overwrite: bool) -> None:
    """Refuse -o and --save-model before any work: an existing file without --overwrite, an input
    file (always), or one file named twice."""
    from pathlib import Path

    from gantools.errors import UsageError
    from gantools.fsutil import check_target

    if out not in (None, "-") and save_model and Path(out).resolve() == Path(save_model).resolve():
        raise UsageError(f"-o {out} and --save-model {save_model}: one file for two outputs; give two names")
    for path in (out, save_model):
        if path not in (None, "-"):
            check_target(path, overwrite, inputs=[data, model])


def _device(device: str):
    from gantools.generate import resolve_device

    return resolve_device(device)


def _describe(imputer) -> None:
    from collections import Counter

    from gantools.log import info

    kinds = Counter(c.kind for c in imputer.columns)
    shown = ", ".join(f"{n} {k}" for k, n in kinds.items())
    info(f"impute: fitted GAIN ({shown}; {imputer.iterations} iterations) in {imputer.seconds:.1f} s")
    val, hp = imputer.validation, imputer.params
    if val:
        how = (f"the best-scoring of the {val['history'][-1][0]} trained" if hp.select_iterations
               else "fixed by --iterations")
        width = f"hidden width {hp.hidden_width(imputer.dim)}"
        if val.get("widths_tried"):
            tried = ", ".join(f"{round(w * imputer.dim)}: {score:.4f}" for w, score in val["widths_tried"])
            width += f" (chosen on the validation cells after {hp.screen_iterations} iterations; {tried})"
        if val.get("ensemble"):
            width += "; outputs averaged, weighted on the validation cells: " + ", ".join(
                f"width {round(m * imputer.dim)} ({n} iterations) {w:.2f}" for m, n, w in val["ensemble"])
        info(f"impute: validation on {val['cells']} held-out cells ({100 * val['rate']:g}% of the observed): "
             f"RMSE {val['rmse']:.4f}; iterations {imputer.iterations} ({how}); {width}; "
             f"hint rate {hp.hint_rate:g}, alpha {hp.alpha:g}"
             + (f"; G's weights averaged over its iterations (half-life {hp.ema_half_life})" if val.get("averaged") else "")
             + ("; then refitted on every observed cell" if val.get("refit") else ""))


def _print_report(r: dict, as_json: bool) -> None:
    if as_json:
        print_json(r)
        return
    print(f"{r['source']}: {r['hidden_cells']} of the observed cells hidden at random "
          f"(miss rate {r['miss_rate']:g}, seed {r['seed']}), then imputed")
    if r["rmse"]:
        print(f"RMSE over {r['numeric_cells']} numeric cells (min-max normalised):")
        print(f"  gain         {r['rmse']['gain']:.4f}")
        print(f"  column mean  {r['rmse']['mean']:.4f}")
    if r.get("interval") and r["interval"]["cells"]:
        c = r["interval"]
        print(f"{c['draws']} draws: the true value inside their {100 * c['level']:g}% interval in "
              f"{100 * c['coverage']:.1f}% of {c['cells']} numeric cells (mean width {c['mean_width']:.4f}); "
              f"the truth's rank among them inside the central {100 * c['level']:g}% in {100 * c['rank_coverage']:.1f}% "
              f"({100 * c['at_atom']:.0f}% of the truths equal a draw: a point mass such as exact zeros)")
    if r["accuracy"]:
        print(f"accuracy over {r['categorical_cells']} categorical cells:")
        print(f"  gain         {r['accuracy']['gain']:.4f}")
        print(f"  column mode  {r['accuracy']['mode']:.4f}")
