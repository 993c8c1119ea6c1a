"""`gantools balance`: fill up the classes of a skewed labelled image set with a conditional GAN's images
(BAGAN by default), and the paper's protocol to see whether that helps a classifier (`evaluate_balance`).

The balancer is any registered conditional model: trained through `gantools.train`, sampled per class
through `gantools.generate`; nothing here is specific to one model. bench/balance.py reuses the pieces:
`split_per_class`, `oversample`, `train_classifier`, `per_class_accuracy`, `ssim`, `pair_ssim`.
"""

from __future__ import annotations

import csv
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gantools.errors import GantoolsError, Interrupted, UsageError
from gantools.log import info, warn

DEFAULT_MODEL = "bagan"
FOLDER_KIND = "balance"  # the kind in the manifest of OUT and of its class folders (fsutil.OutputFolder)
MANIFEST_NAME = "manifest.csv"
# copy: a copy of the original named in `source` (balance --real-share), left-right mirrored when `flipped`
MANIFEST_COLUMNS = ("image", "class", "label", "generated", "copy", "flipped", "source")
# Each class needs this many images: a class's latent distribution (BAGAN: a mean and covariance of its codes)
# is not defined by one image.
MIN_CLASS_IMAGES = 2
MINORITY_FRACTION = 0.5  # --evaluate: a minority class has fewer than this fraction of the largest class's images
RESNET_FROM = 64  # --evaluate: images of this size and up are classified by ResNet-18, smaller by SmallCNN


@dataclass
class Training:
    """How a new balancer is trained (`gantools train`'s options); unset values take the model's defaults."""

    model: str = DEFAULT_MODEL
    steps: int | None = None
    epochs: float | None = None
    batch_size: int | None = None
    class_balanced: bool | None = None  # real batches with every class equally often (None: the model's default)
    hparams: dict = field(default_factory=dict)

    def given(self) -> list[str]:
        """The options set beyond the model's name, as the command line spells them."""
        names = {"steps": "--steps", "epochs": "--epochs", "batch_size": "--batch-size", "hparams": "--set"}
        flags = [flag for key, flag in names.items() if getattr(self, key)]
        if self.class_balanced is not None:
            flags.append("--class-balanced" if self.class_balanced else "--no-class-balanced")
        return flags


# ----------------------------------------------------------------------------- data, classes, targets


@dataclass
class LabelledImages:
    """uint8 NCHW images with int64 labels and class names (the whole set in memory)."""

    images: torch.Tensor
    labels: torch.Tensor
    class_names: list[str]
    source: str

    def counts(self) -> list[int]:
        return torch.bincount(self.labels, minlength=len(self.class_names)).tolist()

    def subset(self, idx: torch.Tensor) -> "LabelledImages":
        return LabelledImages(self.images[idx], self.labels[idx], self.class_names, self.source)


def open_labelled(spec: str, channels: int | None = None, size: tuple[int, int] | None = None,
                  what: str = "DATA") -> tuple[LabelledImages, object]:
    """Read a labelled image source into memory; refuse (one line) unlabelled data, vectors, one class and a
    class under MIN_CLASS_IMAGES. Returns the images and the ImageSet they came from."""
    from gantools.data import open_source

    ds = open_source(spec, channels=channels)
    name = "<stdin>" if spec == "-" else spec
    if ds.kind != "image":
        raise UsageError(f"{what} {name}: holds vectors, not images; balance takes labelled images")
    if size is not None and (ds.height, ds.width) != tuple(size):
        if size[0] != size[1]:
            raise GantoolsError(f"{what} {name}: {ds.width}x{ds.height} images, DATA's are {size[1]}x{size[0]}")
        ds = open_source(spec, channels=channels, resolution=size[0])
    if ds.labels is None or not ds.class_names:
        raise GantoolsError(f"{what} {name}: has no labels; balance needs labelled images (class subfolders, "
                            "IDX labels, npz/h5 'labels', a labelled stream)")
    ds = ds.in_memory()  # over the memory budget: gathered anyway (balance holds the set it writes)
    data = LabelledImages(ds.images.cpu(), ds.labels.cpu().long(), list(ds.class_names), name)
    check_classes(data, what)
    return data, ds


def check_classes(data: LabelledImages, what: str = "DATA") -> None:
    """Refuse a single class, or a class with fewer than MIN_CLASS_IMAGES images."""
    counts = data.counts()
    if len(counts) < 2:
        raise GantoolsError(f"{what} {data.source}: has one class ({data.class_names[0]}); balance needs two or more")
    small = [(n, c) for n, c in zip(data.class_names, counts) if c < MIN_CLASS_IMAGES]
    if small:
        name, count = small[0]
        raise GantoolsError(f"{what} {data.source}: class {name} has {count} image{'s' if count != 1 else ''}; "
                            f"each class needs at least {MIN_CLASS_IMAGES} (to fit its latent distribution)")


def class_index(text: str, class_names: list[str], option: str) -> int:
    """A class given by name or index."""
    if text in class_names:
        return class_names.index(text)
    if text.isdigit() and int(text) < len(class_names):
        return int(text)
    raise UsageError(f"{option}: no class {text!r} (classes: {', '.join(class_names)})")


def parse_target(text: str, counts: list[int], class_names: list[str]) -> list[int]:
    """--target as the images each class should have: `max` (the largest class's count), N (every class),
    or CLASS=N,... (those classes; the others stay as they are). A target below a class's count is refused:
    balance only adds images."""
    option = f"--target {text}"
    text = text.strip()
    if text == "max":
        return [max(counts)] * len(counts)
    if text.isdigit():
        targets = [int(text)] * len(counts)
    else:
        targets = list(counts)
        seen = set()
        for item in text.split(","):
            name, sep, value = item.strip().rpartition("=")
            if not sep or not name or not value.strip().isdigit():
                raise UsageError(f"{option}: expected max, a number, or CLASS=N,... (e.g. cat=500,dog=500)")
            k = class_index(name.strip(), class_names, option)
            if k in seen:
                raise UsageError(f"{option}: class {class_names[k]} given twice")
            seen.add(k)
            targets[k] = int(value)
    for name, count, want in zip(class_names, counts, targets):
        if want < count:
            raise UsageError(f"{option}: {want} is below the {count} images class {name} has (balance only adds images)")
    return targets


def split_per_class(data: LabelledImages, fraction: float, seed: int) -> tuple[LabelledImages, LabelledImages]:
    """Hold out `fraction` of each class (at least one image, seeded) as a test set; the rest trains. A class
    that would keep fewer than MIN_CLASS_IMAGES training images is refused."""
    rng = np.random.default_rng(seed)
    train_idx, test_idx = [], []
    labels = data.labels.numpy()
    for k, name in enumerate(data.class_names):
        idx = rng.permutation(np.flatnonzero(labels == k))
        n_test = max(1, round(fraction * len(idx)))
        if len(idx) - n_test < MIN_CLASS_IMAGES:
            raise GantoolsError(f"DATA {data.source}: class {name} has {len(idx)} images, too few to hold out "
                                f"{n_test} for testing and keep {MIN_CLASS_IMAGES} to train on")
        test_idx.append(idx[:n_test])
        train_idx.append(idx[n_test:])
    return (data.subset(torch.from_numpy(np.sort(np.concatenate(train_idx)))),
            data.subset(torch.from_numpy(np.sort(np.concatenate(test_idx)))))


@dataclass
class Copies:
    """Copies of some of a set's images (oversampling): `index` into the set, `flipped` left-right or not;
    `images` and `labels` are the copies themselves."""

    index: torch.Tensor
    flipped: torch.Tensor
    images: torch.Tensor
    labels: torch.Tensor

    @staticmethod
    def none(data: LabelledImages) -> "Copies":
        empty = torch.zeros(0, dtype=torch.int64)
        return Copies(empty, empty.bool(), data.images[:0], data.labels[:0])


def draw_copies(data: LabelledImages, per_class: list[int], seed: int) -> Copies:
    """`per_class[k]` copies of class k's images, drawn with replacement, each flipped left-right with
    probability 1/2 (seeded)."""
    rng = np.random.default_rng(seed)
    labels = data.labels.numpy()
    extra = [rng.choice(np.flatnonzero(labels == k), n) for k, n in enumerate(per_class) if n > 0]
    if not extra:
        return Copies.none(data)
    picked = torch.from_numpy(np.concatenate(extra))
    copies = data.images[picked].clone()
    flip = torch.from_numpy(rng.random(len(picked)) < 0.5)
    copies[flip] = copies[flip].flip(-1)
    return Copies(picked, flip, copies, data.labels[picked])


def oversample(data: LabelledImages, targets: list[int], seed: int) -> LabelledImages:
    """Plain oversampling: each class filled up to its target with copies of its images (draw_copies)."""
    copies = draw_copies(data, [max(0, t - c) for c, t in zip(data.counts(), targets)], seed)
    return with_generated(data, copies.images, copies.labels) if len(copies.labels) else data


@dataclass(frozen=True)
class FillPlan:
    """How many images each class gains: `copies[k]` copies of its own images and `generated[k]` GAN images."""

    copies: list[int]
    generated: list[int]

    def generated_labels(self) -> np.ndarray:
        """The class of each image to generate: class 0's first, then class 1's, ..."""
        return np.repeat(np.arange(len(self.generated)), self.generated).astype(np.int64)


def check_fill(real_share: float, min_generated: int) -> None:
    """Refuse (UsageError) a --real-share or --min-generated out of its range (gantools.options)."""
    from gantools.options import RANGES

    RANGES["real_share"].check("--real-share", real_share)
    RANGES["min_generated"].check("--min-generated", min_generated)


def plan_fill(counts: list[int], targets: list[int], real_share: float = 0.0, min_generated: int = 0) -> FillPlan:
    """Each class's gap to its target: real_share x gap copies of its own images (rounded half up), the rest
    generated; then every class gets at least `min_generated` generated images, beyond its target where its
    gap left fewer (so that "generated" does not mark the rare classes to a classifier). real_share 0 and
    min_generated 0: the paper's fill, all generated."""
    check_fill(real_share, min_generated)
    gaps = [t - c for c, t in zip(counts, targets)]
    copies = [int(np.floor(real_share * g + 0.5)) for g in gaps]  # half up (Python's round: half to even)
    return FillPlan(copies, [max(g - k, min_generated) for g, k in zip(gaps, copies)])


def draw_fill(data: LabelledImages, plan: FillPlan, ck: dict, seed: int = 0, device: str = "auto",
              temperature: float | None = None) -> tuple[Copies, np.ndarray, torch.Tensor]:
    """The images `plan` adds to `data`, from `seed`: its copies, and its generated images' labels and images
    (the balancer `ck`, at `temperature`, at data's size)."""
    copies = draw_copies(data, plan.copies, seed)
    gen_labels = plan.generated_labels()
    gen_images = generate_classes(ck, gen_labels, data.class_names, tuple(data.images.shape[2:]), seed, device,
                                  temperature=temperature)
    return copies, gen_labels, gen_images


def with_generated(data: LabelledImages, images: torch.Tensor, labels: torch.Tensor) -> LabelledImages:
    return LabelledImages(torch.cat([data.images, images]), torch.cat([data.labels, labels]), data.class_names,
                          data.source)


# ----------------------------------------------------------------------------- the balancer


def _write_npz(data: LabelledImages, path: Path) -> str:
    """The set as an .npz data source (for training on a split or on stdin's stream)."""
    with open(path, "wb") as f:
        np.savez(f, images=data.images.permute(0, 2, 3, 1).numpy(), labels=data.labels.numpy(),
                 class_names=np.array(data.class_names))
    return str(path)


def check_balancer(ck: dict, data: LabelledImages, channels: int, path: str) -> None:
    """A checkpoint balances DATA when its model is conditional and it knows DATA's classes (in any order)."""
    from gantools.generate import is_conditional, model_spec

    model_spec(ck, f"--model {path}")  # an unknown model: one line naming the file
    if ck["data"].get("kind") != "image" or not is_conditional(ck):
        raise GantoolsError(f"--model {path}: a {ck['model']} checkpoint is not a conditional image model")
    names = list(ck["data"].get("class_names") or [])
    if sorted(names) != sorted(data.class_names):
        raise GantoolsError(f"--model {path}: trained on classes {', '.join(names)}; DATA has "
                            f"{', '.join(data.class_names)}")
    if ck["data"].get("channels") != channels:
        raise GantoolsError(f"--model {path}: makes {ck['data'].get('channels')}-channel images; DATA's have {channels}")


def _check_reuse(checkpoint: str | None, save_model: str | None, training: Training) -> None:
    """--model reuses a trained balancer: no training options, no --save-model."""
    if checkpoint is None:
        return
    flags = training.given() + ([] if training.model == DEFAULT_MODEL else ["--gan-model"])
    if flags:
        raise UsageError(f"{'/'.join(flags)} train a new balancer; --model {checkpoint} reuses a trained one")
    if save_model is not None:
        raise UsageError("--model reuses a saved balancer; --save-model saves a newly trained one: give one")


def obtain_balancer(data: LabelledImages, data_spec: str | None, training: Training, *, checkpoint: str | None = None,
                    seed: int = 0, device: str = "auto") -> dict:
    """The balancer's checkpoint: `checkpoint` loaded and checked against the data, or a new model trained on
    it (`data_spec` when it can be read again, else the images themselves) through gantools.train, in a
    temporary run folder (`save_balancer` keeps it)."""
    from gantools.checkpoint import load_checkpoint
    from gantools.train import TrainConfig, train

    channels = int(data.images.shape[1])
    if checkpoint is not None:
        ck = load_checkpoint(checkpoint)
        check_balancer(ck, data, channels, checkpoint)
        _warn_if_resized(ck, data)
        return ck
    from gantools.registry import MODELS

    spec = MODELS.get(training.model)
    if not spec.conditional or spec.data_kind != "image":
        raise UsageError(f"--gan-model {training.model}: balance needs a conditional image model")
    with tempfile.TemporaryDirectory(prefix="gantools-balance-") as tmp:
        source = data_spec if data_spec not in (None, "-") else _write_npz(data, Path(tmp) / "data.npz")
        cfg = TrainConfig(model=training.model, data=source, steps=training.steps, epochs=training.epochs,
                          batch_size=training.batch_size, class_balanced=training.class_balanced, seed=seed,
                          device=device, out=str(Path(tmp) / "run"),
                          sample_every=0, ckpt_every=10**9, keep=1, channels=channels, hparams=dict(training.hparams))
        try:
            last = train(cfg)
        except Interrupted:  # the trainer's checkpoint lies in the temporary folder, which goes now
            raise Interrupted(f"interrupted while training the {training.model} balancer; nothing was written") from None
        ck = load_checkpoint(last)
    _warn_if_resized(ck, data)
    return ck


def save_balancer(ck: dict, save_model: str | None, overwrite: bool) -> None:
    """--save-model: called once the command's output is complete, so that a failure or Ctrl-C before it
    leaves neither the output nor the model (atomic: a temporary name, then the rename)."""
    from gantools.checkpoint import save_checkpoint

    if save_model is not None:
        save_checkpoint(ck, save_model, overwrite)
        info(f"balance: saved the balancer to {save_model}")


def _warn_if_resized(ck: dict, data: LabelledImages) -> None:
    """Warn when the balancer's images must be resized to DATA's size: resizing only the generated images
    makes them blurrier or sharper than the real ones, which a classifier learns (bench/RESULTS.md, balance,
    tenth session: MNIST's minority accuracy 0.946 -> 0.854 with the fill alone resized 32 -> 28 -> 32)."""
    made, size = (ck["data"]["height"], ck["data"]["width"]), tuple(data.images.shape[2:])
    if made != size:
        warn(f"the {ck['model']} balancer makes {made[0]}x{made[1]} images and DATA's are {size[0]}x{size[1]}: "
             "the generated images are resized and so differ in sharpness from the real ones, which a classifier "
             "can learn; a balancer trained at DATA's size avoids it")


def generate_classes(ck: dict, labels: list[int] | np.ndarray, class_names: list[str], size: tuple[int, int],
                     seed: int = 0, device: str = "auto", batch_size: int = 256,
                     temperature: float | None = None) -> torch.Tensor:
    """uint8 NCHW images of the given classes (one per entry of `labels`, indices into `class_names`, which the
    checkpoint knows by name), from the seed's one stream of latents (gantools.generate; z times `temperature`
    when given), resized to `size` (H, W) when the model's differs."""
    from gantools.generate import generate_batches, load_generator, resolve_device

    n = len(labels)
    channels = int(ck["data"]["channels"])
    if n == 0:
        return torch.zeros((0, channels, *size), dtype=torch.uint8)
    dev = resolve_device(device)
    G = load_generator(ck, dev)
    known = list(ck["data"]["class_names"])
    wanted = [known.index(class_names[k]) for k in labels]
    images = torch.cat([x for x, _, _ in generate_batches(ck, n, seed, batch_size, dev, wanted, G=G,
                                                             temperature=temperature)])
    if tuple(images.shape[2:]) != tuple(size):
        from torchvision.transforms.v2 import functional as TF

        images = TF.resize(images, list(size), antialias=True)
    return images


# ----------------------------------------------------------------------------- writing OUT


def output_kind(out: str) -> str:
    """'folder', 'npz', 'h5' or 'stream' for OUT; anything else is refused."""
    from gantools.data.writers import output_kind as kind_of

    kind = kind_of(out) if Path(out).suffix.lower() in ("", ".npz", ".h5", ".hdf5") else None
    if kind not in ("folder", "npz", "h5", "stream"):
        raise UsageError(f"-o {out}: balance writes a folder of class subfolders, x.npz, x.h5 or - (the stream)")
    return kind


def check_outputs(data: str, out: str, manifest: str | None, save_model: str | None, overwrite: bool) -> str:
    """Refuse OUT, --manifest and --save-model before any work (existing files, an input, a folder gantools
    would not write into, one file named twice); returns OUT's kind."""
    from gantools.fsutil import check_folder, check_target

    kind = output_kind(out)
    if kind == "folder":
        if data not in ("-",) and Path(data).exists() and _inside(Path(out), Path(data)):
            raise UsageError(f"-o {out}: inside DATA {data}; write the balanced set elsewhere")
        check_folder(out, FOLDER_KIND, overwrite)
        if manifest is not None:
            raise UsageError(f"--manifest: a folder OUT holds its own ({Path(out) / MANIFEST_NAME})")
    elif kind != "stream":
        check_target(out, overwrite, inputs=[data])
    files = [p for p in (out if kind in ("npz", "h5") else None, manifest, save_model) if p is not None]
    if len({Path(p).resolve() for p in files}) < len(files):
        raise UsageError("-o, --manifest and --save-model: one file for two outputs; give different names")
    for path in (manifest, save_model):
        if path is not None:
            check_target(path, overwrite, inputs=[data])
    return kind


def _inside(path: Path, folder: Path) -> bool:
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def _unique(name: str, used: set[str]) -> str:
    """`name`, or NAME-2.EXT, NAME-3.EXT, ... when taken (images of one class from several subfolders)."""
    stem, ext = os.path.splitext(name)
    k, candidate = 1, name
    while candidate in used:
        k += 1
        candidate = f"{stem}-{k}{ext}"
    used.add(candidate)
    return candidate


def original_source(data: LabelledImages, files: list | None, i: int) -> str:
    """The manifest's `source` of original i: its file (PATH, or ZIP/MEMBER) when DATA is a folder or zip of
    image files, else DATA#ROW (an array file, IDX, or the stream: `<stdin>#ROW`)."""
    if files is None:
        return f"{data.source}#{i}"
    path, member = files[i]
    return f"{path}/{member}" if member else path


def generated_name(i: int) -> str:
    """A generated image's file name in a class folder: nobody takes gen-000001.png for a real photo."""
    return f"gen-{i:06d}.png"


def copy_name(i: int) -> str:
    """A copy's file name in a class folder (--real-share): copy-000001.png; the manifest names its original."""
    return f"copy-{i:06d}.png"


def _hwc(images: torch.Tensor) -> np.ndarray:
    return images.permute(0, 2, 3, 1).contiguous().numpy()


def write_folder(out: str, data: LabelledImages, files: list | None, gen_images: torch.Tensor,
                 gen_labels: np.ndarray, only_generated: bool, overwrite: bool,
                 copies: Copies | None = None) -> list[dict]:
    """OUT/<class>/ holds the class's originals (files copied byte for byte; array sources as PNGs named by
    their index in DATA), its `copies` (copy-NNNNNN.png) and its generated images (gen-NNNNNN.png);
    OUT/manifest.csv lists them. All files are written under temporary names and put in place at the end
    (fsutil.OutputFolder); on any error or Ctrl-C nothing is left."""
    from gantools.data.stream import encode_png
    from gantools.fsutil import OutputFolder, plain_name

    copies = copies if copies is not None else Copies.none(data)
    for name in data.class_names:
        if not plain_name(name) or name.startswith("."):
            raise GantoolsError(f"class {name!r}: cannot be a folder name; write OUT as .npz or .h5")
    top = OutputFolder(out, FOLDER_KIND, overwrite)
    folders: list = []
    rows: list[dict] = []
    try:
        for k, cname in enumerate(data.class_names):
            folder = top.subfolder(cname)  # recorded in OUT's manifest: a rerun knows it as gantools' own
            folders.append(folder)
            used: set[str] = set()
            if not only_generated:
                for i in torch.nonzero(data.labels == k).flatten().tolist():
                    if files is None:
                        name = _unique(f"{i:06d}.png", used)
                        folder.path(name).write_bytes(encode_png(_hwc(data.images[i:i + 1])[0]))
                        source = original_source(data, None, i)
                    else:
                        path, member = files[i]
                        name = _unique(os.path.basename(member or path), used)
                        _copy_original(path, member, folder.path(name))
                        source = original_source(data, files, i)
                    rows.append({"image": f"{cname}/{name}", "class": cname, "label": k, "generated": 0,
                                 "copy": 0, "flipped": 0, "source": source})
            mine = np.flatnonzero(gen_labels == k)
            copied = torch.nonzero(copies.labels == k).flatten().tolist()
            pending = [f"{cname}/{generated_name(j + 1)}" for j in range(len(mine))]
            pending_copies = [f"{cname}/{copy_name(j + 1)}" for j in range(len(copied))]
            clash = next((p for p in pending + pending_copies if p.split("/", 1)[1] in used), None)
            if clash is not None:  # an original named like a generated image: the manifest would still tell
                raise GantoolsError(f"DATA {data.source}: holds a file named {clash}, the name gantools gives "
                                    "its own images; rename it or write OUT as .npz or .h5")
            for j, i in enumerate(copied):
                folder.path(copy_name(j + 1)).write_bytes(encode_png(_hwc(copies.images[i:i + 1])[0]))
                rows.append({"image": pending_copies[j], "class": cname, "label": k, "generated": 0, "copy": 1,
                             "flipped": int(copies.flipped[i]),
                             "source": original_source(data, files, int(copies.index[i]))})
            for j, i in enumerate(mine):
                folder.path(generated_name(j + 1)).write_bytes(encode_png(_hwc(gen_images[i:i + 1])[0]))
                rows.append({"image": pending[j], "class": cname, "label": k, "generated": 1, "copy": 0,
                             "flipped": 0, "source": ""})
        _write_manifest(rows, top.path(MANIFEST_NAME))
        for folder in folders:
            folder.commit()
        top.commit()
    except BaseException:
        for folder in (*reversed(folders), top):
            folder.discard()
        raise
    return rows


def _copy_original(path: str, member: str | None, target: Path) -> None:
    if member is None:
        shutil.copyfile(path, target)
        return
    import zipfile

    with zipfile.ZipFile(path) as zf:
        target.write_bytes(zf.read(member))


def _write_manifest(rows: list[dict], path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=MANIFEST_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def write_arrays(out: str, data: LabelledImages, gen_images: torch.Tensor, gen_labels: np.ndarray,
                 only_generated: bool, overwrite: bool, stdout=None, files: list | None = None,
                 copies: Copies | None = None) -> list[dict]:
    """OUT as .npz/.h5 (uint8 NHWC 'images', int64 'labels', bool 'generated' and 'copied', 'class_names') or
    the image stream: originals first, in DATA's order, then the `copies`, then the generated images class by
    class. `files`: DATA's per-row files (ImageSet.files), for the manifest's `source`."""
    from gantools.data.writers import ImageWriter

    copies = copies if copies is not None else Copies.none(data)
    real = 0 if only_generated else len(data.labels)
    n_copies = len(copies.labels)
    labels = np.concatenate([data.labels.numpy()[:real], copies.labels.numpy(), gen_labels]).astype(np.int64)
    row = np.arange(len(labels))
    generated, copied = row >= real + n_copies, (row >= real) & (row < real + n_copies)
    kind = output_kind(out)
    extra = {} if kind == "stream" else {"generated": generated, "copied": copied}
    with ImageWriter(out, class_names=data.class_names, extra=extra, stdout=stdout, overwrite=overwrite,
                     count=len(labels)) as writer:
        if real:
            writer.write(_hwc(data.images), data.labels.numpy())
        if n_copies:
            writer.write(_hwc(copies.images), copies.labels.numpy())
        if len(gen_labels):
            writer.write(_hwc(gen_images), gen_labels)

    def source(i: int) -> str:
        if i < real:
            return original_source(data, files, i)
        return original_source(data, files, int(copies.index[i - real])) if copied[i] else ""

    flipped = np.zeros(len(labels), dtype=bool)
    flipped[real:real + n_copies] = copies.flipped.numpy()
    return [{"image": f"{i:06d}.png" if kind == "stream" else str(i), "class": data.class_names[k], "label": int(k),
             "generated": int(generated[i]), "copy": int(copied[i]), "flipped": int(flipped[i]), "source": source(i)}
            for i, k in enumerate(labels.tolist())]


# ----------------------------------------------------------------------------- the command


def balance(data: str, out: str, target: str = "max", training: Training | None = None, *,
            checkpoint: str | None = None, save_model: str | None = None, manifest: str | None = None,
            only_generated: bool = False, seed: int = 0, device: str = "auto", overwrite: bool = False,
            temperature: float | None = None, real_share: float = 0.0, min_generated: int = 0,
            stdout=None) -> dict:
    """Fill DATA's classes up to `target` with generated images and write OUT (a folder of class folders,
    .npz/.h5, or '-' for the stream on `stdout`) with its manifest. Every check comes before any work;
    nothing is left half-written. `temperature` scales the latents (`gantools sample --temperature`);
    `real_share` and `min_generated` as plan_fill's. Returns the summary: per class real, copied, generated
    and total in OUT."""
    from gantools.objective import check_temperature

    training = training or Training()
    check_temperature(temperature)
    check_fill(real_share, min_generated)
    if only_generated and real_share > 0:
        raise UsageError("--only-generated and --real-share: the copies are real images; leave out one of them")
    kind = check_outputs(data, out, manifest, save_model, overwrite)
    if kind == "stream" and manifest is None and not only_generated:
        raise UsageError("-o -: the stream cannot say which images are generated; give --manifest FILE.csv "
                         "(or --only-generated)")
    _check_reuse(checkpoint, save_model, training)
    images, ds = open_labelled(data)
    counts = images.counts()
    targets = parse_target(target, counts, images.class_names)
    plan = plan_fill(counts, targets, real_share, min_generated)
    if only_generated and not any(plan.generated):
        raise UsageError(f"--only-generated: nothing to generate, every class already has --target {target}")
    files = ds.files  # a folder or zip's per-image files (None for an array file or the stream)
    ck = obtain_balancer(images, data, training, checkpoint=checkpoint, seed=seed, device=device)
    info(f"balance: {images.source}: {len(images.labels)} images in {len(counts)} classes; generating "
         f"{sum(plan.generated)} with {ck['model']}" + (f", copying {sum(plan.copies)}" if any(plan.copies) else ""))
    copies, gen_labels, gen_images = draw_fill(images, plan, ck, seed, device, temperature)
    if kind == "folder":
        rows = write_folder(out, images, files, gen_images, gen_labels, only_generated, overwrite, copies)
    else:
        def write() -> list[dict]:
            return write_arrays(out, images, gen_images, gen_labels, only_generated, overwrite, stdout, files, copies)

        if manifest is not None:
            from gantools.fsutil import atomic_path

            with atomic_path(manifest, overwrite) as tmp:
                rows = write()
                _write_manifest(rows, tmp)
        else:
            rows = write()
    save_balancer(ck, save_model, overwrite)
    real = [0] * len(counts) if only_generated else counts
    return {
        "data": images.source, "out": out, "manifest": str(Path(out) / MANIFEST_NAME) if kind == "folder" else manifest,
        "model": ck["model"], "checkpoint": checkpoint or save_model, "seed": seed, "temperature": temperature,
        "real_share": real_share, "min_generated": min_generated, "images": len(rows),
        "classes": [{"class": n, "label": k, "in_data": c, "real": r, "copied": m, "generated": g, "total": r + m + g}
                    for k, (n, c, r, m, g) in enumerate(zip(images.class_names, counts, real, plan.copies,
                                                            plan.generated))],
    }


# ----------------------------------------------------------------------------- --evaluate: classifiers


def _conv_stage(inputs: int, outputs: int) -> list[nn.Module]:
    return [nn.Conv2d(inputs, outputs, 3, padding=1, bias=False), nn.BatchNorm2d(outputs), nn.ReLU(inplace=True)]


class SmallCNN(nn.Module):
    """The classifier for images under RESNET_FROM px: three conv-BN-ReLU stages (32, 64, 128 channels), the
    first two halving the size, global average pooling, a linear layer."""

    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.features = nn.Sequential(*_conv_stage(channels, 32), nn.MaxPool2d(2), *_conv_stage(32, 64),
                                      nn.MaxPool2d(2), *_conv_stage(64, 128), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class _Grey3(nn.Module):
    """Grey images repeated to three channels in front of an RGB network."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x)


def classifier_name(size: int) -> str:
    return (f"ResNet-18 (torchvision, no pretrained weights; images of {RESNET_FROM} px and up)" if size >= RESNET_FROM
            else f"small CNN (3 conv stages; images under {RESNET_FROM} px)")


def build_classifier(channels: int, size: int, num_classes: int) -> nn.Module:
    """torchvision's ResNet-18 (no pretrained weights) for images of RESNET_FROM px and up, else SmallCNN."""
    if size >= RESNET_FROM:
        from torchvision.models import resnet18

        return _Grey3(resnet18(weights=None, num_classes=num_classes))
    return SmallCNN(channels, num_classes)


def _as_float(images: torch.Tensor, device) -> torch.Tensor:
    return images.to(device).float().div_(127.5).sub_(1)


def train_classifier(data: LabelledImages, epochs: int, seed: int = 0, device: str = "cpu",
                     batch_size: int = 64, lr: float = 1e-3, label: str = "classifier") -> nn.Module:
    """A classifier (build_classifier) trained with Adam (its rate decayed linearly to 0) and cross-entropy for
    `epochs` passes over the set in seeded random order."""
    from gantools.log import ProgressReporter

    torch.manual_seed(seed)
    size = min(data.images.shape[2:])
    model = build_classifier(int(data.images.shape[1]), int(size), len(data.class_names)).to(device)
    opt = torch.optim.Adam(model.parameters(), lr)
    total = epochs * -(-len(data.labels) // batch_size)
    # the rate decays linearly to 0: the last weights are then a settled model, where at a constant rate they
    # were one noisy iterate (MNIST, bench/RESULTS.md balance, tenth session: minority accuracy 0.02 or 0.86
    # for the same set, constant or decayed)
    decay = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: max(0.0, 1 - i / total))
    order_gen = torch.Generator().manual_seed(seed)
    n = len(data.labels)
    per_epoch = -(-n // batch_size)
    progress = ProgressReporter(epochs * per_epoch, f"balance: train {label}")
    model.train()
    try:
        for epoch in range(epochs):
            order = torch.randperm(n, generator=order_gen)
            for b, start in enumerate(range(0, n, batch_size)):
                idx = order[start:start + batch_size]
                if len(idx) < 2:  # batch norm needs two
                    continue
                loss = F.cross_entropy(model(_as_float(data.images[idx], device)), data.labels[idx].to(device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                decay.step()
                progress.update(epoch * per_epoch + b + 1, f"loss {loss.item():.3f}")
    finally:
        progress.close()
    return model.eval()


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, device: str = "cpu", batch_size: int = 256) -> torch.Tensor:
    model.eval()
    return torch.cat([model(_as_float(images[i:i + batch_size], device)).argmax(1).cpu()
                      for i in range(0, len(images), batch_size)]) if len(images) else torch.zeros(0, dtype=torch.long)


def per_class_accuracy(model: nn.Module, data: LabelledImages, device: str = "cpu") -> list[float | None]:
    """The fraction of each class's images the model labels right (None for a class with no images)."""
    right = predict(model, data.images, device) == data.labels
    return [float(right[data.labels == k].float().mean()) if bool((data.labels == k).any()) else None
            for k in range(len(data.class_names))]


def minority_classes(counts: list[int]) -> list[int]:
    """Classes with fewer than MINORITY_FRACTION of the largest class's images."""
    return [k for k, c in enumerate(counts) if c < MINORITY_FRACTION * max(counts)]


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


# ----------------------------------------------------------------------------- --evaluate: SSIM


def ssim(x: torch.Tensor, y: torch.Tensor, window: int = 11, sigma: float = 1.5, data_range: float = 1.0) -> torch.Tensor:
    """SSIM (Wang et al. 2004) of each pair of images x[i], y[i] (float N x C x H x W): the mean over the
    valid positions of a gaussian window (11 wide, sigma 1.5, narrowed to small images) and over channels,
    with K1 = 0.01, K2 = 0.03. 1 for identical images, lower the more they differ."""
    c = x.shape[1]
    window = min(window, x.shape[2], x.shape[3])
    window -= 1 - window % 2  # odd
    g = torch.exp(-((torch.arange(window, dtype=torch.float64) - (window - 1) / 2) ** 2) / (2 * sigma ** 2))
    g = (g / g.sum()).to(x.dtype)
    w = (g[:, None] * g[None, :]).expand(c, 1, window, window).to(x.device)
    mx, my = F.conv2d(x, w, groups=c), F.conv2d(y, w, groups=c)
    vx = F.conv2d(x * x, w, groups=c) - mx * mx
    vy = F.conv2d(y * y, w, groups=c) - my * my
    cxy = F.conv2d(x * y, w, groups=c) - mx * my
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return s.flatten(1).mean(1)


def pair_ssim(images: torch.Tensor, pairs: int, seed: int = 0) -> float | None:
    """Mean SSIM of `pairs` random pairs of different images (uint8 NCHW), seeded; None under two images.
    Lower means more varied images."""
    n = len(images)
    if n < 2:
        return None
    rng = np.random.default_rng(seed)
    i = rng.integers(n, size=pairs)
    j = (i + rng.integers(1, n, size=pairs)) % n  # never i itself
    x = images.float() / 255
    return float(ssim(x[torch.from_numpy(i)], x[torch.from_numpy(j)]).mean())


# ----------------------------------------------------------------------------- --evaluate: the protocol


def filled(data: LabelledImages, plan: FillPlan, ck: dict, seed: int = 0, device: str = "cpu",
           temperature: float | None = None) -> LabelledImages:
    """`data` with the images `balance` adds to it (draw_fill): --evaluate's arm (b); bench/balance_shortcut.py's
    `product`."""
    copies, gen_labels, gen_images = draw_fill(data, plan, ck, seed, device, temperature)
    return with_generated(data, torch.cat([copies.images, gen_images]),
                          torch.cat([copies.labels, torch.from_numpy(gen_labels)]))


def evaluate_balance(data: str, test: str | None = None, test_split: float = 0.2, target: str = "max",
                     training: Training | None = None, *, checkpoint: str | None = None,
                     save_model: str | None = None, overwrite: bool = False, classifier_epochs: int = 10,
                     judge_count: int = 100, ssim_pairs: int = 100, seed: int = 0, device: str = "auto",
                     temperature: float | None = None, real_share: float = 0.0, min_generated: int = 0) -> dict:
    """The BAGAN paper's protocol on the user's data. One classifier each is trained on (a) the training images
    as they are, (b) them filled up to `target` by the balancer (as `balance` with the same `real_share` and
    `min_generated` fills them), (c) them filled up by plain oversampling
    (`oversample`), and tested on held-out real images (`test`, else `test_split` of each class): per-class,
    minority-class and macro accuracy. Per class also: the generated-image accuracy (the share of `judge_count`
    generated images that classifier (c) labels as their class: (c) saw only real images, every class as
    often, where (a) learns to rarely answer a minority class) and the mean SSIM of `ssim_pairs` random pairs
    of generated images beside that of real ones (lower: more varied). `temperature` as `balance`'s."""
    from gantools.fsutil import check_target
    from gantools.generate import resolve_device
    from gantools.objective import check_temperature

    training = training or Training()
    check_temperature(temperature)
    check_fill(real_share, min_generated)
    if save_model is not None:
        check_target(save_model, overwrite, inputs=[data])
    _check_reuse(checkpoint, save_model, training)
    full, ds = open_labelled(data)
    size = (ds.height, ds.width)
    if test is not None:
        test_set, _ = open_labelled(test, channels=ds.channels, size=size, what="--test")
        if sorted(test_set.class_names) != sorted(full.class_names):
            raise GantoolsError(f"--test {test}: classes {', '.join(test_set.class_names)} differ from DATA's "
                                f"{', '.join(full.class_names)}")
        order = torch.tensor([full.class_names.index(n) for n in test_set.class_names])
        test_set = LabelledImages(test_set.images, order[test_set.labels], full.class_names, test_set.source)
        train_set = full
    else:
        train_set, test_set = split_per_class(full, test_split, seed)
    counts = train_set.counts()
    targets = parse_target(target, counts, train_set.class_names)
    held = "--test " + test if test is not None else f"{test_split:g} of each class of DATA held out (seed {seed})"
    ck = obtain_balancer(train_set, data if test is not None else None, training, checkpoint=checkpoint,
                         seed=seed, device=device)
    info(f"balance --evaluate: {len(train_set.labels)} training images, {len(test_set.labels)} test images ({held})")
    dev = resolve_device(device)
    plan = plan_fill(counts, targets, real_share, min_generated)
    balanced = filled(train_set, plan, ck, seed, str(dev), temperature)
    sets = {"as_is": train_set,
            "balanced": balanced,
            "oversampled": oversample(train_set, targets, seed)}
    minority = minority_classes(counts)
    results, models = {}, {}
    for name, s in sets.items():
        models[name] = train_classifier(s, classifier_epochs, seed, str(dev), label=f"classifier ({name})")
        acc = per_class_accuracy(models[name], test_set, str(dev))
        results[name] = {"train_images": len(s.labels), "per_class": acc,
                         "minority": _mean(acc[k] for k in minority), "macro": _mean(acc)}
    judge_labels = np.repeat(np.arange(len(counts)), judge_count)
    judged = generate_classes(ck, judge_labels, train_set.class_names, size, seed + 1, str(dev), temperature=temperature)
    right = (predict(models["oversampled"], judged, str(dev)) == torch.from_numpy(judge_labels)).float()
    gen_acc = [float(right[judge_labels == k].mean()) for k in range(len(counts))]
    classes = []
    for k, name in enumerate(train_set.class_names):
        classes.append({
            "class": name, "train": counts[k], "test": int((test_set.labels == k).sum()),
            "copied": plan.copies[k], "generated": plan.generated[k], "minority": k in minority,
            "accuracy": {m: results[m]["per_class"][k] for m in results},
            "generated_accuracy": gen_acc[k],
            "ssim_generated": pair_ssim(judged[torch.from_numpy(judge_labels == k)], ssim_pairs, seed),
            "ssim_real": pair_ssim(train_set.images[train_set.labels == k], ssim_pairs, seed),
        })
    save_balancer(ck, save_model, overwrite)
    for r in results.values():
        del r["per_class"]
    return {
        "data": full.source, "test": test if test is not None else f"split {test_split:g}", "seed": seed,
        "temperature": temperature, "real_share": real_share, "min_generated": min_generated,
        "model": ck["model"], "checkpoint": checkpoint or save_model,
        "classifier": classifier_name(min(size)), "classifier_epochs": classifier_epochs,
        "minority_rule": f"fewer than {MINORITY_FRACTION:g} x the largest class's training images",
        "minority_classes": [train_set.class_names[k] for k in minority],
        "columns": results, "classes": classes, "judge": "oversampled", "judge_count": judge_count,
        "ssim_pairs": ssim_pairs,
    }
