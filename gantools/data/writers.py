"""Write generated images to every output kind: a folder, a PNG grid, .npz, .h5, or the stream.

`ImageWriter(out, ...)` picks the kind from OUT ('-' is the stream on stdout);
writers take uint8 NHWC batches and publish atomically on `close()`, so an
error leaves no half-written output behind. A folder is a `fsutil.OutputFolder`:
files gantools did not write there are never touched; an existing file OUT is
refused when the writer is made (before any image is generated) unless `overwrite`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image

from gantools.errors import UsageError
from gantools.fsutil import OutputFolder, atomic_path, check_folder, check_target

FOLDER_KIND = "images"  # the kind of output folder ImageWriter writes (its manifest says so)
OUTPUT_KINDS = "a folder, x.png (grid), x.gif, x.npz, x.h5 or - (the image stream)"


def output_kind(out: str) -> str:
    """'stream', 'png', 'gif', 'npz', 'h5' or 'folder' for an OUT argument."""
    if out == "-":
        return "stream"
    suffix = Path(out).suffix.lower()
    if suffix in (".png", ".jpg", ".jpeg", ".webp"):
        return "png"
    if suffix == ".gif":
        return "gif"
    if suffix == ".npz":
        return "npz"
    if suffix in (".h5", ".hdf5"):
        return "h5"
    if suffix:
        raise UsageError(f"{out}: unknown output kind {suffix!r} (give {OUTPUT_KINDS})")
    return "folder"


def check_output(out: str, overwrite: bool = False) -> str:
    """The kind of OUT; an unknown suffix or (unless `overwrite`) an existing file is refused: call it
    before any work."""
    kind = output_kind(out)
    if kind == "folder":
        check_folder(out, FOLDER_KIND, overwrite)
    elif kind != "stream":
        check_target(out, overwrite)
    return kind


def make_grid(images: np.ndarray, nrow: int, padding: int = 2) -> np.ndarray:
    """uint8 NHWC images -> one uint8 HWC grid with `nrow` images per row (torchvision's make_grid)."""
    import torch
    from torchvision.utils import make_grid as tv_make_grid

    t = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
    grid = tv_make_grid(t, nrow=max(1, nrow), padding=padding, pad_value=0)
    grid = grid.permute(1, 2, 0).numpy()
    return grid[:, :, :1] if images.shape[3] == 1 else grid


def _to_pil(image: np.ndarray) -> Image.Image:
    return Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image)


class ImageWriter:
    """Collects or streams uint8 NHWC batches; `close()` publishes, `abort()` discards."""

    def __init__(self, out: str, nrow: int = 8, class_names: list[str] | None = None,
                 extra: dict | None = None, fps: float = 12.0, loop: bool = True,
                 stdout: BinaryIO | None = None, overwrite: bool = False, count: int | None = None):
        self.out, self.kind, self.nrow = out, check_output(out, overwrite), nrow
        self.class_names = class_names or []
        self.extra = dict(extra or {})  # more arrays for npz/h5 (e.g. interpolation fractions)
        self.fps, self.loop = fps, loop  # GIF: frames per second, loop forever or play once
        self.count, self.overwrite = 0, overwrite
        self._batches: list[tuple[np.ndarray, np.ndarray | None, np.ndarray | None]] = []
        if self.kind == "stream":
            from gantools.data.stream import StreamWriter

            # the image count, when known, goes into the stream's header: readers then tell a cut stream
            self._stream = StreamWriter(stdout or sys.stdout.buffer, self.class_names, count=count)
        elif self.kind == "folder":
            # overwrite: replace gantools' own earlier images there (see OutputFolder)
            self._folder = OutputFolder(out, FOLDER_KIND, overwrite)

    def write(self, images: np.ndarray, labels: np.ndarray | None = None, z: np.ndarray | None = None) -> None:
        """Add a batch of uint8 NHWC images with optional labels and latents."""
        if self.kind == "stream":
            self._stream.write(images, labels, z)
        elif self.kind == "folder":
            for i, img in enumerate(images):
                _to_pil(img).save(self._folder.path(f"{self.count + i:06d}.png"), format="PNG", compress_level=1)
        else:
            self._batches.append((images, labels, z))
        self.count += len(images)

    def _gathered(self):
        images = np.concatenate([b[0] for b in self._batches])
        # every image has a label: -1 where none (an unconditional model), as in the stream's meta.npz
        labels = np.concatenate([np.full(len(b[0]), -1, np.int64) if b[1] is None else b[1] for b in self._batches])
        z = None if any(b[2] is None for b in self._batches) else np.concatenate([b[2] for b in self._batches])
        return images, labels, z

    def close(self) -> None:
        """Publish the output (rename the temporary file or the folder's new files into place)."""
        if self.kind == "stream":
            self._stream.close()
            return
        if self.kind == "folder":
            self._folder.commit()
            return
        images, labels, z = self._gathered()
        with atomic_path(self.out, self.overwrite) as tmp:
            if self.kind == "png":
                _to_pil(make_grid(images, self.nrow)).save(tmp, format=_pil_format(self.out))
            elif self.kind == "gif":
                self._write_gif(images, tmp)
            elif self.kind == "npz":
                arrays = {"images": images, **self.extra}
                if labels is not None:
                    arrays["labels"] = labels.astype(np.int64)
                if z is not None:
                    arrays["z"] = z.astype(np.float32)
                if self.class_names:
                    arrays["class_names"] = np.array(self.class_names)
                with open(tmp, "wb") as f:
                    np.savez(f, **arrays)
            elif self.kind == "h5":
                import h5py

                with h5py.File(tmp, "w") as f:
                    f.create_dataset("images", data=images, compression="gzip", compression_opts=1)
                    if labels is not None:
                        f.create_dataset("labels", data=labels.astype(np.int64))
                    if z is not None:
                        f.create_dataset("z", data=z.astype(np.float32))
                    for k, v in self.extra.items():
                        f.create_dataset(k, data=v)
                    if self.class_names:
                        f.attrs["class_names"] = np.array(self.class_names, dtype=h5py.string_dtype())

    def _write_gif(self, frames: np.ndarray, path: Path) -> None:
        """Each written image is one frame (callers tile rows side by side first)."""
        pil = [_to_pil(f) for f in frames]
        kwargs = {"loop": 0} if self.loop else {}
        pil[0].save(path, format="GIF", save_all=True, append_images=pil[1:],
                    duration=max(1, round(1000 / self.fps)), **kwargs)

    def abort(self) -> None:
        """Discard what was written (the stream cannot be taken back; it is left unterminated)."""
        if self.kind == "folder":
            self._folder.discard()

    def __enter__(self) -> "ImageWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _pil_format(out: str) -> str:
    return {".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}.get(Path(out).suffix.lower(), "PNG")


def scatter_png(points: np.ndarray, path, real: np.ndarray | None = None, size: int = 512) -> None:
    """A plot of 2-D points (generated in red over real in grey) as a PNG; the axes fit both sets."""
    from PIL import ImageDraw

    sets = [p for p in (real, points) if p is not None and len(p)]
    lim = float(max(np.abs(np.concatenate(sets)).max(), 1e-3)) * 1.1
    img = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    draw.line([(size // 2, 0), (size // 2, size)], fill=(230, 230, 230))
    draw.line([(0, size // 2), (size, size // 2)], fill=(230, 230, 230))
    for pts, color in ((real, (170, 170, 170)), (points, (214, 39, 40))):
        if pts is None:
            continue
        px = (pts[:, 0] / lim + 1) * (size - 1) / 2
        py = (1 - pts[:, 1] / lim) * (size - 1) / 2
        for x, y in zip(px, py):
            if np.isfinite(x) and np.isfinite(y):
                draw.ellipse([x - 1.5, y - 1.5, x + 1.5, y + 1.5], fill=color)
    img.save(path, format="PNG")
