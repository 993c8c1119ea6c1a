"""The image stream: its header, reading older versions, and refusing cut, malformed or unsafe streams
in one line (through `gantools evaluate -` and through the API)."""

from __future__ import annotations

import io
import json
import os
import tarfile

import numpy as np
import pytest

from gantools.data import open_source
from gantools.data.stream import HEADER_NAME, META_NAME, STREAM_FORMAT, StreamWriter, encode_png, read_stream
from gantools.errors import GantoolsError

N = 6


def _images(n: int = N, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)


def _written(n: int = N, count: int | None = N, class_names=("a", "b")) -> bytes:
    """A stream of `n` images written by StreamWriter (header count `count`), in two batches."""
    buf = io.BytesIO()
    w = StreamWriter(buf, list(class_names), count=count)
    imgs = _images(n)
    w.write(imgs[:2], np.array([0, 1]))
    w.write(imgs[2:], np.zeros(len(imgs[2:]), np.int64))
    w.close()
    return buf.getvalue()


def _tar(members: list[tuple[str, bytes]]) -> bytes:
    """A complete tar (end marker included) of the given members, as another tool would write it."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w|", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _header(**fields) -> tuple[str, bytes]:
    return HEADER_NAME, json.dumps({"format": STREAM_FORMAT, "class_names": [], **fields}).encode()


def _pngs(n: int) -> list[tuple[str, bytes]]:
    return [(f"{i:06d}.png", encode_png(img)) for i, img in enumerate(_images(n))]


def _npz(**arrays) -> tuple[str, bytes]:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return META_NAME, buf.getvalue()


def _members(data: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        return tar.getmembers()


def _evaluate(cli, stream: bytes):
    return cli("evaluate", "-", "--real", "toy:shapes", "--json", stdin=stream)


def _assert_one_line_failure(r, *needles):
    assert r.code == 1, (r.code, r.err)
    assert r.err.count("\n") == 1 and "Traceback" not in r.err, r.err
    assert r.out == b""
    for n in needles:
        assert n in r.err, (n, r.err)


# ----------------------------------------------------------------------------- cut streams


@pytest.mark.parametrize("where", ["png-boundary", "mid-png"])
def test_a_stream_cut_after_4_of_6_images_fails_evaluate_in_one_line(cli, where):
    data = _written()
    fifth = _members(data)[1 + 4]  # stream.json, 000000.png ... 000003.png, then 000004.png
    cut = fifth.offset if where == "png-boundary" else fifth.offset_data + fifth.size // 2
    r = _evaluate(cli, data[:cut])
    _assert_one_line_failure(r, "<stdin>")
    assert ("end marker" in r.err) if where == "png-boundary" else ("truncated" in r.err), r.err


def test_every_prefix_short_of_the_end_marker_is_refused_and_the_whole_stream_reads():
    for count in (N, None):  # the end marker alone must catch every cut, with or without a count
        data = _written(count=count)
        last = _members(data)[-1]
        end = last.offset_data + -(-last.size // 512) * 512 + 1024  # two zero blocks close the tar
        assert bytes(data[end - 1024:end]) == bytes(1024) and len(data) >= end
        for cut in [*range(0, end, 512), *range(100, end, 512), end - 1]:
            with pytest.raises(GantoolsError):
                list(read_stream(io.BytesIO(data[:cut])))
        kinds = [k for k, _ in read_stream(io.BytesIO(data[:end]))]  # the record padding is optional
        assert kinds == ["header", *["image"] * N, "meta"]


def test_junk_in_place_of_the_end_marker_is_refused(cli):
    data = _written()
    last = _members(data)[-1]
    end = last.offset_data + -(-last.size // 512) * 512
    r = _evaluate(cli, data[:end] + b"x" * 1024)
    _assert_one_line_failure(r, "<stdin>", "end marker")


def test_fewer_images_than_the_header_says_is_refused(cli):
    data = _tar([_header(version=2, count=N), *_pngs(4), _npz(labels=np.full(4, -1))])
    r = _evaluate(cli, data)
    _assert_one_line_failure(r, "<stdin>", "holds 4 images", "says 6")


# ----------------------------------------------------------------------------- meta.npz and the header


def test_an_object_array_in_meta_npz_is_refused_in_one_line_and_never_unpickled(cli, tmp_path):
    witness = tmp_path / "unpickled"

    class MakesDirWhenUnpickled:
        def __reduce__(self):
            return os.mkdir, (str(witness),)

    meta = _npz(labels=np.array([MakesDirWhenUnpickled()] * 2, dtype=object))
    r = _evaluate(cli, _tar([_header(version=2, count=2), *_pngs(2), meta]))
    _assert_one_line_failure(r, "<stdin>", META_NAME)
    assert not witness.exists()


def test_stream_json_states_format_version_classes_and_count():
    for count in (N, None):
        header = json.loads(tarfile.open(fileobj=io.BytesIO(_written(count=count))).extractfile(HEADER_NAME).read())
        assert header == {"format": STREAM_FORMAT, "version": 2, "class_names": ["a", "b"], "count": count}


@pytest.mark.parametrize("header, needle", [
    (_header(version=99), "version 99"),
    (_header(version=2, count=-1), "count -1"),
    ((HEADER_NAME, b'{"format": "something-else", "version": 1}'), "something-else"),
    ((HEADER_NAME, b"{not json"), "damaged"),
])
def test_an_unknown_or_bad_header_is_refused_in_one_line(cli, header, needle):
    r = _evaluate(cli, _tar([header, *_pngs(2)]))
    _assert_one_line_failure(r, "<stdin>", needle)


def test_the_writer_keeps_its_count():
    buf = io.BytesIO()
    w = StreamWriter(buf, count=30)
    w.write(_images(20))
    with pytest.raises(ValueError, match="promised 30"):
        w.write(_images(20))
    with pytest.raises(ValueError, match="promised 30"):
        w.close()
    assert len(buf.getvalue()) > 10240  # some of it went out, and it reads as cut short
    with pytest.raises(GantoolsError, match="end marker|truncated"):
        list(read_stream(io.BytesIO(buf.getvalue())))


# ----------------------------------------------------------------------------- complete streams


@pytest.mark.parametrize("count", [N, None])
def test_a_complete_stream_reads(count):
    ds = open_source("-", stdin=io.BytesIO(_written(count=count)))
    assert np.array_equal(ds.images.permute(0, 2, 3, 1).numpy(), _images())
    assert ds.labels.tolist() == [0, 1, 0, 0, 0, 0] and ds.class_names == ["a", "b"]


def test_a_version_1_stream_still_reads():
    data = _tar([_header(version=1, class_names=["a", "b"]), *_pngs(3), _npz(labels=np.array([1, 0, 1]))])
    ds = open_source("-", stdin=io.BytesIO(data))
    assert np.array_equal(ds.images.permute(0, 2, 3, 1).numpy(), _images(3))
    assert ds.labels.tolist() == [1, 0, 1] and ds.class_names == ["a", "b"]


def test_sample_and_interpolate_streams_state_their_count(tiny_dcgan, cli):
    """The commands that know how many images they send say so in stream.json."""
    for args, n in ((("sample", tiny_dcgan, "-n", "5"), 5),
                    (("interpolate", tiny_dcgan, "--seeds", "1,2", "--steps", "4", "--device", "cpu"), 4)):
        r = cli(*args, "-o", "-")
        assert r.code == 0, r.err
        with tarfile.open(fileobj=io.BytesIO(r.out)) as tar:
            header = json.load(tar.extractfile("stream.json"))
            pngs = [m for m in tar.getnames() if m.endswith(".png")]
        assert header["count"] == len(pngs) == n, (args, header)
