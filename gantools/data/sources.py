"""Every data source gantools reads, turned into an `ImageSet` or a `VectorSet`.

Accepted: a folder of images (recursive), a folder of class subfolders, a
`.zip` of either (optionally `x.zip/inner/folder`), `.h5`/`.hdf5` (`images`,
optional `labels`), `.npz` (`images` or `x`, optional `labels` or `y`), `.npy`,
MNIST-style IDX files (`*-ubyte[.gz]`, or a folder holding them), the image
stream `-`, and the built-in `toy:ring`, `toy:grid`, `toy:shapes`.

Images are held as uint8 NCHW and normalised to [-1, 1] only when used.
A set that fits the memory budget is decoded once into one tensor; a larger
folder or zip is decoded lazily through a DataLoader with workers.
"""

from __future__ import annotations

import gzip
import io
import os
import re
import struct
import sys
import threading
import zipfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from PIL import Image

from gantools.errors import GantoolsError, UsageError
from gantools.log import debug, warn

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
DEFAULT_MEMORY_BUDGET = 4 << 30  # bytes of decoded uint8 pixels held in memory


def memory_budget() -> int:
    """Bytes of decoded pixels to hold in memory: $GANTOOLS_MEMORY_BUDGET (e.g. 2G, 512M) or 4 GiB."""
    raw = os.environ.get("GANTOOLS_MEMORY_BUDGET")
    if not raw:
        return DEFAULT_MEMORY_BUDGET
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgG]?)[bB]?\s*", raw)
    if not m:
        raise UsageError(f"GANTOOLS_MEMORY_BUDGET={raw!r}: expected bytes like 512M or 4G")
    scale = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[m.group(2).lower()]
    return int(float(m.group(1)) * scale)


# ----------------------------------------------------------------------------- sets


class ImageSet:
    """Images as uint8 NCHW (in memory, or decoded lazily), with optional integer labels. `files`: for
    folder and zip sources, each image's file as (path, zip member or None), row for row."""

    kind = "image"

    def __init__(
        self,
        images: torch.Tensor | None,
        labels: torch.Tensor | None,
        class_names: Sequence[str],
        source: str,
        lazy: "LazyImages | None" = None,
        files: list[tuple[str, str | None]] | None = None,
    ):
        self.images = images
        self.labels = labels
        self.class_names = list(class_names)
        self.source = source
        self.lazy = lazy
        self.files = files
        shape = images.shape[1:] if images is not None else lazy.shape
        self.channels, self.height, self.width = (int(s) for s in shape)

    @property
    def resolution(self) -> int:
        return self.height

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.images) if self.images is not None else len(self.lazy)

    def in_memory(self) -> "ImageSet":
        """This set with every image decoded into memory (a lazy set's unreadable files left out, with a
        warning, and out of `files` too)."""
        if self.images is not None:
            return self
        return _decoded(self.lazy.entries, self.lazy.target, self.class_names, self.source)

    def spec(self) -> dict:
        """The data spec stored in checkpoints."""
        return {
            "kind": "image",
            "channels": self.channels,
            "resolution": self.height,
            "height": self.height,
            "width": self.width,
            "value_range": [-1.0, 1.0],
            "num_classes": self.num_classes,
            "class_names": self.class_names,
            "source": self.source,
        }

    def to(self, device: torch.device | str) -> "ImageSet":
        """Move an in-memory set (pixels and labels) to a device; lazy sets stay on the host."""
        if self.images is not None:
            self.images = self.images.to(device)
            if self.labels is not None:
                self.labels = self.labels.to(device)
        return self

    def batches(
        self,
        batch_size: int,
        order: torch.Tensor | None = None,
        drop_last: bool = False,
        num_workers: int | None = None,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        """Batches of (uint8 NCHW, int64 labels or None) in `order` (indices; default: as stored)."""
        if self.images is None:
            yield from self.lazy.batches(batch_size, order, drop_last, num_workers)
            return
        n = len(self) if order is None else len(order)
        stop = n - n % batch_size if drop_last else n
        for start in range(0, stop, batch_size):
            if order is None:
                sl = slice(start, min(start + batch_size, n))
                yield self.images[sl], (self.labels[sl] if self.labels is not None else None)
            else:
                idx = order[start:start + batch_size].to(self.images.device)
                yield self.images[idx], (self.labels[idx] if self.labels is not None else None)


class VectorSet:
    """Flat float vectors (e.g. the 2-D toy sets), N x dim."""

    kind = "vector"

    def __init__(self, data: torch.Tensor, source: str, modes: np.ndarray | None = None):
        self.data = data
        self.source = source
        self.modes = modes  # toy sets: the mixture component of each point (not a class label)
        self.labels = None
        self.class_names: list[str] = []
        self.dim = int(data.shape[1])

    def __len__(self) -> int:
        return len(self.data)

    def spec(self) -> dict:
        return {"kind": "vector", "dim": self.dim, "value_range": None, "num_classes": 0,
                "class_names": [], "source": self.source}

    def to(self, device) -> "VectorSet":
        self.data = self.data.to(device)
        return self

    def batches(self, batch_size: int, order: torch.Tensor | None = None, drop_last: bool = False,
                num_workers: int | None = None):
        """Batches of (float N x dim, None) in `order` (indices; default: as stored)."""
        n = len(self) if order is None else len(order)
        stop = n - n % batch_size if drop_last else n
        for start in range(0, stop, batch_size):
            if order is None:
                yield self.data[start:start + batch_size], None
            else:
                yield self.data[order[start:start + batch_size].to(self.data.device)], None


# ------------------------------------------------------------------ decoding helpers


@dataclass
class _Target:
    channels: int
    height: int
    width: int


def _pil_to_array(img: Image.Image, target: _Target) -> np.ndarray:
    """Decode one PIL image to uint8 HWC at the target size and channels (shorter side + centre crop)."""
    mode = "L" if target.channels == 1 else "RGB"
    if img.mode != mode:
        if img.mode in ("RGBA", "LA", "P") and mode == "RGB":
            img = img.convert("RGBA").convert("RGB")
        img = img.convert(mode)
    if img.size != (target.width, target.height):
        img = _resize_crop(img, target.width, target.height)
    arr = np.asarray(img, dtype=np.uint8)
    return arr[:, :, None] if arr.ndim == 2 else arr


def _resize_crop(img: Image.Image, width: int, height: int) -> Image.Image:
    w, h = img.size
    scale = max(width / w, height / h)
    nw, nh = max(width, round(w * scale)), max(height, round(h * scale))
    if (nw, nh) != (w, h):
        img = img.resize((nw, nh), Image.BICUBIC)
    left, top = (nw - width) // 2, (nh - height) // 2
    return img.crop((left, top, left + width, top + height))


class _Entry:
    """One image file, on disk or inside a zip; opened on demand (picklable for workers)."""

    __slots__ = ("path", "member", "label")

    def __init__(self, path: str, member: str | None, label: int):
        self.path, self.member, self.label = path, member, label

    def name(self) -> str:
        return f"{self.path}/{self.member}" if self.member else self.path

    def open(self, zips: dict) -> Image.Image:
        if self.member is None:
            img = Image.open(self.path)
        else:
            zf = zips.get(self.path)
            if zf is None:
                zf = zips[self.path] = zipfile.ZipFile(self.path)
            img = Image.open(io.BytesIO(zf.read(self.member)))
        img.load()
        return img


def _decode_entries(entries: list[_Entry], target: _Target, threads: int = 4):
    """Decode entries in parallel threads (PIL releases the GIL); returns (arrays, ok mask, bad names).

    Each thread keeps its own open zip files: opening a zip parses its whole
    central directory, which costs more than decoding hundreds of small images.
    """
    out = np.empty((len(entries), target.height, target.width, target.channels), np.uint8)
    ok = np.zeros(len(entries), bool)
    local = threading.local()
    chunk = 512

    def work(start: int) -> list[str]:
        zips = local.__dict__.setdefault("zips", {})
        failed = []
        for i in range(start, min(start + chunk, len(entries))):
            try:
                out[i] = _pil_to_array(entries[i].open(zips), target)
                ok[i] = True
            except Exception:
                failed.append(entries[i].name())
        return failed

    bad: list[str] = []
    with ThreadPoolExecutor(max_workers=max(1, min(threads, os.cpu_count() or 1))) as pool:
        for failed in pool.map(work, range(0, len(entries), chunk)):
            bad.extend(failed)
    return out, ok, bad


def _warn_skipped(source: str, bad: list[str]) -> None:
    if bad:
        warn(f"{source}: skipped {len(bad)} unreadable file{'s' if len(bad) > 1 else ''} (first: {bad[0]})")


def _probe_target(entries: list[_Entry], resolution: int | None, channels: int | None, source: str) -> _Target:
    """Infer channels (grey if every probed image is grey) and size (the most common) from a sample."""
    sizes: Counter = Counter()
    grey = True
    zips: dict = {}
    step = max(1, len(entries) // 64)
    for e in entries[::step][:64]:
        try:
            img = e.open(zips)
        except Exception:
            continue
        sizes[img.size] += 1
        grey = grey and img.mode in ("L", "1", "I;16", "I", "LA")
    for zf in zips.values():
        zf.close()
    if not sizes:
        raise GantoolsError(f"{source}: no readable images (the first {min(len(entries), 64)} tried all failed)")
    (w, h), _ = sizes.most_common(1)[0]
    if len(sizes) > 1 and resolution is None:
        warn(f"{source}: images differ in size; resizing all to {w}x{h} (the most common; set --resolution)")
    if resolution is not None:
        w = h = resolution
    return _Target(channels or (1 if grey else 3), h, w)


class LazyImages(torch.utils.data.Dataset):
    """Images decoded on demand, for sets over the memory budget."""

    def __init__(self, entries: list[_Entry], target: _Target):
        self.entries, self.target = entries, target
        self.shape = (target.channels, target.height, target.width)
        self._zips: dict = {}

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i: int):
        e = self.entries[i]
        try:
            arr = _pil_to_array(e.open(self._zips), self.target)
            ok = True
        except Exception:
            arr, ok = np.zeros((self.target.height, self.target.width, self.target.channels), np.uint8), False
        return torch.from_numpy(arr).permute(2, 0, 1), e.label, ok

    def batches(self, batch_size, order, drop_last, num_workers):
        workers = min(4, os.cpu_count() or 1) if num_workers is None else num_workers
        # the loader seeds its workers from `generator` (nothing here is random): its own generator leaves
        # torch's global RNG, which training checkpoints and restores, as it was
        loader = torch.utils.data.DataLoader(
            self, batch_size=batch_size, sampler=order.tolist() if order is not None else None,
            drop_last=drop_last, num_workers=workers, persistent_workers=False, generator=torch.Generator(),
        )
        skipped = 0
        for x, y, ok in loader:
            if not ok.all():
                skipped += int((~ok).sum())
                x, y = x[ok], y[ok]
            yield x, (y if y.min() >= 0 else None)
        if skipped:
            warn(f"skipped {skipped} unreadable images while streaming")


# ------------------------------------------------------------------ array sources


def _arrays_to_set(images: np.ndarray, labels: np.ndarray | None, source: str,
                   resolution: int | None, channels: int | None, class_names=None):
    """Array of images (NHWC, NCHW or NHW; uint8 or float in [0,1]/[-1,1]) or N x d vectors -> set."""
    images = np.asarray(images)
    if images.ndim == 2 and images.dtype.kind == "f":
        return VectorSet(torch.from_numpy(images.astype(np.float32)), source)
    if images.ndim == 3:
        images = images[:, None]
    elif images.ndim == 4:
        if images.shape[-1] in (1, 3, 4) and images.shape[1] not in (1, 3, 4):
            images = images.transpose(0, 3, 1, 2)
        elif images.shape[1] not in (1, 3, 4):
            raise GantoolsError(f"{source}: cannot tell the channel axis of images shaped {images.shape}")
    else:
        raise GantoolsError(f"{source}: images must be N x H x W or N x H x W x C (got shape {images.shape})")
    if len(images) == 0:
        raise GantoolsError(f"{source}: holds no images")
    if images.dtype != np.uint8:
        if images.dtype.kind not in "fiu":
            raise GantoolsError(f"{source}: images of type {images.dtype} are not pixels")
        x = images.astype(np.float32)
        lo, hi = float(x.min()), float(x.max())
        if images.dtype.kind == "f" and lo >= -1.0 - 1e-6 and hi <= 1.0 + 1e-6:
            x = (x + 1) * 127.5 if lo < 0 else x * 255.0
        images = np.clip(np.rint(x), 0, 255).astype(np.uint8)
    if images.shape[1] == 4:
        images = images[:, :3]
    t = torch.from_numpy(np.ascontiguousarray(images))
    t = _convert_tensor(t, resolution, channels)
    lab = None
    if labels is not None and np.asarray(labels).dtype.kind == "i" and (np.asarray(labels) < 0).all():
        labels = None  # -1 = none (an unconditional model's samples, as in the stream's meta.npz)
    if labels is not None:
        labels = np.asarray(labels).reshape(-1)
        if len(labels) != len(t):
            raise GantoolsError(f"{source}: {len(labels)} labels for {len(t)} images")
        lab, class_names = _encode_labels(labels, class_names)
    return ImageSet(t, lab, class_names or [], source)


def _encode_labels(labels: np.ndarray, class_names=None):
    """Labels as int64 0..K-1 with names; integer labels keep their values as names."""
    if labels.dtype.kind in "iu":
        k = int(labels.max()) + 1 if len(labels) else 0
        names = list(class_names) if class_names is not None and len(class_names) >= k else [str(i) for i in range(k)]
        return torch.from_numpy(labels.astype(np.int64)), names
    values = [v.decode() if isinstance(v, bytes) else str(v) for v in labels]
    names = sorted(set(values))
    index = {n: i for i, n in enumerate(names)}
    return torch.tensor([index[v] for v in values], dtype=torch.int64), names


def _convert_tensor(t: torch.Tensor, resolution: int | None, channels: int | None) -> torch.Tensor:
    """uint8 NCHW: change channels (grey <-> RGB) and size (shorter side + centre crop) if asked."""
    from torchvision.transforms.v2 import functional as TF

    if channels is not None and channels != t.shape[1]:
        if channels == 3 and t.shape[1] == 1:
            t = t.expand(-1, 3, -1, -1).contiguous()
        elif channels == 1 and t.shape[1] == 3:
            t = TF.rgb_to_grayscale(t)
        else:
            raise UsageError(f"cannot convert {t.shape[1]} channels to {channels}")
    if resolution is not None and (t.shape[2] != resolution or t.shape[3] != resolution):
        out = []
        for start in range(0, len(t), 4096):
            b = TF.resize(t[start:start + 4096], resolution, antialias=True)
            out.append(TF.center_crop(b, [resolution, resolution]))
        t = torch.cat(out)
    return t


def _read_idx(path: Path) -> np.ndarray:
    """An IDX file (MNIST format), optionally gzipped."""
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
        zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
        if zero != 0 or dtype_code not in _IDX_TYPES:
            raise ValueError("bad magic number")
        dims = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
        dtype = np.dtype(_IDX_TYPES[dtype_code]).newbyteorder(">")
        count = int(np.prod(dims))
        data = np.frombuffer(raw, dtype, count=count, offset=4 + 4 * ndim)
    except (OSError, ValueError, struct.error, EOFError) as e:
        raise GantoolsError(f"{path}: not a readable IDX file ({e})") from None
    return data.astype(data.dtype.newbyteorder("=")).reshape(dims)


_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.int16, 0x0C: np.int32, 0x0D: np.float32, 0x0E: np.float64}


def _idx_labels_for(path: Path) -> Path | None:
    name = path.name
    for a, b in (("images-idx3", "labels-idx1"), ("images.idx3", "labels.idx1"), ("-images", "-labels")):
        if a in name:
            cand = path.with_name(name.replace(a, b))
            if cand.exists():
                return cand
    return None


def _open_idx(path: Path, source: str, resolution, channels):
    images = _read_idx(path)
    lab_path = _idx_labels_for(path)
    labels = _read_idx(lab_path) if lab_path else None
    return _arrays_to_set(images, labels, source, resolution, channels)


def _open_npz(path: Path, source: str, resolution, channels):
    try:
        with np.load(path, allow_pickle=False) as f:
            key = next((k for k in ("images", "x") if k in f.files), None)
            if key is None:
                raise GantoolsError(f"{path}: no 'images' or 'x' array (found: {', '.join(f.files) or 'none'})")
            images = f[key]
            lkey = next((k for k in ("labels", "y") if k in f.files), None)
            labels = f[lkey] if lkey else None
            names = [str(s) for s in f["class_names"]] if "class_names" in f.files else None
    except GantoolsError:
        raise
    except Exception as e:
        raise GantoolsError(f"{path}: not a readable .npz file ({type(e).__name__}: {e})") from None
    return _arrays_to_set(images, labels, source, resolution, channels, names)


def _open_npy(path: Path, source: str, resolution, channels):
    try:
        images = np.load(path, allow_pickle=False)
    except Exception as e:
        raise GantoolsError(f"{path}: not a readable .npy file ({type(e).__name__}: {e})") from None
    return _arrays_to_set(images, None, source, resolution, channels)


def _open_h5(path: Path, source: str, resolution, channels):
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if "images" not in f:
                raise GantoolsError(f"{path}: no 'images' dataset (found: {', '.join(f.keys()) or 'none'})")
            images = f["images"][()]
            labels = f["labels"][()] if "labels" in f else None
            names = None
            if "class_names" in f.attrs:
                names = [n.decode() if isinstance(n, bytes) else str(n) for n in f.attrs["class_names"]]
    except GantoolsError:
        raise
    except Exception as e:
        raise GantoolsError(f"{path}: not a readable HDF5 file ({type(e).__name__}: {str(e).splitlines()[0]})") from None
    return _arrays_to_set(images, labels, source, resolution, channels, names)


# ------------------------------------------------------------------ file sources


def _label_entries(items: list[tuple[str, str | None, str]], source: str) -> tuple[list[_Entry], list[str]]:
    """items: (path, member, relative path). Labels come from the parent folder name when the
    images sit in two or more class subfolders (none directly at the root)."""
    parents = [os.path.dirname(rel).replace("\\", "/") for _, _, rel in items]
    names = sorted({p.rsplit("/", 1)[-1] for p in parents})
    labelled = all(parents) and len(names) >= 2
    index = {n: i for i, n in enumerate(names)}
    entries = [
        _Entry(path, member, index[p.rsplit("/", 1)[-1]] if labelled else -1)
        for (path, member, _), p in zip(items, parents)
    ]
    return entries, (names if labelled else [])


def _folder_items(root: Path) -> list[tuple[str, None, str]]:
    items = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for fn in sorted(filenames):
            if fn.lower().endswith(IMAGE_EXTENSIONS) and not fn.startswith("."):
                full = os.path.join(dirpath, fn)
                items.append((full, None, os.path.relpath(full, root)))
    return items


def _zip_items(path: Path, inner: str) -> list[tuple[str, str, str]]:
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError) as e:
        raise GantoolsError(f"{path}: not a readable zip file ({e})") from None
    prefix = inner.strip("/") + "/" if inner.strip("/") else ""
    items = []
    for m in sorted(names):
        if m.endswith("/") or not m.lower().endswith(IMAGE_EXTENSIONS) or not m.startswith(prefix):
            continue
        if any(part.startswith(".") or part == "__MACOSX" for part in m.split("/")):
            continue
        items.append((str(path), m, m[len(prefix):]))
    if prefix and not items and not any(m.startswith(prefix) for m in names):
        raise GantoolsError(f"{path}: no folder {inner!r} inside the zip")
    return items


def _open_files(items, source: str, resolution, channels, budget: int | None):
    if not items:
        raise GantoolsError(f"{source}: no images found (looked for {', '.join(IMAGE_EXTENSIONS)})")
    entries, class_names = _label_entries(items, source)
    target = _probe_target(entries, resolution, channels, source)
    size = len(entries) * target.channels * target.height * target.width
    budget = memory_budget() if budget is None else budget
    if size > budget:
        debug(f"{source}: {size / 2**30:.1f} GiB of pixels is over the memory budget; decoding lazily")
        return ImageSet(None, _labels_tensor(entries) if class_names else None, class_names, source,
                        lazy=LazyImages(entries, target), files=[(e.path, e.member) for e in entries])
    return _decoded(entries, target, class_names, source)


def _decoded(entries: list[_Entry], target: _Target, class_names: list[str], source: str) -> ImageSet:
    """The entries decoded into an in-memory ImageSet; unreadable files left out with one warning."""
    arrays, ok, bad = _decode_entries(entries, target)
    _warn_skipped(source, bad)
    if not ok.any():
        raise GantoolsError(f"{source}: none of the {len(entries)} image files could be read")
    images = torch.from_numpy(arrays[ok]).permute(0, 3, 1, 2).contiguous()
    kept = [e for e, k in zip(entries, ok) if k]
    labels = _labels_tensor(kept) if class_names else None
    return ImageSet(images, labels, class_names, source, files=[(e.path, e.member) for e in kept])


def _labels_tensor(entries: list[_Entry]) -> torch.Tensor:
    return torch.tensor([e.label for e in entries], dtype=torch.int64)


def _open_stream(fileobj, source: str, resolution, channels):
    from gantools.data.stream import read_stream

    arrays, bad, header, meta = [], [], {}, {}
    target = None
    for kind, value in read_stream(fileobj, source):
        if kind == "header":
            header = value
        elif kind == "meta":
            meta = value
        elif kind == "bad":
            bad.append(value)
        else:
            if target is None:
                grey = value.mode in ("L", "1", "I;16", "I", "LA")
                target = _Target(channels or (1 if grey else 3), resolution or value.size[1],
                                 resolution or value.size[0])
            arrays.append(_pil_to_array(value, target))
    _warn_skipped(source, bad)
    if not arrays:
        raise GantoolsError(f"{source}: the image stream holds no images")
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    labels = meta.get("labels")
    class_names = header.get("class_names") or []
    lab = None
    if labels is not None and len(labels) == len(images) and (labels >= 0).all() and class_names:
        lab = torch.from_numpy(labels.astype(np.int64))
    s = ImageSet(images, lab, class_names if lab is not None else [], source)
    s.latents = meta.get("z")
    return s


def _open_toy(name: str, resolution, channels):
    from gantools.data import toy

    if name == "ring":
        pts, modes = toy.ring()
        return VectorSet(torch.from_numpy(pts), "toy:ring", modes)
    if name == "grid":
        pts, modes = toy.grid()
        return VectorSet(torch.from_numpy(pts), "toy:grid", modes)
    if name == "shapes":
        images, labels = toy.shapes()
        t = _convert_tensor(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), resolution, channels)
        return ImageSet(t, torch.from_numpy(labels.astype(np.int64)), toy.SHAPE_CLASSES, "toy:shapes")
    known = ", ".join(f"toy:{k}" for k in toy.TOY_SETS)
    raise UsageError(f"toy:{name}: unknown built-in data set (known: {known})")


def _split_zip(spec: str) -> tuple[Path, str] | None:
    """`a/b.zip/inner/dir` -> (Path('a/b.zip'), 'inner/dir') when the zip exists."""
    m = re.match(r"^(.*?\.zip)(/.*)?$", spec, re.IGNORECASE)
    if m and os.path.isfile(m.group(1)):  # (never raises: a name too long is no zip)
        return Path(m.group(1)), (m.group(2) or "").strip("/")
    return None


def _is_idx(name: str) -> bool:
    return bool(re.search(r"-ubyte(\.gz)?$", name)) or bool(re.search(r"\.idx\d(-ubyte)?(\.gz)?$", name))


def check_source(spec: str) -> None:
    """The checks of `open_source` that read no data (a toy set's name, that a file or folder exists), with
    its messages: for `--dry-run`, which does not open the data."""
    if spec.startswith("toy:"):
        from gantools.data import toy

        if spec[4:] not in toy.TOY_SETS:
            known = ", ".join(f"toy:{k}" for k in toy.TOY_SETS)
            raise UsageError(f"{spec}: unknown built-in data set (known: {known})")
        return
    if spec == "-" or _split_zip(spec):
        return
    try:
        Path(spec).stat()
    except (FileNotFoundError, NotADirectoryError):
        raise GantoolsError(f"{spec}: no such file or folder") from None
    except OSError as e:
        raise GantoolsError(f"{spec}: {e.strerror or e}") from None


def open_source(
    spec: str,
    resolution: int | None = None,
    channels: int | None = None,
    budget: int | None = None,
    stdin=None,
) -> ImageSet | VectorSet:
    """Open any accepted data source; `resolution`/`channels` override what is inferred.

    Raises GantoolsError (one line naming the source) when nothing usable is found.
    """
    if resolution is not None and resolution < 4:
        raise UsageError(f"--resolution {resolution}: must be at least 4")
    if channels not in (None, 1, 3):
        raise UsageError(f"--channels {channels}: must be 1 or 3")
    if spec.startswith("toy:"):
        return _open_toy(spec[4:], resolution, channels)
    if spec == "-":
        stream = stdin if stdin is not None else sys.stdin.buffer
        return _open_stream(stream, "<stdin>", resolution, channels)
    zipped = _split_zip(spec)
    if zipped:
        path, inner = zipped
        return _open_files(_zip_items(path, inner), spec, resolution, channels, budget)
    path = Path(spec)
    try:
        path.stat()
    except (FileNotFoundError, NotADirectoryError):
        raise GantoolsError(f"{spec}: no such file or folder") from None
    except OSError as e:  # e.g. a name too long
        raise GantoolsError(f"{spec}: {e.strerror or e}") from None
    if path.is_dir():
        items = _folder_items(path)
        if not items:
            idx = sorted(p for p in path.iterdir() if _is_idx(p.name) and ("images" in p.name or "idx3" in p.name))
            if idx:
                chosen = next((p for p in idx if "train" in p.name), idx[0])
                if len(idx) > 1:
                    debug(f"{spec}: using {chosen.name} of {len(idx)} IDX image files")
                return _open_idx(chosen, str(chosen), resolution, channels)
        return _open_files(items, spec, resolution, channels, budget)
    suffix = path.suffix.lower()
    name = path.name.lower()
    if _is_idx(name):
        return _open_idx(path, spec, resolution, channels)
    if suffix in (".h5", ".hdf5"):
        return _open_h5(path, spec, resolution, channels)
    if suffix == ".npz":
        return _open_npz(path, spec, resolution, channels)
    if suffix == ".npy":
        return _open_npy(path, spec, resolution, channels)
    if suffix == ".zip":
        return _open_files(_zip_items(path, ""), spec, resolution, channels, budget)
    if suffix in IMAGE_EXTENSIONS:
        return _open_files([(str(path), None, path.name)], spec, resolution, channels, budget)
    if suffix == ".pt":
        raise UsageError(f"{spec}: this is a checkpoint, not a data source")
    raise GantoolsError(
        f"{spec}: unrecognised data source (expected a folder, .zip, .h5, .npz, .npy, *-ubyte[.gz], "
        "an image, '-' or toy:NAME)"
    )

