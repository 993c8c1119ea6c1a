"""The image stream: an uncompressed tar of PNGs with a JSON header and an npz sidecar.

Layout (see docs/ARCHITECTURE.md): `stream.json`, then `000000.png`, `000001.png`,
..., then optionally `meta.npz` with `labels` (int64, -1 = none) and `z` (float32).
It is written and read sequentially, so it works through pipes, and `tar -t`
lists it.
"""

from __future__ import annotations

import io
import json
import tarfile
import time
from typing import BinaryIO, Iterator

import numpy as np
from PIL import Image

from gantools.errors import GantoolsError

STREAM_FORMAT = "gantools-image-stream"
STREAM_VERSION = 1
HEADER_NAME = "stream.json"
META_NAME = "meta.npz"


def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of one uint8 HWC (C = 1 or 3) or HW image; fast compression."""
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


class StreamWriter:
    """Write the image stream to a binary file object, batch by batch."""

    def __init__(self, fileobj: BinaryIO, class_names: list[str] | None = None):
        self._tar = tarfile.open(fileobj=fileobj, mode="w|", format=tarfile.USTAR_FORMAT)
        self._count = 0
        self._labels: list[np.ndarray] = []
        self._z: list[np.ndarray] = []
        header = {"format": STREAM_FORMAT, "version": STREAM_VERSION, "class_names": class_names or []}
        self._add(HEADER_NAME, json.dumps(header).encode())

    def _add(self, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mtime = int(time.time())
        info.mode = 0o644
        self._tar.addfile(info, io.BytesIO(data))

    def write(self, images: np.ndarray, labels: np.ndarray | None = None, z: np.ndarray | None = None) -> None:
        """Append uint8 NHWC images (with optional per-image labels and latents)."""
        for img in images:
            self._add(f"{self._count:06d}.png", encode_png(img))
            self._count += 1
        n = len(images)
        self._labels.append(np.full(n, -1, np.int64) if labels is None else np.asarray(labels, np.int64))
        if z is not None:
            self._z.append(np.asarray(z, np.float32).reshape(n, -1))

    def close(self) -> None:
        meta = {"labels": np.concatenate(self._labels) if self._labels else np.zeros(0, np.int64)}
        if self._z and sum(len(z) for z in self._z) == self._count:
            meta["z"] = np.concatenate(self._z)
        buf = io.BytesIO()
        np.savez(buf, **meta)
        self._add(META_NAME, buf.getvalue())
        self._tar.close()


def read_stream(fileobj: BinaryIO, name: str = "-") -> Iterator[tuple[str, object]]:
    """Read the stream sequentially. Yields ("header", dict), ("image", PIL.Image) per image,
    and ("meta", dict of arrays) at the end if present. Raises GantoolsError on a bad stream."""
    try:
        tar = tarfile.open(fileobj=fileobj, mode="r|")
    except tarfile.TarError:
        raise GantoolsError(f"{name}: not a gantools image stream (expected a tar of PNGs on stdin)") from None
    try:
        for member in tar:
            if not member.isfile():
                continue
            data = tar.extractfile(member).read()
            base = member.name.rsplit("/", 1)[-1]
            if base == HEADER_NAME:
                try:
                    header = json.loads(data)
                except ValueError:
                    raise GantoolsError(f"{name}: damaged stream header {HEADER_NAME}") from None
                if header.get("format") != STREAM_FORMAT or header.get("version") != STREAM_VERSION:
                    raise GantoolsError(f"{name}: unsupported stream format {header.get('format')!r} "
                                        f"version {header.get('version')!r}")
                yield "header", header
            elif base == META_NAME:
                with np.load(io.BytesIO(data), allow_pickle=False) as f:
                    yield "meta", {k: f[k] for k in f.files}
            else:
                try:
                    img = Image.open(io.BytesIO(data))
                    img.load()
                except Exception:
                    yield "bad", member.name
                    continue
                yield "image", img
    except (tarfile.TarError, EOFError, OSError) as e:
        raise GantoolsError(f"{name}: truncated or damaged image stream ({e})") from None
