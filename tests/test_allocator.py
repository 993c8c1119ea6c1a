"""gantools.allocator: freed memory is reused instead of being mapped afresh (page faults)."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from conftest import ROOT

# A training step's pattern: many 4 MiB blocks, all freed at the end; count the page faults of
# five such steps after a first one.
PROGRAM = """
import resource, sys
import numpy as np
if sys.argv[1] == "tuned":
    from gantools.allocator import reuse_freed_memory
    assert reuse_freed_memory() and reuse_freed_memory()
def step():
    blocks = [np.ones(1024 * 1024, dtype=np.float32) for _ in range(10)]
    del blocks
step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> int:
    r = subprocess.run([sys.executable, "-c", PROGRAM, mode], capture_output=True, text=True, cwd=ROOT, check=True)
    return int(r.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                    reason="glibc's malloc only")
def test_reused_memory_takes_no_page_faults():
    default, tuned = _faults("default"), _faults("tuned")
    pages = 5 * 10 * 4 * 1024 * 1024 // 4096
    assert default > pages // 4, default  # by default glibc gives the blocks back and faults them in again
    assert tuned < pages // 50, tuned


def test_every_command_sets_it(monkeypatch):
    from gantools import allocator
    from gantools.cli.common import handle_errors

    calls = []
    monkeypatch.setattr(allocator, "reuse_freed_memory", lambda: calls.append(1) or True)
    handle_errors(lambda quiet=False, verbose=False: None)()
    assert calls == [1]
