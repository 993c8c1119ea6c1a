"""Folder outputs (`sample -o DIR`, `interpolate -o DIR`): atomic, and never touching a user's files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from PIL import Image

from gantools.fsutil import MANIFEST

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
