"""`gantools sample CKPT -n N`: draw seeded samples to a folder, a grid, .npz, .h5 or the stream."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from gantools.cli import app
from gantools.cli.common import QuietOpt, VerboseOpt, handle_errors, require_output_or_pipe
from gantools.cli.names import complete_checkpoints, complete_devices


@app.command(
    help="Generate N samples from a checkpoint.\n\nOUT: a folder (numbered PNGs), x.png (one grid), "
    "x.npz or x.h5 (uint8 NHWC 'images', 'labels', latents 'z'), or - (the image stream: a tar of "
    "PNGs). Without -o the stream goes to stdout when it is a pipe. Vector models write CSV "
    "(stdout or x.csv), .npz or .h5 (array 'x').",
    epilog="Example: gantools sample ckpt.pt -n 10000 | gantools evaluate - --real ./faces",
)
@handle_errors
def sample(
    ckpt: Path = typer.Argument(..., help="A gantools checkpoint (.pt).", show_default=False,
                                autocompletion=complete_checkpoints),
    n: int = typer.Option(64, "-n", "--num", help="Number of samples."),
    out: Optional[str] = typer.Option(None, "--out", "-o", help="Output: folder, x.png, x.npz, x.h5 or - (stream)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing file OUT, or gantools' own earlier output in a folder OUT (files it did not write there are never touched)."),
    seed: int = typer.Option(0, help="Seed of the latents (the same seed gives the same images at any batch size)."),
    batch_size: int = typer.Option(256, "--batch-size", "-b", help="Images generated per forward pass."),
    class_: Optional[str] = typer.Option(None, "--class", help="Conditional models: a class, or a comma list "
                                         "(indices or names: 3,7 or cat,dog), taken in turn: image i gets the "
                                         "list's (i mod its length)-th class [default: all classes in turn]."),
    truncation: Optional[float] = typer.Option(None, help="Draw z from the normal truncated to [-T, T] (models whose z is normal; infogan's uniform z refuses it)."),
    temperature: Optional[float] = typer.Option(None, help="Scale z by T: N(0, T^2 I); bagan, bagan-gp: each class's Gaussian's spread. Above 1 more varied, below 1 more typical (models whose z is normal)."),
    nrow: int = typer.Option(8, help="Images per row of a .png grid."),
    ema: bool = typer.Option(True, "--ema/--no-ema", help="Use the EMA generator when the checkpoint has one."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N or mps.", autocompletion=complete_devices),
    quiet: bool = QuietOpt,
    verbose: bool = VerboseOpt,
) -> None:
    from gantools.checkpoint import load_checkpoint
    from gantools.generate import generate_batches, load_generator, resolve_classes, resolve_device

    ck = load_checkpoint(ckpt)
    device_ = resolve_device(device)
    classes = resolve_classes(class_, ck["data"].get("class_names") or [])
    G = load_generator(ck, device_, ema, path=ckpt)
    codes: dict = {}  # the prior's latent codes (infogan) beside z in .npz/.h5
    batches = generate_batches(ck, n, seed, batch_size, device_, classes, truncation, ema, G=G, codes=codes,
                               temperature=temperature)
    if ck["data"]["kind"] == "image":
        _write_images(batches, require_output_or_pipe(out, "images"), nrow, ck["data"].get("class_names") or [],
                      overwrite, n, codes)
    else:
        _write_vectors(batches, out, overwrite)


def _write_images(batches, out: str, nrow: int, class_names: list, overwrite: bool, count: int,
                  codes: dict | None = None) -> None:
    from gantools.data.writers import ImageWriter, output_kind

    if output_kind(out) == "gif":
        from gantools.errors import UsageError

        raise UsageError(f"{out}: sample writes a folder, .png, .npz, .h5 or -; GIFs come from `gantools interpolate`")
    with ImageWriter(out, nrow=nrow, class_names=class_names, overwrite=overwrite, count=count) as writer:
        for images, labels, z in batches:
            writer.write(images.permute(0, 2, 3, 1).numpy(), labels, z)
        writer.extra.update(codes or {})  # drawn with the first batch: written with the arrays at close


def _write_vectors(batches, out: Optional[str], overwrite: bool) -> None:
    """Vector samples: CSV on stdout or x.csv, or arrays in .npz/.h5 (an existing file only with overwrite)."""
    import sys

    import numpy as np

    from gantools.errors import UsageError
    from gantools.fsutil import atomic_path, check_target

    suffix = Path(out).suffix.lower() if out not in (None, "-") else None
    if suffix is not None:
        if suffix not in (".csv", ".npz", ".h5", ".hdf5"):
            raise UsageError(f"{out}: vector samples are written as .csv, .npz, .h5 or to stdout")
        check_target(out, overwrite)  # before generating anything
    xs, zs = [], []
    for x, _, z in batches:
        xs.append(x.numpy())
        zs.append(z)
    x, z = np.concatenate(xs), np.concatenate(zs)
    header = ",".join(f"x{i}" for i in range(x.shape[1]))
    if suffix is None:
        np.savetxt(sys.stdout, x, delimiter=",", header=header, comments="", fmt="%.6g")
        return
    with atomic_path(out, overwrite) as tmp:
        if suffix == ".csv":
            np.savetxt(tmp, x, delimiter=",", header=header, comments="", fmt="%.6g")
        elif suffix == ".npz":
            with open(tmp, "wb") as f:
                np.savez(f, x=x, z=z)
        else:
            import h5py

            with h5py.File(tmp, "w") as f:
                f.create_dataset("x", data=x)
                f.create_dataset("z", data=z)
