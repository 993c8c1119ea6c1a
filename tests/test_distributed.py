"""Training and evaluating with several processes (gantools.distributed): 2 processes on the CPU with
gloo, started by torch.distributed.run as a user's torchrun would, or by `gantools train --nproc 2`."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from gantools import distributed
from gantools.train import TrainConfig, resume, train

# gan's recipe with a fixed lr horizon, so that a 6-step run is the first half of a 12-step one
RUN = ["gan", "--data", "toy:ring", "--batch-size", "64", "--lr-horizon", "12", "--log-every", "2",
       "--ckpt-every", "3", "--keep", "5", "--sample-every", "3", "--ema", "--device", "cpu"]
LONG = ["gan", "--data", "toy:ring", "--batch-size", "64", "--lr-schedule", "constant", "--steps", "100000",
        "--ckpt-every", "20", "--device", "cpu"]  # a run to stop


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def torchrun(*args, cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc-per-node 2 -m gantools ARGS`."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "gantools",
           *map(str, args)]
    return subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)


def gantools(*args, cwd: Path, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "gantools", *map(str, args)], cwd=cwd, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def single(out: Path, steps: int) -> Path:
    """The same run in this process, one process."""
    cfg = TrainConfig(model="gan", data="toy:ring", steps=steps, batch_size=64, lr_horizon=12, log_every=2,
                      ckpt_every=3, keep=5, sample_every=3, ema=True, device="cpu", out=str(out))
    return train(cfg)


def assert_same_weights(a: Path, b: Path, atol: float = 1e-5) -> None:
    sa, sb = (torch.load(p, weights_only=True)["state"] for p in (a, b))
    for net in ("G", "D", "G_ema"):
        for key, t in sa[net].items():
            assert torch.allclose(t.float(), sb[net][key].float(), atol=atol), (a, b, net, key)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A 6-step run with 2 processes (in its own working folder: the default run folder) and a
    12-step run with one."""
    root = tmp_path_factory.mktemp("dist")
    two = torchrun("train", *RUN, "--steps", "6", cwd=root)
    one = single(root / "one", 12)
    return root, two, one


# ---------------------------------------------------------------------------- the data split


def test_rows_split_the_global_batch_in_turn(monkeypatch):
    """Rank r of W keeps rows r, r + W, ... of the global batch: the ranks' rows are the batch."""
    batch = torch.arange(16).view(2, 8)  # n_critic x global batch
    parts = []
    for rank in range(2):
        monkeypatch.setattr(distributed, "_joined", [distributed.Group(rank=rank, world=2)])
        parts.append(distributed.rows(batch, 1))
    assert parts[0].tolist() == [[0, 2, 4, 6], [8, 10, 12, 14]]
    assert sorted(torch.cat(parts, 1).flatten().tolist()) == list(range(16))
    monkeypatch.setattr(distributed, "_joined", [])
    assert distributed.rows(batch, 1) is batch


def test_rank_seeds():
    """Rank 0 of a fresh run seeds as one process; other ranks and later steps get seeds of their own."""
    assert distributed.rank_seed(7, 0) == 7
    seeds = {distributed.rank_seed(7, r, s) for r in range(4) for s in (0, 100)}
    assert len(seeds) == 8 and all(0 <= s < 2**63 for s in seeds)
    assert distributed.rank_seed(7, 1, 100) == distributed.rank_seed(7, 1, 100)


# ---------------------------------------------------------------------------- training


@pytest.mark.slow
def test_two_processes_train_as_one_and_rank_0_alone_writes(runs):
    """2 processes at global batch 64 give one process's weights at batch 64 (same samples, gradients
    averaged); rank 0 alone claims the run folder, logs, draws grids and checkpoints, and prints."""
    root, two, one = runs
    assert two.returncode == 0, two.stderr
    assert [p.name for p in (root / "runs").iterdir()] == ["gan-toy-ring-001"]  # one folder claimed
    run = root / "runs" / "gan-toy-ring-001"
    assert two.stdout.strip().splitlines() == [str(Path("runs/gan-toy-ring-001/checkpoints/step-000006.pt"))]
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [2, 3, 4, 6]  # logged once each (due logs and checkpoints)
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["step-000003.png", "step-000006.png"]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.pt", "step-000003.pt", "step-000006.pt"]
    assert_same_weights(run / "checkpoints" / "step-000006.pt", one.parent / "step-000006.pt")
    two_ck = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    one_ck = torch.load(one.parent / "step-000006.pt", weights_only=True)
    assert sorted(two_ck) == sorted(one_ck) and two_ck["config"] == {**one_ck["config"], "out": None, "steps": 6}
    for name in ("loss_d", "loss_g"):  # the logged values are the mean over the ranks
        assert two_ck["metrics"][-1][name] == pytest.approx(one_ck["metrics"][-1][name], rel=1e-5)


@pytest.mark.slow
def test_resume_two_processes_with_one(runs, tmp_path):
    """A run of 2 processes resumed by one continues as one process's run would."""
    root, two, one = runs
    assert two.returncode == 0, two.stderr
    run = tmp_path / "run"
    shutil.copytree(root / "runs" / "gan-toy-ring-001", run)
    last = resume(str(run), {"steps": 12, "device": "cpu"})
    assert_same_weights(last, one)


@pytest.mark.slow
def test_resume_one_process_with_two(runs, tmp_path):
    root, _, one = runs
    run = tmp_path / "run"
    shutil.copytree(one.parent.parent, run)
    r = torchrun("train", "--resume", run / "checkpoints" / "step-000006.pt", "--steps", "12", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert_same_weights(run / "checkpoints" / "step-000012.pt", one)


@pytest.mark.slow
@pytest.mark.parametrize("args, message", [
    (["--batch-size", "63"], "--batch-size 63: the global batch is split over 2 processes; give a multiple of 2"),
    (["--sync-bn"], "--sync-bn: torch's SyncBatchNorm runs on CUDA only; on the CPU each process normalises its "
                    "own rows (leave --sync-bn out)"),
])
def test_nproc_refuses_bad_usage(tmp_path, args, message):
    """`gantools train --nproc 2` would start 2 processes; what they cannot do (share a batch of 63, sync batch
    norm on the CPU) is bad usage refused before they start: one line, no traceback, no run folder."""
    p = gantools("train", "gan", "--data", "toy:ring", "--steps", "2", "--device", "cpu", *args, "--nproc", "2",
                 cwd=tmp_path)
    out, err = p.communicate(timeout=240)
    assert p.returncode == 2, err
    line = f"gantools train: error: {message}"
    assert err == line + "\n", err
    assert out == "" and not (tmp_path / "runs").exists()


def _rank_pid(parent: int, rank: int) -> int | None:
    """The pid of the child of `parent` that torchrun started as RANK `rank`."""
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            env = (d / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent and f"RANK={rank}".encode() in env:
            return int(d.name)
    return None


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 180) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < end, f"{path} did not appear"
        time.sleep(0.2)


def _no_temporaries(run: Path) -> None:
    names = [p.name for p in run.rglob(".*") if p.name != ".lock"]
    assert names == [], names
    for ck in (run / "checkpoints").glob("*.pt"):
        torch.load(ck, weights_only=True)  # every checkpoint whole


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the rank's process through /proc")
def test_a_dead_rank_stops_the_others(tmp_path):
    """SIGKILL one rank: the other exits non-zero within seconds, nothing half-written."""
    run = tmp_path / "run"
    p = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                          "-m", "gantools", "train", *LONG, "--out", run],
                         cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(run / "checkpoints" / "last.pt", p)
        pid = _rank_pid(p.pid, 1)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        start = time.monotonic()
        _, err = p.communicate(timeout=60)
        took = time.monotonic() - start
    finally:
        p.kill()
    assert p.returncode != 0
    assert took < 20, (took, err)
    _no_temporaries(run)


@pytest.mark.slow
def test_sigterm_stops_every_rank_with_one_checkpoint(tmp_path):
    """SIGTERM to `gantools train --nproc 2`: every rank stops at the same step, rank 0 writes that
    step's checkpoint, exit 130."""
    run = tmp_path / "run"
    p = gantools("train", *LONG, "--out", run, "--nproc", "2", cwd=tmp_path)
    try:
        _wait_for(run / "checkpoints" / "last.pt", p)
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=60)
    finally:
        p.kill()
    assert p.returncode == 130, err
    stopped = [int(s) for s in re.findall(r"stopped by signal at step (\d+);", err)]  # ranks' lines may interleave
    assert len(stopped) == 2, err  # each rank says so
    step = stopped[0]
    assert stopped == [step, step]  # the same step on both ranks
    last = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert last["step"] == step and (run / "checkpoints" / f"step-{step:06d}.pt").is_file()
    assert json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["step"] == step
    _no_temporaries(run)


@pytest.mark.slow
def test_a_non_finite_loss_stops_every_rank(tmp_path):
    r = torchrun("train", *LONG, "--lr-d", "1e30", "--lr-g", "1e30", "--log-every", "1", "--out", tmp_path / "run",
                 cwd=tmp_path)
    assert r.returncode != 0
    assert r.stderr.count("gantools: error: loss became non-finite") == 2, r.stderr


# ---------------------------------------------------------------------------- evaluation


@pytest.mark.slow
def test_distributed_evaluate_equals_one_process(tmp_path):
    """Each rank extracts every other batch of Inception features; rank 0's scores equal one process's."""
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "fake.npz", images=rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8))
    np.savez(tmp_path / "real.npz", images=rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8))
    args = ["evaluate", "fake.npz", "--real", "real.npz", "-m", "fid,kid", "-b", "2", "--kid-subset-size", "5",
            "--json", "--device", "cpu"]
    two = torchrun(*args, cwd=tmp_path)
    assert two.returncode == 0, two.stderr
    # one process on the ranks' one thread: CPU convolutions' sums depend on the thread count, not the rank
    one = gantools(*args, cwd=tmp_path)
    out, err = one.communicate(timeout=240)
    assert one.returncode == 0, err
    assert json.loads(two.stdout)["metrics"] == json.loads(out)["metrics"]  # one JSON object, from rank 0


def test_nproc_refuses_a_bad_command_before_starting_processes(tmp_path, monkeypatch, tiny_dcgan):
    """`--nproc 2` checks the config in the parent first: one error line, exit 2, no process started."""
    from conftest import run_cli

    started = []
    monkeypatch.setattr(distributed, "launch", lambda n, argv: started.append((n, argv)) or 0)
    base = ["train", "dcgan", "--data", "toy:shapes", "--steps", "1", "--nproc", "2", "--device", "cpu"]
    for extra, needle in ((["-b", "7"], "--batch-size 7: the global batch is split over 2 processes"),
                          (["-b", "8", "--sync-bn"], "--sync-bn: torch's SyncBatchNorm runs on CUDA only"),
                          (["-b", "8", "--set", "ngf=0"], "ngf = 0"),
                          (["-b", "8", "--resolution", "33"], "--resolution 33")):
        r = run_cli(*base, *extra)
        assert r.code == 2 and r.err.count("\n") == 1 and needle in r.err, (extra, r.err)
    for extra, needle in ((["--batch-size", "8"], "--batch-size cannot change on resume"),
                          (["--sync-bn"], "--sync-bn: torch's SyncBatchNorm runs on CUDA only")):
        r = run_cli("train", "--resume", tiny_dcgan, "--nproc", "2", "--out", tmp_path / "new", *extra)
        assert r.code == 2 and r.err.count("\n") == 1 and needle in r.err, (extra, r.err)
    # a checkpoint outside its run folder, without --out: refused once, before the processes
    lone = tmp_path / "lone"
    lone.mkdir()
    from gantools.checkpoint import load_checkpoint, save_checkpoint

    ck = load_checkpoint(tiny_dcgan)
    ck["config"]["out"] = None  # its run folder would be the checkpoint's own folder
    save_checkpoint(ck, lone / "m.pt")
    r = run_cli("train", "--resume", lone / "m.pt", "--nproc", "2", "--steps", "4")
    assert r.code == 1 and r.err.count("\n") == 1 and "--out NEWFOLDER" in r.err, r.err
    assert started == [] and not (tmp_path / "new").exists() and os.listdir(lone) == ["m.pt"]
    r = run_cli(*base, "-b", "8", "--out", tmp_path / "ok")  # a good command is started as before
    assert r.code == 0 and len(started) == 1 and started[0][0] == 2 and "--nproc" not in started[0][1], r.err
