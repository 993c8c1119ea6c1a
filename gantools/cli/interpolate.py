"""`gantools interpolate CKPT`: walks through latent space (slerp by default) as grids, GIFs and streams."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from gantools.cli import app
from gantools.cli.common import QuietOpt, VerboseOpt, handle_errors, info, require_output_or_pipe, warn
from gantools.cli.names import complete_checkpoints, complete_devices

FPS_DEFAULT = 12.0  # --fps of a .gif


@app.command(
    help="Interpolate between latents of a checkpoint's generator.\n\n"
    "Endpoints: --seeds A,B,C walks one path through those seeds' latents (the latents of "
    "`gantools sample --seed`), or --rows R paths between random endpoints drawn from --seed. "
    "--steps K frames run from one endpoint to the next, both included. Models with latent codes "
    "(infogan) keep a path's codes at its first endpoint's; --code K sweeps the K-th continuous code "
    "instead, from -2 to 2 at --seed's z and codes, one row per value of the categorical code.\n\n"
    "OUT: x.png (a grid: one row per path, one column per step), x.gif (animated; each frame "
    "shows all rows side by side), a folder (numbered frames, row by row), x.npz or x.h5 (uint8 "
    "NHWC 'images', latents 'z', fractions 't', 'segment', 'row', and the codes 'c_cat', 'c_cont' of models "
    "with latent codes), or - (the image stream). "
    "Without -o the stream goes to stdout when it is a pipe.",
    epilog="Example: gantools interpolate ckpt.pt --seeds 3,17,42 --loop --steps 16 -o walk.gif",
)
@handle_errors
def interpolate(
    ckpt: Path = typer.Argument(..., help="A gantools checkpoint (.pt).", show_default=False,
                                autocompletion=complete_checkpoints),
    slerp: bool = typer.Option(True, "--slerp/--lerp", help="Spherical (default; linear where the endpoints are nearly parallel) or linear interpolation."),
    steps: int = typer.Option(8, "--steps", "-k", help="Frames per segment, both endpoints included (at least 2)."),
    seeds: Optional[str] = typer.Option(None, help="A path through these seeds' latents, e.g. 3,17,42."),
    rows: Optional[int] = typer.Option(None, help="Number of independent paths between random endpoints (default 4)."),
    seed: Optional[int] = typer.Option(None, help="Seed of the random endpoints of --rows (default 0)."),
    loop: bool = typer.Option(False, "--loop", help="Return to the first endpoint, and make a GIF loop forever (else it plays once)."),
    class_: Optional[str] = typer.Option(None, "--class", help="Conditional models: keep this class (index or name) (default: the class `sample --seed` gives the first endpoint)."),
    class_path: Optional[str] = typer.Option(None, "--class-path", help="Conditional models that embed labels: interpolate the class embedding from class A to B (A:B) at a fixed z."),
    code: Optional[int] = typer.Option(None, "--code", help="Models with continuous latent codes (infogan): sweep code K (from 1) from -2 to 2 at a fixed z, one row per categorical value."),
    truncation: Optional[float] = typer.Option(None, help="Draw endpoints from the normal truncated to [-T, T] (models whose z is normal)."),
    out: Optional[str] = typer.Option(None, "--out", "-o", help="Output: x.png, x.gif, folder, x.npz, x.h5 or - (stream)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing file OUT, or gantools' own earlier output in a folder OUT (files it did not write there are never touched)."),
    fps: float = typer.Option(FPS_DEFAULT, help="Frames per second of a GIF."),
    zoom: int = typer.Option(1, help="Enlarge .png and .gif pictures by this integer factor (nearest neighbour; at most 64, and the picture at most 16384 pixels a side)."),
    batch_size: int = typer.Option(256, "--batch-size", "-b", help="Frames generated per forward pass."),
    ema: bool = typer.Option(True, "--ema/--no-ema", help="Use the EMA generator when the checkpoint has one."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N or mps.", autocompletion=complete_devices),
    quiet: bool = QuietOpt,
    verbose: bool = VerboseOpt,
) -> None:
    from gantools.errors import UsageError

    # Option checks that need no checkpoint come first (numbers: handle_errors), so bad usage is reported fast.
    seed_list = None
    if seeds is not None:
        from gantools.interpolate import parse_seeds

        if rows is not None or seed is not None:
            raise UsageError("--seeds gives the endpoints; it cannot be combined with --rows or --seed")
        seed_list = parse_seeds(seeds)
        from gantools.options import range_for

        for s in seed_list:
            range_for("interpolate", "seed").check("--seeds", s)
    if class_ is not None and class_path is not None:
        raise UsageError("--class and --class-path cannot be combined")
    if code is not None:
        clash = next((flag for flag, v in (("--seeds", seeds), ("--rows", rows), ("--class", class_),
                                           ("--class-path", class_path)) if v is not None), None)
        if clash:
            raise UsageError(f"--code sweeps a code at --seed's latent; it cannot be combined with {clash}")
    if out is not None:
        from gantools.data.writers import check_output

        check_output(out, overwrite)  # an unknown suffix or an existing file: refused before any work

    from gantools.checkpoint import load_checkpoint
    from gantools.generate import is_conditional, load_generator, load_objective, model_spec, resolve_device
    from gantools.interpolate import plan, render

    ck = load_checkpoint(ckpt)
    model_spec(ck, ckpt)  # an unknown model: one line naming the file
    data = ck["data"]
    if data.get("kind") != "image":
        raise UsageError(f"{ckpt}: model {ck['model']!r} makes {data.get('kind')} data; interpolate draws images")
    class_names = list(data.get("class_names") or [])
    conditional = is_conditional(ck)
    if (class_ is not None or class_path is not None) and not conditional:
        flag = "--class" if class_ is not None else "--class-path"
        raise UsageError(f"{flag}: model {ck['model']!r} in {ckpt} is not conditional (it takes no class)")
    num_classes = int(data.get("num_classes", 0)) if conditional else 0
    class_index = _class_index(class_, class_names, num_classes)
    pair = None
    if class_path is not None:
        a, sep, b = class_path.partition(":")
        if not sep or not a or not b:
            raise UsageError(f"--class-path {class_path}: expected two classes as A:B (indices or names)")
        pair = (_class_index(a, class_names, num_classes, "--class-path"),
                _class_index(b, class_names, num_classes, "--class-path"))

    device_ = resolve_device(device)
    G = load_generator(ck, device_, ema, path=ckpt)
    if pair is not None and not getattr(G, "class_weights", False):
        raise UsageError(f"--class-path: model {ck['model']!r} does not embed its labels, so its class "
                         "embedding cannot be interpolated (use --class to keep one class)")
    z_dim = int(ck["hparams"]["z_dim"])
    objective, prior = load_objective(ck)
    if code is not None and not getattr(prior, "cont_codes", 0):
        raise UsageError(f"--code: model {ck['model']!r} in {ckpt} has no continuous latent codes")
    p = plan(z_dim, steps, seed_list, rows if rows is not None else 4, seed if seed is not None else 0,
             "slerp" if slerp else "lerp", loop, truncation, num_classes, class_index, pair, prior, code)
    target = require_output_or_pipe(out, "frames")
    _check_picture_size(p, ck["data"], target, zoom)
    _warn_unused(target, fps, zoom)
    what = f"code {code} sweep" if code is not None else "slerp" if slerp else "lerp"
    info(f"interpolate: {len(p.rows)} row(s) x {p.frames_per_row} frames ({what}"
         f"{', class path' if pair else ''}) -> {target}")
    _write(p, render(G, p, batch_size, device_, objective), target, fps, loop, zoom, class_names, overwrite)


def _warn_unused(out: str, fps: float, zoom: int) -> None:
    """A warning for --fps on an output other than .gif, and --zoom on one other than .png/.gif: they have no
    effect there."""
    suffix = "" if out == "-" else Path(out).suffix.lower()
    if fps != FPS_DEFAULT and suffix != ".gif":
        warn(f"--fps {fps:g}: only a .gif has a frame rate; {out} ignores it")
    if zoom != 1 and suffix not in (".png", ".gif"):
        warn(f"--zoom {zoom}: only .png and .gif pictures are enlarged; {out} keeps the model's size")


def _check_picture_size(p, data: dict, out: str, zoom: int) -> None:
    """Refuse (before any work) a --zoom that makes the .png grid or a .gif frame wider or taller than
    gantools.options.MAX_PICTURE_SIDE pixels."""
    from gantools.data.writers import output_kind
    from gantools.errors import UsageError
    from gantools.options import MAX_PICTURE_SIDE

    kind = output_kind(out)
    if kind not in ("png", "gif"):
        return
    cols, rows = (p.frames_per_row, len(p.rows)) if kind == "png" else (len(p.rows), 1)  # a GIF: rows side by side
    pad = 2 if cols * rows > 1 else 0  # make_grid's padding
    width = cols * (int(data["width"]) * zoom + pad) + pad
    height = rows * (int(data["height"]) * zoom + pad) + pad
    if max(width, height) > MAX_PICTURE_SIDE:
        raise UsageError(f"--zoom {zoom}: the {kind} would be {width}x{height} pixels; at most {MAX_PICTURE_SIDE} "
                         "a side (a smaller --zoom, or fewer --rows/--steps)")


def _class_index(value: Optional[str], class_names: list, num_classes: int, flag: str = "--class"):
    """A class given as an index or a name -> its index, checked against the model's classes."""
    from gantools.errors import UsageError
    from gantools.generate import resolve_class

    if value is None:
        return None
    try:
        index = resolve_class(value, class_names or [str(i) for i in range(num_classes)])
    except UsageError as e:
        raise UsageError(str(e).replace("--class", flag, 1)) from None
    if not 0 <= index < num_classes:
        raise UsageError(f"{flag} {value}: must be in 0..{num_classes - 1}")
    return index


def _write(p, batches, out: str, fps: float, loop: bool, zoom_: int, class_names: list,
           overwrite: bool) -> None:
    """Send the frames to OUT: a grid, a GIF of side-by-side rows, frames, arrays or the stream."""
    import numpy as np

    from gantools.data.writers import ImageWriter, output_kind
    from gantools.interpolate import tile_rows, zoom

    kind = output_kind(out)
    arrays = p.arrays()
    labels = p.labels()
    extra = {k: v for k, v in arrays.items() if k != "z"}
    with ImageWriter(out, nrow=p.frames_per_row, class_names=class_names, extra=extra, fps=fps,
                     loop=loop, overwrite=overwrite, count=len(arrays["z"])) as writer:
        if kind in ("png", "gif"):
            frames = np.concatenate(list(batches))
            if kind == "gif":
                frames = tile_rows(frames, len(p.rows))
            writer.write(zoom(frames, zoom_))
            return
        start = 0
        for images in batches:
            n = len(images)
            writer.write(images, None if labels is None else labels[start:start + n], arrays["z"][start:start + n])
            start += n
