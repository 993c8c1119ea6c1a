"""A run folder belongs to one run: refused reuse, the lock, resume after a hard kill, numbered folders."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, run_cli
from gantools import train as train_mod
from gantools.checkpoint import load_checkpoint

TINY = ("--batch-size", "16", "--sample-every", "0", "--device", "cpu")
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and flock")


def _gantools(*args, cwd=ROOT) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "gantools", *map(str, args)], cwd=cwd, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_for(condition, what: str, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while not condition():
        if time.time() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def _logged_steps(run: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()
            if line.endswith("}")]  # a line being written has no closing brace yet


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_new_run_into_a_used_folder_is_refused_and_the_old_run_untouched(tmp_path):
    run = tmp_path / "conc"
    r = run_cli("train", "gan", "--data", "toy:ring", "--steps", "6", "--ckpt-every", "3", "--log-every", "1",
                "--keep", "1", "--out", run, *TINY)
    assert r.code == 0, r.err
    before = _snapshot(run)
    assert {"config.toml", "metrics.jsonl", "checkpoints/last.pt"} <= set(before)
    r = run_cli("train", "gan", "--data", "toy:ring", "--steps", "2", "--out", run, *TINY)
    assert r.code == 2 and r.out == b"" and r.err.count("\n") == 1, r.err
    assert f"--resume {run}" in r.err and "--out" in r.err
    assert _snapshot(run) == before  # last.pt, config.toml, metrics.jsonl: the same bytes, nothing added

    # a folder of the user's: refused, and nothing (not even the lock file) is written into it
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    r = run_cli("train", "gan", "--data", "toy:ring", "--steps", "2", "--out", mine, *TINY)
    assert r.code == 2 and "not empty" in r.err and r.err.count("\n") == 1, r.err
    assert os.listdir(mine) == ["notes.txt"]


def test_dry_run_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for out in ((), ("--out", "fresh")):
        r = run_cli("train", "gan", "--data", "toy:ring", "--steps", "2", "--dry-run", *out)
        assert r.code == 0, r.err
    assert os.listdir(tmp_path) == []


@posix_only
def test_a_second_writer_is_refused_naming_the_holder(tmp_path):
    run = tmp_path / "run"
    first = _gantools("train", "gan", "--data", "toy:ring", "--steps", "1000000", "--ckpt-every", "50",
                      "--log-every", "50", "--out", run, *TINY)
    try:
        _wait_for(lambda: (run / "checkpoints" / "last.pt").exists() or first.poll() is not None, "a checkpoint")
        assert first.poll() is None, first.communicate()[1]
        assert (run / ".lock").read_text().strip() == str(first.pid)
        second = _gantools("train", "--resume", run, "--steps", "2000000")
        out, err = second.communicate(timeout=120)
        lines = err.decode().strip().splitlines()
        assert second.returncode == 1 and out == b"" and len(lines) == 1, err
        assert f"process {first.pid}" in lines[0] and str(run) in lines[0]
        r = run_cli("train", "gan", "--data", "toy:ring", "--steps", "2", "--out", run, *TINY)  # a new run into it
        assert r.code == 1 and r.err.count("\n") == 1 and f"process {first.pid}" in r.err, r.err
        assert first.poll() is None  # the first run trains on
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=120)
    assert first.returncode == 130


@posix_only
def test_resume_after_a_hard_kill_logs_each_step_once(tmp_path):
    """SIGKILL after steps past the last checkpoint were logged: the resume drops them from
    metrics.jsonl and logs them again, and the dead process's lock file does not block it."""
    run = tmp_path / "run"
    p = _gantools("train", "gan", "--data", "toy:ring", "--steps", "1000000", "--ckpt-every", "100",
                  "--log-every", "1", "--keep", "2", "--out", run, *TINY)

    def past_a_checkpoint() -> bool:
        if p.poll() is not None:
            return True
        steps = _logged_steps(run) if (run / "metrics.jsonl").exists() else []
        return bool(steps) and steps[-1] > 100 and steps[-1] % 100 > 10

    try:
        _wait_for(past_a_checkpoint, "steps past a checkpoint")
        assert p.poll() is None, p.communicate()[1]
    finally:
        p.kill()
        p.communicate(timeout=60)
    killed_lines = (run / "metrics.jsonl").read_text().splitlines()
    saved = load_checkpoint(run / "checkpoints" / "last.pt")["step"]
    logged = _logged_steps(run)
    assert saved % 100 == 0 and logged[-1] > saved  # steps past the checkpoint were logged, then lost
    assert (run / ".lock").read_text().strip() == str(p.pid)  # left behind by the dead process

    total = logged[-1] + 5
    r = run_cli("train", "--resume", run, "--steps", total)
    assert r.code == 0, r.err
    assert Path(r.text.strip()).is_file() and load_checkpoint(Path(r.text.strip()))["step"] == total
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == list(range(1, total + 1))
    assert lines[:saved] == killed_lines[:saved]  # the checkpoint's history, as first written


def test_default_run_folders_started_together_differ(tmp_path):
    procs = [_gantools("train", "gan", "--data", "toy:ring", "--steps", "2", *TINY, cwd=tmp_path) for _ in range(2)]
    outs = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e for _, e in outs]
    paths = [tmp_path / o.decode().strip() for o, _ in outs]
    assert all(p.is_file() for p in paths)
    assert sorted(p.parent.parent.name for p in paths) == ["gan-toy-ring-001", "gan-toy-ring-002"]


def test_a_number_taken_after_it_was_chosen_is_skipped(tmp_path, monkeypatch):
    """The claim is an exclusive mkdir: a folder made between numbering and claiming is left alone."""
    monkeypatch.chdir(tmp_path)
    real = train_mod.default_run_dir
    taken = Path("runs/gan-toy-ring-001")

    def numbered_before_another_run_took_it(model, data):
        if not taken.exists():
            taken.mkdir(parents=True)
            (taken / "config.toml").write_text("# the other run\n")
            return taken
        return real(model, data)

    monkeypatch.setattr(train_mod, "default_run_dir", numbered_before_another_run_took_it)
    cfg = train_mod.TrainConfig(model="gan", data="toy:ring")
    assert train_mod._claim_run_dir(cfg) == Path("runs/gan-toy-ring-002")
    assert os.listdir(taken) == ["config.toml"]


def test_the_printed_checkpoint_survives_pruning(tmp_path):
    """Resumed from an earlier checkpoint while later ones exist, --keep never removes the final one."""
    run = tmp_path / "run"
    r = run_cli("train", "gan", "--data", "toy:ring", "--steps", "6", "--ckpt-every", "2", "--keep", "3",
                "--out", run, *TINY)
    assert r.code == 0, r.err
    r = run_cli("train", "--resume", run / "checkpoints" / "step-000002.pt", "--steps", "3")
    assert r.code == 0, r.err
    final = Path(r.text.strip())
    assert final.name == "step-000003.pt" and final.is_file()
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 3
    assert sorted(p.name for p in (run / "checkpoints").glob("step-*.pt")) == [
        "step-000002.pt", "step-000003.pt", "step-000004.pt", "step-000006.pt"]
    assert _logged_steps(run) == [2, 3]  # the resumed history: step 2's checkpoint's, then step 3


def test_prune_orders_by_step_number(tmp_path):
    for step in (999_998, 999_999, 1_000_000):
        (tmp_path / f"step-{step:06d}.pt").write_bytes(b"")
    train_mod._prune(tmp_path / "step-1000000.pt", keep=2)
    assert sorted(os.listdir(tmp_path)) == ["step-1000000.pt", "step-999999.pt"]


def test_without_fcntl_training_runs_unlocked(tmp_path, monkeypatch):
    monkeypatch.setattr(train_mod, "fcntl", None)
    r = run_cli("train", "gan", "--data", "toy:ring", "--steps", "2", "--out", tmp_path / "run", *TINY)
    assert r.code == 0, r.err
    assert Path(r.text.strip()).is_file() and not (tmp_path / "run" / ".lock").exists()


def test_resuming_a_lone_checkpoint_never_writes_into_a_users_folder(tmp_path, monkeypatch):
    """A checkpoint copied out of a run whose out was run1, resumed where run1/ is the user's own folder:
    refused in one line naming --out, the user's files untouched; --out NEWFOLDER continues the run there."""
    monkeypatch.chdir(tmp_path)
    r = run_cli("train", "gan", "--data", "toy:ring", "--steps", "2", "--lr-schedule", "constant", "--out", "run1", *TINY)
    assert r.code == 0, r.err
    proj = tmp_path / "userproj"
    (proj / "run1").mkdir(parents=True)
    os.replace("run1/checkpoints/last.pt", proj / "mymodel.pt")
    users = {"config.toml": b"lr = 1\n", "metrics.jsonl": b"{}\n", "notes.txt": b"mine\n"}
    for name, data in users.items():
        (proj / "run1" / name).write_bytes(data)
    (proj / "run1" / "checkpoints").mkdir()
    (proj / "run1" / "checkpoints" / "step-000001.pt").write_bytes(b"users")
    import shutil

    shutil.copyfile(proj / "mymodel.pt", proj / "run1" / "checkpoints" / "mine.pt")
    before = _snapshot(proj)
    monkeypatch.chdir(proj)
    for target in ("mymodel.pt", "run1/checkpoints/mine.pt"):
        r = run_cli("train", "--resume", target, "--steps", "4")
        assert r.code == 1 and r.err.count("\n") == 1 and "--out NEWFOLDER" in r.err, r.err
    assert _snapshot(proj) == before and not (proj / "run1" / ".lock").exists()
    # the checkpoint's own folder is not a run folder either (a run without --out)
    (proj / "alone").mkdir()
    ck = load_checkpoint(proj / "mymodel.pt")
    ck["config"]["out"] = None
    from gantools.checkpoint import save_checkpoint

    save_checkpoint(ck, proj / "alone" / "m.pt")
    r = run_cli("train", "--resume", "alone/m.pt", "--steps", "4")
    assert r.code == 1 and "--out NEWFOLDER" in r.err and sorted(os.listdir(proj / "alone")) == ["m.pt"], r.err
    # --out: a new folder for the run; later resumes continue there
    r = run_cli("train", "--resume", "mymodel.pt", "--steps", "4", "--out", "cont")
    assert r.code == 0, r.err
    assert load_checkpoint(proj / "cont" / "checkpoints" / "last.pt")["step"] == 4
    r = run_cli("train", "--resume", "cont", "--steps", "5")
    assert r.code == 0 and load_checkpoint(proj / "cont" / "checkpoints" / "last.pt")["step"] == 5, r.err
    r = run_cli("train", "--resume", "mymodel.pt", "--steps", "4", "--out", "run1")  # not a new folder
    assert r.code == 2 and r.err.count("\n") == 1, r.err
    assert _snapshot(proj / "run1") == {k[len("run1/"):]: v for k, v in before.items() if k.startswith("run1/")}


def test_prune_removes_only_the_runs_own_checkpoints(tmp_path):
    """A step-*.pt in the run's checkpoints/ that gantools did not write for the run is never pruned."""
    run = tmp_path / "run"
    r = run_cli("train", "gan", "--data", "toy:ring", "--steps", "2", "--ckpt-every", "1", "--keep", "1",
                "--lr-schedule", "constant", "--out", run, *TINY)
    assert r.code == 0, r.err
    (run / "checkpoints" / "step-000000.pt").write_bytes(b"a user's file")
    r = run_cli("train", "--resume", run, "--steps", "4", "--ckpt-every", "1", "--keep", "1")
    assert r.code == 0, r.err
    assert sorted(p.name for p in (run / "checkpoints").glob("step-*.pt")) == ["step-000000.pt", "step-000004.pt"]
    assert (run / "checkpoints" / "step-000000.pt").read_bytes() == b"a user's file"


def test_a_run_that_ends_before_its_first_checkpoint_leaves_nothing_to_block_a_rerun(tmp_path, monkeypatch):
    """A non-finite loss at step 2 or a (second) Ctrl-C before the first checkpoint: the files the run wrote,
    its .lock and the folder it made are removed, so the same command runs again; what was there stays."""
    nan = ["train", "dcgan", "--data", "toy:shapes", "--lr-g", "1e30", "--lr-d", "1e30", "--steps", "20",
           "--log-every", "1", "--sample-every", "1", "--set", "ngf=8", "--set", "ndf=8", *TINY]
    for _ in range(2):  # the second time is not refused as a used folder
        r = run_cli(*nan, "-o", tmp_path / "trnan")
        assert r.code == 1 and "non-finite" in r.err and r.err.count("\n") == 1, r.err
        assert not (tmp_path / "trnan").exists()
    mine = tmp_path / "mine"  # an empty folder given as --out stays, as does a stale .lock left in it
    mine.mkdir()
    (mine / ".lock").write_text("123\n")
    r = run_cli(*nan, "-o", mine)
    assert r.code == 1 and sorted(os.listdir(mine)) == [".lock"], (r.err, os.listdir(mine))

    def interrupted(self, batches):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_mod.Trainer, "train_step", interrupted)
    args = ["train", "gan", "--data", "toy:ring", "--steps", "4", "--lr-schedule", "constant", *TINY]
    r = run_cli(*args, "-o", tmp_path / "ctrlc")
    assert r.code == 130 and not (tmp_path / "ctrlc").exists(), r.err
    monkeypatch.undo()
    r = run_cli(*args, "-o", tmp_path / "ctrlc")
    assert r.code == 0 and load_checkpoint(Path(r.text.strip()))["step"] == 4, r.err
    # a resume into a new folder that fails before its first checkpoint: the same
    monkeypatch.setattr(train_mod.Trainer, "train_step", interrupted)
    r = run_cli("train", "--resume", tmp_path / "ctrlc", "--steps", "6", "--out", tmp_path / "branch")
    assert r.code == 130 and not (tmp_path / "branch").exists(), r.err


def test_a_killed_run_without_a_checkpoint_is_named_so(tmp_path):
    """What a SIGKILL before the first checkpoint leaves (no cleanup ran): --out and --resume say there is
    nothing to resume, instead of suggesting --resume and then finding no checkpoint."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    train_mod.write_config_toml({"model": "gan", "data": "toy:ring"}, run / "config.toml", "abc")
    (run / "metrics.jsonl").write_text("")
    r = run_cli("train", "gan", "--data", "toy:ring", "--steps", "2", "-o", run, *TINY)
    assert r.code == 2 and r.err.count("\n") == 1 and "ended before its first checkpoint" in r.err, r.err
    r = run_cli("train", "--resume", run, "--steps", "2")
    assert r.code == 1 and r.err.count("\n") == 1 and "ended before its first checkpoint" in r.err, r.err
