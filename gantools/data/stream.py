"""The image stream: an uncompressed tar of PNGs with a JSON header and an npz sidecar.

Layout (see docs/FORMATS.md): `stream.json`, then `000000.png`, `000001.png`,
..., then optionally `meta.npz` with `labels` (int64, -1 = none) and `z` (float32),
then the tar end marker. It is written and read sequentially, so it works through
pipes, and `tar -t` lists it. A stream without its end marker (cut short), or with
another number of images than its header's `count`, is refused.
"""

from __future__ import annotations

import io
import json
import tarfile
import time
import zipfile
from typing import BinaryIO, Iterator

import numpy as np
from PIL import Image

from gantools.errors import GantoolsError

STREAM_FORMAT = "gantools-image-stream"
STREAM_VERSION = 2  # 2 added the header's "count"
READABLE_VERSIONS = (1, 2)
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
    """Write the image stream to a binary file object, batch by batch.

    `count`, when the caller knows it up front, goes into the header: the reader then
    insists on exactly that many images, and `close()` refuses to end the stream with
    any other number."""

    def __init__(self, fileobj: BinaryIO, class_names: list[str] | None = None, count: int | None = None):
        if count is not None and (not isinstance(count, int) or count < 0):
            raise ValueError(f"count must be a non-negative int or None, not {count!r}")
        self._tar = tarfile.open(fileobj=fileobj, mode="w|", format=tarfile.USTAR_FORMAT)
        self._count = 0
        self._expected = count
        self._labels: list[np.ndarray] = []
        self._z: list[np.ndarray] = []
        header = {"format": STREAM_FORMAT, "version": STREAM_VERSION, "class_names": class_names or [],
                  "count": count}
        self._add(HEADER_NAME, json.dumps(header).encode())

    def _add(self, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mtime = int(time.time())
        info.mode = 0o644
        self._tar.addfile(info, io.BytesIO(data))

    def write(self, images: np.ndarray, labels: np.ndarray | None = None, z: np.ndarray | None = None) -> None:
        """Append uint8 NHWC images (with optional per-image labels and latents)."""
        if self._expected is not None and self._count + len(images) > self._expected:
            raise ValueError(f"the stream's header promised {self._expected} images; "
                             f"{self._count + len(images)} written")
        for img in images:
            self._add(f"{self._count:06d}.png", encode_png(img))
            self._count += 1
        n = len(images)
        self._labels.append(np.full(n, -1, np.int64) if labels is None else np.asarray(labels, np.int64))
        if z is not None:
            self._z.append(np.asarray(z, np.float32).reshape(n, -1))

    def close(self) -> None:
        """Write `meta.npz` and the tar end marker (a stream without them reads as cut short)."""
        if self._expected is not None and self._count != self._expected:
            raise ValueError(f"the stream's header promised {self._expected} images; only {self._count} written")
        meta = {"labels": np.concatenate(self._labels) if self._labels else np.zeros(0, np.int64)}
        if self._z and sum(len(z) for z in self._z) == self._count:
            meta["z"] = np.concatenate(self._z)
        buf = io.BytesIO()
        np.savez(buf, **meta)
        self._add(META_NAME, buf.getvalue())
        self._tar.close()


class _EndNotingMember(tarfile.TarInfo):
    """Notes on its TarFile (`ended`) whether the archive closes with the end marker, two zero
    blocks: tarfile stops silently wherever the data stops, so a cut archive reads as complete."""

    @classmethod
    def fromtarfile(cls, tar):
        try:
            return super().fromtarfile(tar)
        except tarfile.EOFHeaderError:  # one zero block: the end marker when a second follows
            tar.ended = tar.fileobj.read(tarfile.BLOCKSIZE) == bytes(tarfile.BLOCKSIZE)
            raise


def _check_header(header: object, name: str) -> dict:
    """The parsed `stream.json`, or GantoolsError for another format, an unknown version or a bad count."""
    if not isinstance(header, dict) or header.get("format") != STREAM_FORMAT:
        fmt = header.get("format") if isinstance(header, dict) else None
        raise GantoolsError(f"{name}: {HEADER_NAME} is not a {STREAM_FORMAT} header (format {fmt!r})")
    if header.get("version") not in READABLE_VERSIONS:
        raise GantoolsError(f"{name}: unsupported {STREAM_FORMAT} version {header.get('version')!r} "
                            f"(this gantools reads versions {', '.join(map(str, READABLE_VERSIONS))})")
    count = header.get("count")
    if count is not None and (type(count) is not int or count < 0):
        raise GantoolsError(f"{name}: damaged stream header {HEADER_NAME} (count {count!r})")
    return header


def _load_meta(data: bytes, name: str) -> dict:
    """The arrays of `meta.npz`, never unpickling anything."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise GantoolsError(f"{name}: unreadable {META_NAME} in the image stream ({e})") from None


def read_stream(fileobj: BinaryIO, name: str = "-") -> Iterator[tuple[str, object]]:
    """Read the stream sequentially. Yields ("header", dict), ("image", PIL.Image) per image
    (("bad", member name) for one that does not decode), and ("meta", dict of arrays) at the
    end if present. Raises GantoolsError on a bad stream, including one cut short: no tar end
    marker, or fewer images than the header's count."""
    try:
        tar = tarfile.open(fileobj=fileobj, mode="r|", tarinfo=_EndNotingMember)
    except tarfile.TarError:
        raise GantoolsError(f"{name}: not a gantools image stream (expected a tar of PNGs on stdin)") from None
    count, images = None, 0
    try:
        for member in tar:
            if not member.isfile():
                continue
            data = tar.extractfile(member).read()
            base = member.name.rsplit("/", 1)[-1]
            if base == HEADER_NAME:
                try:
                    header = _check_header(json.loads(data), name)
                except ValueError:
                    raise GantoolsError(f"{name}: damaged stream header {HEADER_NAME}") from None
                count = header.get("count")
                yield "header", header
            elif base == META_NAME:
                yield "meta", _load_meta(data, name)
            else:
                images += 1
                try:
                    img = Image.open(io.BytesIO(data))
                    img.load()
                except Exception:
                    yield "bad", member.name
                    continue
                yield "image", img
    except (tarfile.TarError, EOFError, OSError) as e:
        raise GantoolsError(f"{name}: truncated or damaged image stream ({e})") from None
    if not getattr(tar, "ended", False):
        raise GantoolsError(f"{name}: the image stream stops without its tar end marker after "
                            f"{images} image(s): cut short or damaged")
    if count is not None and images != count:
        raise GantoolsError(f"{name}: the image stream holds {images} images, its header says {count}")
