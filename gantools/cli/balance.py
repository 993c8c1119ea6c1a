"""`gantools balance DATA -o OUT`: fill up the rare classes of a labelled image set with a conditional GAN's
images (BAGAN); `--evaluate`: does it help a classifier?"""

from __future__ import annotations

from typing import Optional

import typer

from gantools.cli import app
from gantools.cli.common import QuietOpt, VerboseOpt, handle_errors, print_json, require_output_or_pipe
from gantools.cli.names import complete_checkpoints, complete_data, complete_devices, complete_models


@app.command(
    help="Fill up the classes of a labelled image set with generated images (BAGAN, Mariani et al. 2018).\n\n"
    "DATA: any labelled image source (class subfolders, .npz/.h5 with labels, IDX, a labelled stream). OUT: a "
    "folder of class subfolders (the originals copied unchanged, generated images named gen-NNNNNN.png, and "
    "manifest.csv), x.npz or x.h5 (uint8 'images', 'labels', 'generated' (true for a generated row), "
    "'copied', 'class_names'), or - (the image stream; its manifest goes to --manifest). The manifest is "
    "CSV: image, class, label, generated (1 or 0), copy (1: a copy of the original named in source, "
    "--real-share), flipped (1: that copy mirrored), source. A per-class table (real, copied, generated, "
    "total) goes to stdout (stderr when OUT is the stream), or --json.\n\n"
    "--real-share and --min-generated change the paper's fill (all generated, only where a class is short) "
    "into the one measured to beat oversampling on MNIST: --real-share 0.5 --min-generated 1000 (README).\n\n"
    "--evaluate writes no images: it trains a classifier (a small CNN under 64 px, ResNet-18 from 64 px, "
    "no pretrained weights) on the training images (a) as they are, (b) balanced by the GAN (with "
    "--real-share and --min-generated as given), (c) balanced by "
    "oversampling with flips, and prints each one's per-class, minority-class and macro accuracy on held-out "
    "real images, and per class the accuracy of classifier (c) on generated images and the mean SSIM of "
    "random pairs of generated images beside real ones.",
    epilog="Examples: gantools balance ./skin -o ./skin-balanced --save-model bagan.pt ; "
    "gantools balance ./skin --evaluate --test-split 0.2 --json",
)
@handle_errors
def balance(
    data: str = typer.Argument(..., help="A labelled image source.", show_default=False, autocompletion=complete_data),
    out: Optional[str] = typer.Option(None, "--out", "-o", help="Output: a folder, x.npz, x.h5 or - (the stream)."),
    target: str = typer.Option("max", "--target", help="Images per class afterwards: max (the largest class's "
                               "count), N (every class), or CLASS=N,... (those classes; the others stay as they "
                               "are). Below a class's count is refused: balance only adds images."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Train the GAN's adversarial phase for this many steps [default: the model's]."),
    epochs: Optional[float] = typer.Option(None, "--epochs", help="Train the GAN for this many passes over DATA instead of --steps."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", "-b", help="The GAN's batch size [default: the model's]."),
    class_balanced: Optional[bool] = typer.Option(None, "--class-balanced/--no-class-balanced", help="Train the GAN on real batches with every class equally often, or in DATA's proportions (the authors'), as `gantools train --class-balanced` [default: the model's; bagan, bagan-gp: on]."),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="A hyper-parameter of the GAN as KEY=VALUE (repeatable), as in `gantools train --set`."),
    gan_model: str = typer.Option("bagan", "--gan-model", help="The registered conditional model that balances: bagan, bagan-gp (BAGAN-GP), or another.",
                                  autocompletion=complete_models),
    save_model: Optional[str] = typer.Option(None, "--save-model", help="Keep the trained GAN here (a gantools checkpoint: sample, interpolate, evaluate read it)."),
    model: Optional[str] = typer.Option(None, "--model", help="Reuse a saved balancer (--save-model) instead of training one; its classes must be DATA's.",
                                        autocompletion=complete_checkpoints),
    manifest: Optional[str] = typer.Option(None, "--manifest", help="Also write the manifest (CSV) here: for x.npz, x.h5 and the stream (needed there unless --only-generated); a folder OUT holds manifest.csv."),
    only_generated: bool = typer.Option(False, "--only-generated", help="Write only the generated images, not the originals."),
    evaluate: bool = typer.Option(False, "--evaluate", help="Report whether balancing helps a classifier instead of writing images (see above)."),
    test: Optional[str] = typer.Option(None, "--test", help="With --evaluate: held-out real images to test on (DATA's classes) [default: --test-split of DATA].",
                                       autocompletion=complete_data),
    test_split: Optional[float] = typer.Option(None, "--test-split", help="With --evaluate: the fraction of each class of DATA held out for testing (seeded) [default: 0.2]."),
    classifier_epochs: Optional[int] = typer.Option(None, "--classifier-epochs", help="With --evaluate: passes of each classifier over its training set [default: 10]."),
    real_share: float = typer.Option(0.0, "--real-share", help="The share of each class's fill made of copies of its own images (drawn with replacement, each mirrored left-right with probability 1/2, as oversampling), the rest generated; OUT names them copy-NNNNNN.png [default: 0, all generated, the paper's]."),
    min_generated: int = typer.Option(0, "--min-generated", help="Give every class at least N generated images, beyond --target where its fill has fewer, so that a classifier cannot learn that generated means rare [default: 0]."),
    temperature: Optional[float] = typer.Option(None, "--temperature", help="Scale the generator's latents by T (bagan, bagan-gp: each class's Gaussian's spread); above 1 more varied, below 1 more typical, as `gantools sample --temperature` [default: 1, the paper's sampling]."),
    seed: int = typer.Option(0, "--seed", help="Seed of the GAN's training and of the generated images (and of --evaluate's split and classifiers)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps.", autocompletion=complete_devices),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace gantools' own earlier output at OUT, or an existing file named by -o, --manifest or --save-model (never DATA)."),
    json_: bool = typer.Option(False, "--json", help="Print the summary (or the --evaluate report) as one JSON object."),
    quiet: bool = QuietOpt,
    verbose: bool = VerboseOpt,
) -> None:
    from gantools.cli.train import _parse_settings
    from gantools.errors import UsageError

    if steps is not None and epochs is not None:
        raise UsageError("--steps and --epochs: give the GAN's training length one way, not both")
    from gantools.balance import Training

    training = Training(model=gan_model, steps=steps, epochs=epochs, batch_size=batch_size,
                        class_balanced=class_balanced, hparams=_parse_settings(set_ or []))
    if evaluate:
        given = [flag for flag, v in (("-o", out), ("--manifest", manifest), ("--only-generated", only_generated)) if v]
        if given:
            raise UsageError(f"--evaluate writes no images: leave out {', '.join(given)}")
        if test is not None and test_split is not None:
            raise UsageError("--test and --test-split: test on one or the other")
        from gantools.balance import evaluate_balance

        given = {k: v for k, v in (("test_split", test_split), ("classifier_epochs", classifier_epochs)) if v is not None}
        report = evaluate_balance(data, test, target=target, training=training, checkpoint=model, save_model=save_model,
                                  overwrite=overwrite, seed=seed, device=device, temperature=temperature,
                                  real_share=real_share, min_generated=min_generated, **given)
        print_json(report) if json_ else _print_evaluation(report)
        return
    given = [flag for flag, v in (("--test", test), ("--test-split", test_split),
                                  ("--classifier-epochs", classifier_epochs)) if v is not None]
    if given:
        raise UsageError(f"{', '.join(given)} go with --evaluate")
    out = require_output_or_pipe(out, "balanced set")
    if out == "-" and json_:
        raise UsageError("--json: stdout carries the image stream (-o -); write OUT to a file or folder")
    from gantools.balance import balance as run_balance

    summary = run_balance(data, out, target, training, checkpoint=model, save_model=save_model, manifest=manifest,
                          only_generated=only_generated, seed=seed, device=device, overwrite=overwrite,
                          temperature=temperature, real_share=real_share, min_generated=min_generated)
    if json_:
        print_json(summary)
    else:
        _print_summary(summary, to_stderr=out == "-")


def _stdout_console():
    import sys

    from gantools.cli.common import stdout_console

    tty = sys.stdout.isatty()  # elsewhere rich would wrap tables at 80 columns
    return stdout_console(highlight=False, no_color=not tty, width=None if tty else 160)


def _print_summary(s: dict, to_stderr: bool) -> None:
    from rich.markup import escape
    from rich.table import Table

    from gantools.log import console, verbosity

    if to_stderr and verbosity() < 0:
        return
    table = Table(title=escape(f"{s['out']}: {s['images']} images ({s['model']}, seed {s['seed']})"), title_justify="left")
    columns = ("real", "copied", "generated", "total") if any(c.get("copied") for c in s["classes"]) else \
        ("real", "generated", "total")
    table.add_column("class", justify="left")
    for name in columns:
        table.add_column(name, justify="right")
    for c in s["classes"]:
        table.add_row(escape(c["class"]), *(str(c[k]) for k in columns))
    table.add_row("all", *(str(sum(c[k] for c in s["classes"])) for k in columns))
    (console() if to_stderr else _stdout_console()).print(table)


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def _print_evaluation(r: dict) -> None:
    from rich.markup import escape
    from rich.table import Table

    out = _stdout_console()
    share, least = r.get("real_share") or 0, r.get("min_generated") or 0
    fill = (f", {share:g} of each gap copied" if share else "") + (f", at least {least} generated per class" if least else "")
    out.print(f"classifier: {r['classifier']}; epochs: {r['classifier_epochs']}; (b) balanced by {r['model']}{fill}, "
              f"(c) by oversampling with flips; test: {r['test']}; seed {r['seed']}"
              + (f"; temperature {r['temperature']:g}" if r.get("temperature") is not None else ""), markup=False)
    cols = r["columns"]
    acc = Table(title="test accuracy", title_justify="left")
    counts = ("train", "test", "copied", "generated") if any(c.get("copied") for c in r["classes"]) else \
        ("train", "test", "generated")
    for name in ("class", *counts, "(a) as-is", f"(b) {r['model']}", "(c) oversampled"):
        acc.add_column(name, justify="left" if name == "class" else "right")
    for c in r["classes"]:
        acc.add_row(escape(c["class"]) + (" *" if c["minority"] else ""), *(str(c[k]) for k in counts),
                    *(_fmt(c["accuracy"][m]) for m in ("as_is", "balanced", "oversampled")))
    blank = [""] * len(counts)
    acc.add_row("minority *", *blank, *(_fmt(cols[m]["minority"]) for m in ("as_is", "balanced", "oversampled")))
    acc.add_row("macro", *blank, *(_fmt(cols[m]["macro"]) for m in ("as_is", "balanced", "oversampled")))
    out.print(acc)
    out.print(f"* minority: {r['minority_rule']} ({', '.join(r['minority_classes']) or 'none'})", markup=False)
    gen = Table(title=f"generated images ({r['judge_count']} per class; mean SSIM of {r['ssim_pairs']} random "
                      "pairs, lower = more varied)", title_justify="left")
    for name in ("class", "accuracy (judge: (c))", "SSIM generated", "SSIM real"):
        gen.add_column(name, justify="left" if name == "class" else "right")
    for c in r["classes"]:
        gen.add_row(escape(c["class"]), _fmt(c["generated_accuracy"]), _fmt(c["ssim_generated"]), _fmt(c["ssim_real"]))
    out.print(gen)
