"""`gantools evaluate FAKE --real REAL`: FID, IS, KID and precision/recall with the reference Inception.

A thin layer over gantools.metrics.evaluate.evaluate: options in, the report out as a table or JSON.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from gantools.cli import app
from gantools.cli.common import QuietOpt, VerboseOpt, handle_errors, print_json
from gantools.cli.names import complete_data, complete_devices, complete_metric_list

HELP = (
    "Score images against real ones: FID, IS, KID, precision/recall, with the 2015-12-05 TensorFlow "
    "Inception graph and its exact preprocessing (TF1 bilinear resize to 299, (x-128)/128), so FID "
    "matches torch-fidelity, clean-fid (legacy_tensorflow) and stylegan2-ada.\n\n"
    "FAKE and REAL: any data source (folder, class folders, .zip, .h5, .npz, .npy, IDX, - for the "
    "image stream on stdin), a checkpoint (.pt: -n images are generated, seeded), or a statistics "
    "file from --save-stats (.npz, FID only).\n\n"
    "Metrics: fid (default); is (Inception Score, 10 splits; needs the full weights "
    "pt_inception-2015-12-05-6726825d.pth via --inception-weights, $GANTOOLS_INCEPTION or "
    "$GANTOOLS_HOME, default ~/.cache/gantools; no --real needed); kid (unbiased cubic-kernel MMD, "
    "100 subsets of min(1000, n)); pr (improved precision/recall, k=3, on the Inception pool3 "
    "features: the paper used VGG16, so values are not comparable with its tables).\n\n"
    "Fewer than 2048 images make a rank-deficient covariance: FID is then biased upward; "
    "report 10k or 50k."
)


@app.command(
    help=HELP,
    epilog="Examples: gantools evaluate ckpt.pt --real ./cifar10.zip --metrics fid,kid,pr  |  "
    "gantools sample ckpt.pt -n 10000 | gantools evaluate - --real stats.npz  |  "
    "gantools evaluate ./real --save-stats real.npz",
)
@handle_errors
def evaluate(
    fake: str = typer.Argument(..., help="Images to score: data source, '-', checkpoint (.pt) or statistics (.npz).",
                               show_default=False, autocompletion=complete_data),
    real: Optional[str] = typer.Option(None, "--real", "-r",
                                       help="Reference images: data source, '-', checkpoint or statistics file.",
                                       autocompletion=complete_data),
    metrics: Optional[str] = typer.Option(None, "--metrics", "-m",
                                          help="Comma-separated: fid, is, kid, pr (default: fid).",
                                          autocompletion=complete_metric_list),
    n: Optional[int] = typer.Option(None, "-n", "--num",
                                    help="Images generated from a checkpoint (default: 10000); for a data "
                                    "source, use only its first N."),
    seed: int = typer.Option(0, help="Seed of generated latents and of the KID subsets."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", "-b",
                                             help="Images per Inception pass (default: 32 on CPU, 200 on CUDA)."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N or mps.", autocompletion=complete_devices),
    per_class: bool = typer.Option(False, "--per-class",
                                   help="Also FID per class (labelled sources, conditional checkpoints) and "
                                   "their mean; classes are paired by name. A conditional checkpoint generates "
                                   "its classes in turn, n/C images of each."),
    save_stats: Optional[Path] = typer.Option(None, "--save-stats",
                                              help="Write REAL's FID statistics (FAKE's when there is no --real) "
                                              "to this .npz, for reuse as FAKE or REAL."),
    overwrite: bool = typer.Option(False, "--overwrite",
                                   help="Replace an existing --save-stats file (never an input, FAKE or REAL)."),
    inception_weights: Optional[Path] = typer.Option(None, "--inception-weights",
                                                     help="The full Inception weights for IS "
                                                     "(pt_inception-2015-12-05-6726825d.pth)."),
    kid_subsets: int = typer.Option(100, "--kid-subsets", help="KID: number of random subsets."),
    kid_subset_size: int = typer.Option(1000, "--kid-subset-size", help="KID: images per subset (at most)."),
    is_splits: int = typer.Option(10, "--is-splits", help="IS: number of splits."),
    ema: bool = typer.Option(True, "--ema/--no-ema", help="Checkpoints: use the EMA generator when present."),
    json_: bool = typer.Option(False, "--json", help="One JSON object on stdout, for scripts."),
    quiet: bool = QuietOpt,
    verbose: bool = VerboseOpt,
) -> None:
    from gantools.metrics.evaluate import evaluate as evaluate_images

    report = evaluate_images(fake, real, metrics, n=n, seed=seed, batch_size=batch_size, device=device,
                             per_class=per_class, save_stats=save_stats, overwrite=overwrite,
                             inception_weights=inception_weights,
                             kid_subsets=kid_subsets, kid_subset_size=kid_subset_size, is_splits=is_splits,
                             ema=ema)
    if report is None:  # a rank other than 0 under torchrun: rank 0 reports
        return
    if json_:
        print_json(report)
    else:
        _print_table(report)


# ----------------------------------------------------------------------------- output


def _print_table(r: dict) -> None:
    rows: list[tuple[str, str]] = []
    m = r["metrics"]
    if "fid" in m:
        rows.append(("FID", f"{m['fid']:.4f}"))
    if "is" in m:
        rows.append(("IS", f"{m['is']['mean']:.4f} ± {m['is']['std']:.4f}  ({m['is']['splits']} splits)"))
    if "kid" in m:
        k = m["kid"]
        rows.append(("KID", f"{k['mean']:.6f} ± {k['std']:.6f}  ({k['subsets']} subsets of {k['subset_size']})"))
    if "pr" in m:
        rows.append(("precision", f"{m['pr']['precision']:.4f}  (k={m['pr']['k']})"))
        rows.append(("recall", f"{m['pr']['recall']:.4f}"))
    if "per_class" in r:
        pc = r["per_class"]
        rows.append(("FID per class, mean", f"{pc['mean']:.4f}  ({len(pc['classes'])} classes)"))
        for cname, v in pc["classes"].items():
            rows.append((f"  {cname}", f"{v['fid']:.4f}  ({v['fake_count']} fake, {v['real_count']} real)"))
    for label in ("fake", "real"):
        side = r[label]
        if side is None:
            continue
        what = {"checkpoint": f"{side['count']} images generated, seed {side.get('seed', 0)}",
                "stats": f"statistics of {side['count']} images"}.get(side["kind"], f"{side['count']} images")
        rows.append((label.upper(), f"{side['source']}  ({what})"))
    rows.append(("network", r["network"]))
    if "is_network" in r:
        rows.append(("IS network", r["is_network"]))
    if "saved_stats" in r:
        rows.append(("saved statistics", r["saved_stats"]))
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
