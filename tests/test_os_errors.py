"""An operating-system error about a path the user gave (a file where a folder is needed, a name too
long, a folder that cannot be written) is one line naming that path, exit 1: never a traceback."""

from __future__ import annotations

import os

import pytest

LONG = "a" * 300  # longer than any file system's NAME_MAX (255)


def one_line(r, *words: str) -> str:
    err = r.err.strip()
    assert "Traceback" not in r.err and "\n" not in err, r.err
    for w in words:
        assert w in err, err
    return err


@pytest.fixture
def user_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "user.png").write_bytes(b"mine")
    return tmp_path / "user.png"


@pytest.mark.parametrize("args", [
    ["sample", "{ck}", "-n", "2", "-o", "user.png/x.png"],
    ["sample", "{ck}", "-n", "2", "-o", "user.png/sub/x.png"],
    ["sample", "{ck}", "-n", "2", "-o", "user.png/outdir"],
    ["interpolate", "{ck}", "--rows", "1", "-k", "2", "-o", "user.png/x.png"],
    ["evaluate", "{ck}", "--real", "toy:shapes", "-n", "8", "--save-stats", "user.png/s.npz"],
    ["impute", "table.csv", "-o", "user.png/filled.csv"],
])
def test_an_output_under_a_file_is_one_line(cli, tiny_dcgan, user_file, args):
    (user_file.parent / "table.csv").write_text("a,b\n1,2\n,3\n4,\n")
    r = cli(*[a.format(ck=tiny_dcgan) for a in args])
    assert r.code == 1
    one_line(r, args[-1], "cannot create: user.png is not a folder")
    assert user_file.read_bytes() == b"mine"
    assert sorted(p.name for p in user_file.parent.iterdir()) == ["table.csv", "user.png"]


@pytest.mark.parametrize("out", [LONG + ".png", LONG, f"{LONG}/x.png"])
def test_an_output_name_too_long_is_one_line(cli, tiny_dcgan, tmp_path, monkeypatch, out):
    monkeypatch.chdir(tmp_path)
    r = cli("sample", tiny_dcgan, "-n", "2", "-o", out)
    assert r.code == 1
    one_line(r, out, "File name too long")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args", [
    ["sample", LONG + ".pt", "-n", "2", "-o", "x.png"],
    ["train", "dcgan", "--data", LONG, "--steps", "1"],
    ["train", "dcgan", "--data", LONG + ".zip", "--steps", "1"],
    ["evaluate", LONG + ".pt", "--real", "toy:shapes", "-n", "8"],
    ["evaluate", "toy:shapes", "--real", LONG, "-n", "8"],
    ["balance", LONG, "-o", "out"],
])
def test_an_input_name_too_long_is_one_line(cli, tmp_path, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    r = cli(*args)
    assert r.code == 1
    one_line(r, LONG, "File name too long")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc")
@pytest.mark.parametrize("out", ["/proc/gantools-outdir", "/proc/gantools-x.png", "/proc/gantools/x.png"])
def test_an_output_where_nothing_can_be_created_is_one_line(cli, tiny_dcgan, out):
    r = cli("sample", tiny_dcgan, "-n", "2", "-o", out)
    assert r.code == 1
    one_line(r, out, "cannot create")
