"""SIGTERM stops every command as Ctrl-C does: the same cleanup (no temporary file left), one line,
exit 130. (train's own handler, which saves a checkpoint first: test_train_sample.py.)"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest


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
