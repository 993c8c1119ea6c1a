"""SIGTERM stops every command as Ctrl-C does: the same cleanup (no temporary file left), one line,
exit 130. (train's own handler, which saves a checkpoint first: test_train_sample.py.)"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT


pytestmark = [pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals"), pytest.mark.slow]


@pytest.mark.parametrize("out, n", [("photos", 200_000), ("images.npz", 20_000)])  # .npz: written at the end
def test_sigterm_while_sampling_cleans_up_and_exits_130(tiny_dcgan, tmp_path, out, n):
    work = tmp_path / "work"
    work.mkdir()
    p = subprocess.Popen([sys.executable, "-m", "gantools", "sample", str(tiny_dcgan), "-n", str(n),
                          "-b", "64", "--device", "cpu", "-o", out],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=work)
    try:
        deadline = time.time() + 90
        while time.time() < deadline and not any(".tmp-" in q.name for q in work.rglob("*")):
            time.sleep(0.05)
        assert p.poll() is None, p.communicate()
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=60)
    finally:
        p.kill()
    assert p.returncode == 130, err
    assert err.decode().strip().splitlines()[-1] == "gantools: interrupted"
    assert b"Traceback" not in err
    assert list(work.rglob("*")) == []  # no temporary file, no half-made folder


def _closed_pipe_run(args, cwd):
    import os

    r, w = os.pipe()
    os.close(r)  # the reader is gone before the first write
    try:
        return subprocess.run([sys.executable, "-m", "gantools", *args], stdout=w, stderr=subprocess.PIPE, cwd=cwd,
                              timeout=120)
    finally:
        os.close(w)


def test_a_rich_table_on_a_closed_pipe_exits_141_silently(tmp_path):
    """`gantools models | head -1`: as every other command, 141 and nothing on stderr (rich's own exit was 1)."""
    p = _closed_pipe_run(["models"], ROOT)
    assert (p.returncode, p.stderr) == (141, b"")


def test_the_stdout_console_raises_broken_pipe_for_handle_errors():
    """balance's tables go to stdout through the same console as models' (gantools.cli.common.stdout_console)."""
    from gantools.cli.common import stdout_console

    class Closed:
        def write(self, text):
            raise BrokenPipeError

        def flush(self):
            raise BrokenPipeError

    out = stdout_console()
    out.file = Closed()
    with pytest.raises(BrokenPipeError):
        out.print("a table")
