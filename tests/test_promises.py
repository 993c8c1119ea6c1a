"""README promises that had no test: Ctrl-C exits 130 leaving nothing half-written (sample, impute,
evaluate --save-stats), --truncation, --temperature, impute's --header/--no-header."""

from __future__ import annotations

import csv
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT


def _start(args: list[str], cwd: Path) -> subprocess.Popen:
    """`gantools ARGS` in a subprocess that takes Ctrl-C as a terminal would deliver it (SIGINT at its
    default disposition even when this test runs in a background job, where it is ignored)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-m", "gantools", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _interrupt(p: subprocess.Popen, after: float) -> tuple[int, bytes, str]:
    time.sleep(after)
    assert p.poll() is None, p.communicate()[1].decode()  # still working when Ctrl-C comes
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    return p.returncode, out, err.decode()


@pytest.fixture
def table_csv(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 4)).round(3).astype(str)
    x[rng.random(x.shape) < 0.2] = ""
    p = tmp_path / "holes.csv"
    p.write_text("a,b,c,d\n" + "\n".join(",".join(r) for r in x) + "\n")
    return p


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("what", ["sample-npz", "sample-h5", "impute", "evaluate-save-stats"])
def test_ctrl_c_exits_130_with_one_line_and_writes_nothing(what, tiny_dcgan, table_csv, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    if what == "impute":
        args = ["impute", str(table_csv), "-o", "filled.csv", "--iterations", "50000000"]
    elif what == "evaluate-save-stats":  # Inception features of 2000 images take minutes on a CPU
        args = ["evaluate", "toy:shapes", "--save-stats", "stats.npz", "--device", "cpu"]
    else:
        ext = what.split("-")[1]
        args = ["sample", str(tiny_dcgan), "-n", "100000", "--batch-size", "1", "-o", f"s.{ext}"]
    code, out, err = _interrupt(_start(args, work), after=6.0)
    assert code == 130, err
    assert err.strip().splitlines()[-1] == "gantools: interrupted" and "Traceback" not in err, err
    assert out == b""
    assert list(work.iterdir()) == []  # no output, no temporary file


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("where", ["command", "start-up", "class-creation", "typer"])
def test_ctrl_c_inside_exec_code_still_exits_130(where, tmp_path):
    """CPython ends a `python -m` process by SIGINT (-2 to its parent), whatever sys.exit says, once a
    KeyboardInterrupt has passed through exec()'d code, as Ctrl-C does when it lands in a dataclass being
    built (importing torch builds many; CI failed so). Here it lands so on purpose: in a command (models
    --json), while the commands are imported, and while typer parses the command line (where typer exits 130
    without a word). And Python 3.11 turns Ctrl-C inside a class's creation into a RuntimeError (seen when
    interrupting torch's import): still Ctrl-C."""
    if where == "command":
        hook = "import gantools.cli.models as m\nm.print_json = lambda *a: exec('raise KeyboardInterrupt')\n"
    elif where == "typer":  # typer turns Ctrl-C while it parses the command line into exit 130, silently
        hook = ("import typer.core\n"
                "def parse(*a, **k):\n"
                "    exec('raise KeyboardInterrupt')\n"
                "typer.core.TyperGroup.make_context = parse\n")
    elif where == "class-creation":
        hook = ("import gantools.cli.models as m\n"
                "class Field:\n"
                "    def __set_name__(self, owner, name):\n"
                "        exec('raise KeyboardInterrupt')\n"
                "def build(*a):\n"
                "    class Source:\n"
                "        name = Field()\n"
                "m.print_json = build\n")
    else:  # importing gantools.cli.train is interrupted
        hook = ("class Stop:\n"
                "    def find_spec(self, name, path=None, target=None):\n"
                "        if name == 'gantools.cli.train':\n"
                "            exec('raise KeyboardInterrupt')\n"
                "sys.meta_path.insert(0, Stop())\n")
    (tmp_path / "ctrl_c_in_exec.py").write_text(
        "import sys\n" + hook + "sys.argv = ['gantools', 'models', '--json']\n"
        "from gantools.__main__ import main\nmain()\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(tmp_path)]))
    p = subprocess.run([sys.executable, "-m", "ctrl_c_in_exec"], cwd=tmp_path, env=env, capture_output=True)
    err = p.stderr.decode()
    assert p.returncode == 130, err
    assert err.strip().splitlines() == ["gantools: interrupted"], err
    assert p.stdout == b""


def test_truncation_keeps_latents_inside_the_bound(tiny_dcgan, cli, tmp_path):
    plain, cut = tmp_path / "plain.npz", tmp_path / "cut.npz"
    assert cli("sample", tiny_dcgan, "-n", "500", "-o", plain).code == 0
    r = cli("sample", tiny_dcgan, "-n", "500", "--truncation", "0.5", "-o", cut)
    assert r.code == 0, r.err
    with np.load(plain) as a, np.load(cut) as b:
        z, zt = a["z"], b["z"]
        assert np.abs(z).max() > 2  # 50,000 standard normal draws reach past 2
        assert np.abs(zt).max() <= 0.5
        assert zt.std() > 0.2  # spread over the interval, not clamped onto its ends
        assert np.mean(np.abs(zt) > 0.499) < 0.01
        assert not np.array_equal(a["images"], b["images"])
    r = cli("sample", tiny_dcgan, "-n", "2", "--truncation", "0.5", "--seed", "3", "-o", tmp_path / "again.npz")
    with np.load(cut) as b, np.load(tmp_path / "again.npz") as c:
        assert not np.array_equal(b["z"][:2], c["z"])  # the seed still chooses the latents


def test_temperature_scales_the_latents_and_refuses_what_is_not_positive(tiny_dcgan, cli, tmp_path):
    plain, hot = tmp_path / "plain.npz", tmp_path / "hot.npz"
    assert cli("sample", tiny_dcgan, "-n", "50", "--seed", "4", "-o", plain).code == 0
    r = cli("sample", tiny_dcgan, "-n", "50", "--seed", "4", "--temperature", "0.5", "-o", hot)
    assert r.code == 0, r.err
    with np.load(plain) as a, np.load(hot) as b:
        assert np.allclose(b["z"], 0.5 * a["z"]) and not np.array_equal(a["images"], b["images"])
    for bad in ("0", "-1", "nan", "inf"):
        out = tmp_path / f"bad{bad}.npz"
        r = cli("sample", tiny_dcgan, "-n", "2", "--temperature", bad, "-o", out)
        assert r.code == 2 and "--temperature" in r.err and len(r.err.strip().splitlines()) == 1, r.err
        assert not out.exists()


def test_temperature_with_a_prior_that_does_not_take_one_is_a_usage_error(tiny_dcgan, monkeypatch):
    """A model's own prior written before --temperature existed (draw without it) still samples; asked for a
    temperature, it is refused by name instead of failing inside the model."""
    import gantools.generate as generate
    from gantools.checkpoint import load_checkpoint
    from gantools.errors import UsageError

    ck = load_checkpoint(tiny_dcgan)
    objective, prior = generate.load_objective(ck)

    class OldPrior:
        def draw(self, n, generator, labels=None, truncation=None):
            return prior.draw(n, generator, labels, truncation)

    monkeypatch.setattr(generate, "load_objective", lambda ck: (objective, OldPrior()))
    images = next(generate.generate_batches(ck, 4, seed=1, device="cpu"))[0]
    assert images.shape[0] == 4
    with pytest.raises(UsageError, match="--temperature 2.0: dcgan's prior does not take a temperature"):
        next(generate.generate_batches(ck, 4, seed=1, device="cpu", temperature=2.0))


def test_impute_header_and_no_header(cli, tmp_path):
    numbers = "1.0,2.0,3.0\n2.0,,6.0\n3.0,6.0,\n4.0,8.0,12.0\n" * 10
    p = tmp_path / "t.csv"
    p.write_text(numbers)
    # detected: the first row is numbers like the rest, so it is data
    r = cli("impute", p, "-o", "-", "--iterations", "20")
    assert r.code == 0, r.err
    rows = list(csv.reader(io.StringIO(r.text)))
    assert len(rows) == 40 and rows[0] == ["1.0", "2.0", "3.0"]
    # --header: the first row is kept as the header, 39 data rows follow
    r = cli("impute", p, "-o", "-", "--iterations", "20", "--header")
    assert r.code == 0, r.err
    rows = list(csv.reader(io.StringIO(r.text)))
    assert len(rows) == 40 and rows[0] == ["1.0", "2.0", "3.0"]
    assert all(c != "" for row in rows[1:] for c in row)
    # a header of words is detected; with --no-header it is a data row whose texts sit in numeric
    # columns: refused in one line that names the row, nothing on stdout
    p.write_text("a,b,c\n" + numbers)
    r = cli("impute", p, "-o", "-", "--iterations", "20")
    assert r.code == 0, r.err
    assert list(csv.reader(io.StringIO(r.text)))[0] == ["a", "b", "c"]
    r = cli("impute", p, "-o", "-", "--iterations", "20", "--no-header")
    assert r.code == 1 and r.out == b""
    errors = [line for line in r.err.splitlines() if "error" in line]
    assert len(errors) == 1 and "row 1 holds 'a'" in errors[0], r.err
