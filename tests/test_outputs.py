"""Outputs never touch a user's files. Folders (`sample -o DIR`, `interpolate -o DIR`): atomic, beside
files gantools did not write. Single files (every command's -o, --save-model, --save-stats): an
existing file is refused before any work unless --overwrite, an input file always."""

from __future__ import annotations

import csv
import errno
import importlib
import inspect
import json
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from gantools.errors import GantoolsError
from gantools.fsutil import MANIFEST, atomic_path

# Each command writes 4 images, or 2 with `few`; `seed` changes the pictures.
COMMANDS = {
    "sample": lambda ckpt, few=False, seed=0: ["sample", ckpt, "-n", 2 if few else 4, "--seed", seed],
    "interpolate": lambda ckpt, few=False, seed=0: ["interpolate", ckpt, "--rows", 1, "--steps", 2 if few else 4,
                                                    "--seed", seed],
}
IMAGES = [f"{i:06d}.png" for i in range(4)]


def run(cli, command, ckpt, out, *more, few=False, seed=0):
    return cli(*COMMANDS[command](ckpt, few, seed), "--device", "cpu", "-q", "-o", out, *more)


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every entry of a flat folder with its bytes (temporaries and manifests included)."""
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def user_files(folder: Path) -> dict[str, bytes]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "notes.txt").write_text("my notes\n")
    Image.new("RGB", (5, 3), (200, 10, 10)).save(folder / "holiday.png")
    return snapshot(folder)


def assert_one_error_line(r, *words):
    assert r.code == 1, r.err
    assert r.err.count("\n") == 1 and r.err.startswith("gantools: error: "), r.err
    for w in words:
        assert w in r.err, r.err


@pytest.fixture(params=sorted(COMMANDS))
def command(request):
    return request.param


def test_folder_with_a_users_files_is_refused(cli, tiny_dcgan, tmp_path, command):
    before = user_files(tmp_path / "photos")
    r = run(cli, command, tiny_dcgan, tmp_path / "photos")
    assert_one_error_line(r, str(tmp_path / "photos"), "did not write", "--overwrite")
    assert snapshot(tmp_path / "photos") == before


def test_a_refused_folder_is_the_only_line_even_without_quiet(cli, tiny_dcgan, tmp_path, command):
    """The folder is checked before any work or talk (interpolate's plan line came first once)."""
    before = user_files(tmp_path / "photos")
    r = cli(*COMMANDS[command](tiny_dcgan, False, 0), "--device", "cpu", "-o", tmp_path / "photos")
    assert_one_error_line(r, "did not write")
    assert snapshot(tmp_path / "photos") == before and not (tmp_path / "photos" / ".gantools-manifest.json").exists()


def test_dot_holding_a_users_file_is_refused(cli, tiny_dcgan, tmp_path, monkeypatch, command):
    before = user_files(tmp_path)
    monkeypatch.chdir(tmp_path)
    r = run(cli, command, tiny_dcgan, ".")
    assert_one_error_line(r, str(tmp_path), "did not write")
    assert snapshot(tmp_path) == before


def test_dot_in_an_empty_folder_works(cli, tiny_dcgan, tmp_path, monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    r = run(cli, command, tiny_dcgan, ".")
    assert r.code == 0, r.err
    assert sorted(os.listdir(tmp_path)) == sorted([MANIFEST, *IMAGES])
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    assert manifest["kind"] == "images" and sorted(manifest["files"]) == IMAGES


def test_own_earlier_output_is_replaced_only_with_overwrite(cli, tiny_dcgan, tmp_path, command):
    from gantools.data import open_source

    out = tmp_path / "frames"
    assert run(cli, command, tiny_dcgan, out).code == 0
    first = snapshot(out)
    assert sorted(first) == sorted([MANIFEST, *IMAGES])
    assert len(open_source(str(out)).images) == 4  # readers see the images only

    r = run(cli, command, tiny_dcgan, out, seed=5)
    assert_one_error_line(r, str(out), "earlier gantools run", "--overwrite")
    assert snapshot(out) == first

    mine = user_files(out)  # the user adds files beside gantools' own
    r = run(cli, command, tiny_dcgan, out, "--overwrite", few=True, seed=5)
    assert r.code == 0, r.err
    after = snapshot(out)
    assert sorted(after) == sorted([MANIFEST, "notes.txt", "holiday.png", *IMAGES[:2]])  # 000002/3 removed
    assert {k: after[k] for k in ("notes.txt", "holiday.png")} == {k: mine[k] for k in ("notes.txt", "holiday.png")}
    assert run(cli, command, tiny_dcgan, tmp_path / "fresh", few=True, seed=5).code == 0
    assert after[IMAGES[0]] == (tmp_path / "fresh" / IMAGES[0]).read_bytes() != first[IMAGES[0]]


@pytest.mark.parametrize("case", ["user's file", "changed image"])
def test_overwrite_never_replaces_a_file_gantools_did_not_write(cli, tiny_dcgan, tmp_path, case):
    out = tmp_path / "photos"
    if case == "user's file":
        user_files(out)
        Image.new("L", (4, 4), 7).save(out / IMAGES[1])
    else:
        assert run(cli, "sample", tiny_dcgan, out).code == 0
        Image.new("L", (4, 4), 7).save(out / IMAGES[1])  # the user edits one of gantools' images
    before = snapshot(out)
    r = run(cli, "sample", tiny_dcgan, out, "--overwrite", seed=5)
    assert_one_error_line(r, str(out / IMAGES[1]), "did not write")
    assert snapshot(out) == before


def test_a_foreign_manifest_is_refused_even_with_overwrite(cli, tiny_dcgan, tmp_path):
    out = tmp_path / "photos"
    out.mkdir()
    (out / MANIFEST).write_text('{"files": ["../../important.txt"]}')
    before = snapshot(out)
    r = run(cli, "sample", tiny_dcgan, out, "--overwrite")
    assert_one_error_line(r, MANIFEST, "not a gantools manifest")
    assert snapshot(out) == before


def _write_sample(ckpt, out, overwrite=True):
    """Four images through the Python API, in batches of two."""
    from gantools.checkpoint import load_checkpoint
    from gantools.data.writers import ImageWriter
    from gantools.generate import generate_batches

    ck = load_checkpoint(ckpt)
    with ImageWriter(str(out), overwrite=overwrite) as writer:
        for images, labels, z in generate_batches(ck, 4, seed=9, batch_size=2, device="cpu"):
            writer.write(images.permute(0, 2, 3, 1).numpy(), labels, z)


@pytest.mark.parametrize("error", [OSError, KeyboardInterrupt])
def test_a_failure_while_writing_leaves_the_folder_as_before(cli, tiny_dcgan, tmp_path, monkeypatch, error):
    out = tmp_path / "photos"
    assert run(cli, "sample", tiny_dcgan, out).code == 0
    user_files(out)
    before = snapshot(out)
    save, calls = Image.Image.save, []

    def failing_save(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise error("disk full")
        return save(self, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", failing_save)
    with pytest.raises(error):
        _write_sample(tiny_dcgan, out)
    assert len(calls) == 3
    assert snapshot(out) == before
    with pytest.raises(error):  # a new folder (and its new parent) is removed again
        calls.clear()
        _write_sample(tiny_dcgan, tmp_path / "new" / "photos")
    assert not (tmp_path / "new").exists()


def test_a_failure_while_publishing_leaves_the_folder_as_before(cli, tiny_dcgan, tmp_path, monkeypatch):
    """The earlier images are moved aside before the new ones take their names: undone on failure."""
    import gantools.fsutil

    out = tmp_path / "photos"
    assert run(cli, "sample", tiny_dcgan, out).code == 0
    user_files(out)
    before = snapshot(out)
    replace, calls = os.replace, []

    def failing_replace(src, dst):
        calls.append(dst)
        if len(calls) == 6:  # 4 earlier images aside, 1 new image in place, then the failure
            raise OSError("I/O error")
        return replace(src, dst)

    monkeypatch.setattr(gantools.fsutil.os, "replace", failing_replace)
    with pytest.raises(OSError):
        _write_sample(tiny_dcgan, out)
    assert len(calls) > 6  # the undo ran
    assert snapshot(out) == before


# ----------------------------------------------------------------------------- single files

USERS_BYTES = b"the user's own file, not gantools'\n"


@pytest.fixture(scope="module")
def inputs(tiny_dcgan, tmp_path_factory):
    """The commands' inputs, in a folder of their own: checkpoints, a table with holes, three images."""
    from gantools.checkpoint import new_checkpoint, save_checkpoint
    from gantools.registry import MODELS

    folder = tmp_path_factory.mktemp("inputs")
    spec = MODELS.get("gan")
    hp = dict(spec.defaults, hidden=8, depth=1)
    data = {"kind": "vector", "dim": 2, "num_classes": 0, "class_names": [], "source": "toy:ring"}
    gan = save_checkpoint(new_checkpoint("gan", hp, data, {"G": spec.build_generator(hp, data).state_dict()}),
                          folder / "gan.pt")
    rng = np.random.default_rng(0)
    cells = rng.normal(size=(40, 3)).round(2).astype(str)
    cells[rng.random(cells.shape) < 0.2] = ""
    table = folder / "holes.csv"
    table.write_text("a,b,c\n" + "\n".join(",".join(row) for row in cells) + "\n")
    images = folder / "images"
    images.mkdir()
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(images / f"{i}.png")
    return SimpleNamespace(dcgan=tiny_dcgan, gan=gan, table=table, images=images)


def _filled(path: Path) -> bool:
    rows = list(csv.reader(path.read_text().splitlines()))
    return len(rows) == 41 and all(cell != "" for row in rows for cell in row)


def _checkpoint_model(path: Path) -> str:
    from gantools.checkpoint import load_checkpoint

    return load_checkpoint(path)["model"]


def _stats_count(path: Path) -> int:
    from gantools.metrics.stats import load_stats

    return load_stats(path).count


def _h5_images(path: Path) -> int:
    import h5py

    with h5py.File(path, "r") as f:
        return len(f["images"])


SAMPLE = ["sample", "-n", 2, "--device", "cpu"]
# case -> (arguments, output name, the function whose start is the work, a check of the written file)
FILE_CASES = {
    "sample x.png": (lambda i: [*SAMPLE, i.dcgan], "grid.png", "gantools.generate.generate_batches",
                     lambda p: Image.open(p).size == (2 * 34 + 2, 34 + 2)),
    "sample x.npz": (lambda i: [*SAMPLE, i.dcgan], "s.npz", "gantools.generate.generate_batches",
                     lambda p: np.load(p)["images"].shape == (2, 32, 32, 3)),
    "sample x.h5": (lambda i: [*SAMPLE, i.dcgan], "s.h5", "gantools.generate.generate_batches",
                    lambda p: _h5_images(p) == 2),
    "sample vectors x.csv": (lambda i: [*SAMPLE, i.gan], "v.csv", "gantools.generate.generate_batches",
                             lambda p: p.read_text().splitlines()[0] == "x0,x1" and len(p.read_text().splitlines()) == 3),
    "sample vectors x.npz": (lambda i: [*SAMPLE, i.gan], "v.npz", "gantools.generate.generate_batches",
                             lambda p: np.load(p)["x"].shape == (2, 2)),
    "interpolate x.gif": (lambda i: ["interpolate", i.dcgan, "--rows", 1, "--steps", 3, "--device", "cpu"], "walk.gif",
                          "gantools.interpolate.render", lambda p: Image.open(p).n_frames == 3),
    "impute -o": (lambda i: ["impute", i.table, "--iterations", 20], "filled.csv",
                  "gantools.impute.imputer.fit_imputer", _filled),
    "impute --save-model": (lambda i: ["impute", i.table, "--iterations", 20, "-o", "-"], "imp.pt",
                            "gantools.impute.imputer.fit_imputer", lambda p: _checkpoint_model(p) == "gain"),
    "evaluate --save-stats": (lambda i: ["evaluate", i.images, "--device", "cpu"], "stats.npz",
                              "gantools.metrics.evaluate._Context", lambda p: _stats_count(p) == 3),
}


def spy(monkeypatch, target: str) -> list:
    """Record when `target` (module.name) starts its work: when called, or a generator when first stepped."""
    module_name, name = target.rsplit(".", 1)
    module = importlib.import_module(module_name)
    original, started = getattr(module, name), []
    if inspect.isgeneratorfunction(original):
        def spied(*args, **kwargs):
            started.append(name)
            yield from original(*args, **kwargs)
    else:
        def spied(*args, **kwargs):
            started.append(name)
            return original(*args, **kwargs)
    monkeypatch.setattr(module, name, spied)
    return started


@pytest.mark.parametrize("case", sorted(FILE_CASES))
def test_an_existing_file_is_refused_before_any_work_and_replaced_with_overwrite(cli, inputs, tmp_path, monkeypatch,
                                                                                case):
    arguments, name, work, written = FILE_CASES[case]
    out = tmp_path / name
    out.write_bytes(USERS_BYTES)
    flag = {"impute --save-model": "--save-model", "evaluate --save-stats": "--save-stats"}.get(case, "-o")
    started = spy(monkeypatch, work)

    r = cli(*arguments(inputs), flag, out)
    assert_one_error_line(r, f"{out} exists", "--overwrite")
    assert out.read_bytes() == USERS_BYTES
    assert os.listdir(tmp_path) == [name]  # no temporary left behind
    assert started == []  # refused before the work began

    r = cli(*arguments(inputs), flag, out, "--overwrite")
    assert r.code == 0, r.err
    assert started  # the work ran this time: the spy would have seen it above
    assert out.read_bytes() != USERS_BYTES and written(out)
    assert os.listdir(tmp_path) == [name]


@pytest.mark.parametrize("case", ["impute DATA", "impute --save-model DATA", "impute --model", "evaluate FAKE"])
def test_an_input_is_never_replaced_even_with_overwrite(cli, inputs, tmp_path, case):
    table = tmp_path / "holes.csv"
    table.write_bytes(inputs.table.read_bytes())
    model = tmp_path / "imp.pt"
    model.write_bytes(USERS_BYTES)  # refused before it is read
    arrays = tmp_path / "images.npz"
    np.savez(arrays, images=np.zeros((3, 32, 32, 3), np.uint8))
    target, arguments = {
        "impute DATA": (table, ["impute", table, "-o", table]),
        "impute --save-model DATA": (table, ["impute", table, "--save-model", table]),
        "impute --model": (model, ["impute", table, "--model", model, "-o", model]),
        "evaluate FAKE": (arrays, ["evaluate", arrays, "--save-stats", arrays, "--device", "cpu"]),
    }[case]
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    r = cli(*arguments, "--overwrite")
    assert_one_error_line(r, str(target), "is an input")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_impute_refuses_one_file_for_the_table_and_the_model(cli, inputs, tmp_path):
    out = tmp_path / "both.csv"
    r = cli("impute", inputs.table, "-o", out, "--save-model", out, "--overwrite")
    assert r.code == 2 and r.err.count("\n") == 1 and "two outputs" in r.err, r.err
    assert not out.exists()


def _no_links(src, dst, *args, **kwargs):
    raise PermissionError(errno.EPERM, "Operation not permitted", str(dst))


@pytest.mark.parametrize("links", ["hard links", "no hard links"])
def test_a_file_that_appears_while_gantools_writes_is_never_replaced(tmp_path, monkeypatch, links):
    if links == "no hard links":
        monkeypatch.setattr(os, "link", _no_links)
    target = tmp_path / "out.bin"
    with pytest.raises(GantoolsError, match="appeared while gantools was writing"):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"gantools' output")
            target.write_bytes(USERS_BYTES)  # another program makes the file meanwhile
    assert target.read_bytes() == USERS_BYTES
    assert os.listdir(tmp_path) == ["out.bin"]


@pytest.mark.parametrize("links", ["hard links", "no hard links"])
def test_a_new_file_is_published_whole(tmp_path, monkeypatch, links):
    if links == "no hard links":
        monkeypatch.setattr(os, "link", _no_links)
    target, data = tmp_path / "new" / "out.bin", os.urandom(100_000)
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
        assert not target.exists()  # not before the block ends
    assert target.read_bytes() == data
    assert os.listdir(target.parent) == ["out.bin"]
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_folder_is_not_a_file_target_even_with_overwrite(tmp_path):
    (tmp_path / "x.npz").mkdir()
    with pytest.raises(GantoolsError, match="is a folder"):
        with atomic_path(tmp_path / "x.npz", overwrite=True):
            pass
    assert os.listdir(tmp_path) == ["x.npz"] and os.listdir(tmp_path / "x.npz") == []


def test_ctrl_c_as_a_temporary_file_is_created_leaves_nothing(tmp_path, monkeypatch):
    """A Ctrl-C the moment a temporary file exists, before its name is returned, leaves no file: its
    name is recorded before it is created (tempfile.mkstemp's left a 0-byte `.NNNNNN.png.tmp-*`)."""
    from gantools.fsutil import OutputFolder

    real_open = os.open

    def open_then_interrupt(path, flags, *args, **kwargs):
        fd = real_open(path, flags, *args, **kwargs)
        if ".tmp-" in os.fspath(path):  # the file exists now
            os.close(fd)
            raise KeyboardInterrupt
        return fd

    monkeypatch.setattr(os, "open", open_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(tmp_path / "grid.png"):
            pass
    with pytest.raises(KeyboardInterrupt):
        with OutputFolder(tmp_path / "photos", "sample") as folder:
            folder.path("000000.png")
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.rglob("*")) == []
