"""CI runs the README's test command, and under CI=true a skipped test fails the run."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

from conftest import ROOT


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"Install and run the test suite \(what `\.ci/run` runs\):\s*```sh\n(.+?)\n```", readme, re.S)
    assert block, "README: the test set-up block is gone"
    assert block.group(1) in (ROOT / ".ci" / "run").read_text().splitlines()


def test_a_skip_fails_the_run_only_under_ci(tmp_path):
    shutil.copy(ROOT / "tests" / "conftest.py", tmp_path)
    (tmp_path / "test_x.py").write_text(
        "import pytest\n\ndef test_runs():\n    pass\n\n"
        "def test_needs_a_tool():\n    pytest.skip('frobnicate not installed')\n")
    env = {k: v for k, v in os.environ.items() if k != "CI"}

    def run(**extra):
        return subprocess.run([sys.executable, "-m", "pytest", "-q", "-ra", "-p", "no:cacheprovider", str(tmp_path)],
                              capture_output=True, text=True, cwd=tmp_path, env={**env, **extra})

    local, ci = run(), run(CI="true")
    assert local.returncode == 0, local.stdout
    assert ci.returncode == 1, ci.stdout
    for r in (local, ci):
        assert "frobnicate not installed" in r.stdout  # -ra: what skipped and why
    assert "CI=true: 1 skipped test(s) fail this run" in ci.stdout and "CI=true" not in local.stdout
