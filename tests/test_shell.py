"""Shell integration: completion through Click's protocol in real bash, zsh and fish, the generated
completion scripts and man pages, start-up without torch, -q/-v on every command, colour off
without a terminal, and the README's pipeline examples."""

from __future__ import annotations

import importlib
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, run_cli
from gantools.cli import names, shelldocs

GROUP, ROOT_CTX, COMMANDS = shelldocs.command_tree()
COMMAND_NAMES = [cmd.name for cmd, _ in COMMANDS]
TRAIN_CLI = importlib.import_module("gantools.cli.train")


def _registered():
    """(name, click command) of every registered, visible command."""
    return [(cmd.name, cmd) for cmd, _ in COMMANDS]


def _gantools_bin(tmp_path: Path) -> dict:
    """An environment whose `gantools` on PATH runs this interpreter's gantools."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    shim = bindir / "gantools"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m gantools "$@"\n')
    shim.chmod(0o755)
    env = dict(os.environ, PATH=f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    env.pop("NO_COLOR", None)
    return env


# ----------------------------------------------------------------------------- generated files


def test_committed_completions_and_man_pages_match_the_cli():
    stale = shelldocs.differences(ROOT)
    assert not stale, f"out of date: {stale}; regenerate with `python -m gantools.cli.shelldocs`"


@pytest.mark.parametrize("shell", sorted(shelldocs.SHELL_FILES))
def test_completion_scripts_are_what_the_tool_prints(shell, tmp_path):
    r = subprocess.run(["gantools"], env=dict(_gantools_bin(tmp_path), _GANTOOLS_COMPLETE=f"source_{shell}"),
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout == (ROOT / shelldocs.SHELL_FILES[shell]).read_text(encoding="utf-8")
    assert "_GANTOOLS_COMPLETE=complete_" + shell in r.stdout  # it asks gantools on every TAB
    assert "--compile" not in r.stdout and "dcgan" not in r.stdout  # and holds no option or value


def test_generator_check_mode_and_stale_pages(tmp_path):
    assert shelldocs.main(["--check", "--out", str(tmp_path)]) == 1  # nothing there yet
    assert shelldocs.main(["--out", str(tmp_path)]) == 0
    assert shelldocs.main(["--check", "--out", str(tmp_path)]) == 0
    (tmp_path / "man" / "gantools-gone.1").write_text(".TH X 1\n")  # a command that no longer exists
    (tmp_path / "completions" / "gantools.bash").write_text("# edited by hand\n")
    assert set(shelldocs.differences(tmp_path)) == {"man/gantools-gone.1", "completions/gantools.bash"}
    shelldocs.main(["--out", str(tmp_path)])
    assert not (tmp_path / "man" / "gantools-gone.1").exists()
    assert shelldocs.differences(tmp_path) == []


@pytest.mark.parametrize("name", COMMAND_NAMES)
def test_every_command_has_a_man_page_with_every_option(name):
    files = shelldocs.generate()
    page = files[f"man/gantools-{name}.1"]
    cmd, ctx = next((c, x) for c, x in COMMANDS if c.name == name)
    for p in cmd.get_params(ctx):
        if shelldocs.is_option(p):
            for o in p.opts + p.secondary_opts:
                assert shelldocs.roff_escape(o) in page, f"{o} missing from gantools-{name}.1"
        else:
            assert f"\\fI{shelldocs.argument_name(p)}\\fR" in page
    assert f"gantools\\-{shelldocs.roff_escape(name)}" in files["man/gantools.1"]


# ----------------------------------------------------------------------------- man pages

KNOWN_MACROS = {"TH", "SH", "SS", "PP", "TP", "RS", "RE", "nf", "fi", "B", "I", "IP", "br", '\\"'}


def _check_roff(text: str, where: str) -> None:
    """A pure-Python sanity check of generated man(7) source (runs where no groff is installed)."""
    lines = text.split("\n")
    assert lines[0].startswith('.\\"') and lines[1].startswith(".TH "), where
    assert text.endswith("\n") and not text.endswith("\n\n"), where
    fill = True
    for i, line in enumerate(lines[:-1], 1):
        at = f"{where}:{i}"
        assert line.isascii(), f"{at}: raw non-ASCII (use \\[uXXXX])"
        assert line.strip() == line or not fill, f"{at}: leading/trailing blanks in filled text"
        if line[:1] in (".", "'"):
            macro = line[1:].split(" ", 1)[0]
            assert macro in KNOWN_MACROS, f"{at}: unknown macro {line!r}"
            fill = {"nf": False, "fi": True}.get(macro, fill)
            continue
        assert line != "" or not fill, f"{at}: blank line in filled text"
        # Every backslash starts a known escape: font, minus, backslash, zero-width, Unicode.
        rest = re.sub(r"\\(f[BIR]|-|e|&|\[u[0-9A-F]{4}\])", "", line)
        assert "\\" not in rest, f"{at}: unknown escape in {line!r}"
        for font in re.findall(r"\\f([BI])", line):
            assert line.count(f"\\f{font}") <= line.count("\\fR"), f"{at}: font not reset"
    assert fill, f"{where}: .nf without .fi"
    sections = re.findall(r"^\.SH (.+)$", text, re.M)
    for need in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "EXAMPLES", "EXIT STATUS", "ENVIRONMENT",
                 "SEE ALSO"):
        assert need in sections, f"{where}: no {need} section"
    exits = text.split(".SH EXIT STATUS", 1)[1].split(".SH ", 1)[0]
    assert re.findall(r"\\fB(\d+)\\fR", exits) == ["0", "1", "2", "130"], where


def test_man_pages_are_sane_roff():
    files = shelldocs.generate()
    pages = {k: v for k, v in files.items() if k.startswith("man/")}
    assert set(pages) == {"man/gantools.1"} | {f"man/gantools-{n}.1" for n in COMMAND_NAMES}
    for rel, text in pages.items():
        _check_roff(text, rel)
    root = pages["man/gantools.1"]
    for var in ("GANTOOLS_HOME", "GANTOOLS_INCEPTION", "NO_COLOR", "GANTOOLS_MEMORY_BUDGET"):
        assert f"\\fB{var}\\fR" in root
    assert "config.toml" in root and "metrics.jsonl" in root and "\\[ti]" not in root
    assert "gantools sample \"$ckpt\" \\-n 10000 | gantools evaluate \\- \\-\\-real" in root  # a pipeline


def test_man_page_states_every_default_and_choice():
    page = shelldocs.generate()["man/gantools-sample.1"]
    assert "Number of samples.\nDefault: 64." in page
    assert "Default: \\-\\-ema." in page  # the --ema/--no-ema pair
    assert "Default: auto." in page
    train = shelldocs.generate()["man/gantools-train.1"]
    assert "Batch size.\nDefault: the model's." in train  # taken from the help's [default: ...]
    head = next(line for line in train.splitlines() if line.startswith("\\fB\\-\\-compile\\fR"))
    assert all(shelldocs.roff_escape(mode) in head for mode in TRAIN_CLI.COMPILE_MODES)  # the option's type


def test_roff_escape():
    assert shelldocs.roff_escape("a-b\\c") == "a\\-b\\ec"
    assert shelldocs.roff_escape(".x\n'y") == "\\&.x\n\\&'y"
    assert shelldocs.roff_escape("Fréchet ±") == "Fr\\[u00E9]chet \\[u00B1]"


@pytest.mark.skipif(not shutil.which("groff"), reason="groff not installed (apt-get install groff)")
def test_man_pages_pass_groff_lint(tmp_path):
    shelldocs.write(tmp_path)
    for page in sorted((tmp_path / "man").glob("*.1")):
        r = subprocess.run(["groff", "-ww", "-z", "-man", str(page)], capture_output=True, text=True)
        assert r.returncode == 0 and r.stderr == "", f"{page.name}: {r.stderr}"
        # What a reader sees: `man -l` where man is installed, else groff's terminal output.
        render = ["man", "-l", str(page)] if shutil.which("man") else ["groff", "-man", "-Tutf8", str(page)]
        r = subprocess.run(render, capture_output=True, text=True,
                           env=dict(os.environ, MANWIDTH="80", MANPAGER="cat", PAGER="cat", MAN_KEEP_FORMATTING="1"))
        shown = re.sub(r".\x08", "", r.stdout)  # overstrike bold/underline
        assert r.returncode == 0 and r.stderr == "", f"{page.name}: {r.stderr}"
        assert "NAME" in shown and "EXIT STATUS" in shown and "\\" not in shown, page.name
        assert max(len(line) for line in shown.splitlines()) <= 80, page.name


@pytest.mark.skipif(not shutil.which("mandoc"), reason="mandoc not installed (apt-get install mandoc)")
def test_man_pages_pass_mandoc_lint(tmp_path):
    shelldocs.write(tmp_path)
    pages = [str(p) for p in sorted((tmp_path / "man").glob("*.1"))]
    r = subprocess.run(["mandoc", "-T", "lint", "-W", "warning", *pages], capture_output=True, text=True)
    assert r.stdout + r.stderr == ""


# ----------------------------------------------------------------------------- what TAB offers


def test_completion_names_match_the_registry():
    from gantools.registry import LOSSES, METRICS, MODELS

    real = {
        "models": {n: s.description for n, s in MODELS if s.trainer == "gan"},
        "losses": {n: s.description for n, s in LOSSES},
        "metrics": {n: s.description for n, s in METRICS},
    }
    for kind, entries in real.items():
        found = dict(names.registered(kind))
        assert sorted(found) == sorted(entries), kind
        for n, desc in found.items():
            assert desc == entries[n], f"{kind} {n}: description not a literal in its ModelSpec/LossSpec/MetricSpec"
    assert "gain" in {n for n, _ in MODELS} and "gain" not in dict(names.registered("models"))


def test_toy_sets_are_the_data_modules():
    from gantools.data import toy

    assert names.TOY_SETS == tuple(f"toy:{k}" for k in toy.TOY_SETS)


@pytest.mark.parametrize("option,key,words", [
    ("--compile", "compile", TRAIN_CLI.COMPILE_MODES),
    ("--lr-schedule", "lr_schedule", TRAIN_CLI.LR_SCHEDULES),
    ("--updates", "updates", TRAIN_CLI.UPDATE_SCHEMES),
])
def test_fixed_words_are_the_option_types_and_train_accepts_each(option, key, words):
    """Completion offers the option type's choices (tests below), Click refuses anything else, and
    every choice passes the training config's own check (`train --dry-run` resolves the config)."""
    for word in words:
        r = run_cli("train", "gan", "--data", "toy:ring", option, word, "--dry-run")
        assert r.code == 0 and f'{key} = "{word}"' in r.text.splitlines(), r.err
    r = run_cli("train", "gan", "--data", "toy:ring", option, "nope", "--dry-run")
    assert r.code == 2 and r.out == b""
    assert r.err.count("\n") == 1 and r.err.startswith("gantools train: error: ")
    assert f"{option} nope: expected {', '.join(words[:-1])} or {words[-1]} " in r.err  # as gantools' own checks


def test_choice_lists_agree_with_the_api():
    from gantools.impute.params import VARIANTS

    assert "max-autotune-no-cudagraphs" in TRAIN_CLI.COMPILE_MODES
    assert set(importlib.import_module("gantools.cli.impute").VARIANT_NAMES) == set(VARIANTS)
    r = run_cli("impute", "x.csv", "--variant", "nope")
    assert r.code == 2 and r.err.count("\n") == 1 and "--variant nope: expected gantools or paper" in r.err


@pytest.fixture
def comp_dir(tmp_path):
    d = tmp_path / "work"
    d.mkdir()
    for f in ("a.pt", "b.txt", "conf.toml", "stats.npz", ".hidden.pt"):
        (d / f).write_text("x")
    (d / "runs" / "r1").mkdir(parents=True)
    (d / "runs" / "r1" / "last.pt").write_text("x")
    return d


MODELS = sorted(n for n, _ in names.registered("models"))
LOSSES = sorted(n for n, _ in names.registered("losses"))
METRICS = sorted(n for n, _ in names.registered("metrics"))
CKPTS = ["a.pt", "runs/"]
EVERYTHING = ["a.pt", "b.txt", "conf.toml", "runs/", "stats.npz"]
# A command line up to the cursor -> what TAB offers, as each shell shows it (before the shell's own
# matching). [] where gantools offers nothing and the shell completes paths itself: numbers, and a
# path whose only candidate is one folder.
CASES = {
    "gantools ": sorted(COMMAND_NAMES),
    "gantools tr": ["train"],
    "gantools --v": ["--version"],
    "gantools train ": MODELS,
    "gantools train dc": ["dcgan"],
    "gantools train dcgan --lo": ["--log-every", "--loss"],
    "gantools train dcgan --loss ": LOSSES,
    "gantools train dcgan --loss=w": ["wgan-gp"],
    "gantools train --data toy:s": ["toy:shapes"],
    "gantools train --data=toy:r": ["toy:ring"],
    "gantools train --data toy:": ["toy:grid", "toy:ring", "toy:shapes"],
    "gantools train --data ": sorted(["-", *names.TOY_SETS, *EVERYTHING]),
    "gantools train --compile ": sorted(TRAIN_CLI.COMPILE_MODES),
    "gantools train --compile max-autotune-": ["max-autotune-no-cudagraphs"],
    "gantools train --lr-schedule ": sorted(TRAIN_CLI.LR_SCHEDULES),
    "gantools train --updates s": ["simultaneous"],
    "gantools train --device ": sorted(names.DEVICES),
    "gantools train --config ": ["conf.toml", "runs/"],
    "gantools train --resume ": CKPTS,
    "gantools train dcgan --steps ": [],
    "gantools sample ": CKPTS,
    "gantools sample .": [".hidden.pt"],
    "gantools sample r": [],  # one folder: the shell completes it (with its slash, no space)
    "gantools sample runs/r1/": ["runs/r1/last.pt"],
    "gantools sample -n 5 ": CKPTS,  # -n's value is not the CKPT
    "gantools sample a.pt --device c": ["cpu", "cuda"],
    "gantools interpolate ": CKPTS,
    "gantools info ": CKPTS,
    "gantools evaluate - --metrics ": METRICS,
    "gantools evaluate - --metrics fid,k": ["fid,kid"],
    "gantools evaluate - --real toy:g": ["toy:grid"],
    "gantools impute x.csv --model ": CKPTS,
    "gantools impute x.csv --variant ": ["gantools", "paper"],
}


def _bash_words(line: str) -> list[str]:
    """COMP_WORDS as bash makes them for `line`: words split at blanks, and at '=' and ':' (in the
    default COMP_WORDBREAKS), which become words of their own; a blank at the end starts a new word."""
    words = [w for token in line.split() for w in re.findall(r"[=:]|[^=:]+", token)]
    return words + [""] if line.endswith(" ") else words


def _bash_complete(lines: list[str], cwd: Path, env: dict) -> list[list[str]]:
    """COMPREPLY of the function completions/gantools.bash registers for gantools, for each line."""
    script = (f"source {shlex.quote(str(ROOT / 'completions' / 'gantools.bash'))}\n"
              "f=$(complete -p gantools); f=${f##*-F }; f=${f%% *}\n")
    for line in lines:
        words = _bash_words(line)
        script += (f"COMP_WORDS=({' '.join(shlex.quote(w) for w in words)}); COMP_CWORD={len(words) - 1}\n"
                   f"COMPREPLY=(); $f gantools {shlex.quote(words[-1])} {shlex.quote(words[-2])}\n"
                   "printf '%s\\n' \"${COMPREPLY[@]}\"; echo @@\n")
    r = subprocess.run(["bash", "--norc", "--noprofile", "-c", script], cwd=cwd, env=env, capture_output=True,
                       text=True)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    return [sorted(x for x in part.split("\n") if x) for part in r.stdout.split("@@\n")[:-1]]


def _bash_shows(line: str, offered: list[str]) -> list[str]:
    """What bash puts in place of the word being completed: only the text after its last '=' or ':'."""
    word = _bash_words(line)[-1]
    typed = "" if word in ("=", ":") else word
    cut = re.sub(r"^--?[^=]*=", "", line.split(" ")[-1])  # the value being typed
    return sorted(o[len(cut) - len(typed):] for o in offered)


def test_bash_completion(comp_dir, tmp_path):
    got = _bash_complete(list(CASES), comp_dir, _gantools_bin(tmp_path))
    for (line, want), have in zip(CASES.items(), got):
        assert have == _bash_shows(line, want), line


def test_bash_offers_every_option_of_every_command(comp_dir, tmp_path):
    got = _bash_complete([f"gantools {name} -" for name in COMMAND_NAMES], comp_dir, _gantools_bin(tmp_path))
    for (cmd, ctx), have in zip(COMMANDS, got):
        options = [p for p in cmd.get_params(ctx) if shelldocs.is_option(p) and not p.hidden]
        assert set(have) == {o for p in options for o in p.opts + p.secondary_opts}, cmd.name


def _whole_word(line: str, offered: list[str]) -> list[str]:
    """zsh and fish replace the whole word, so `--opt=` stays in front of each value."""
    word = line.split(" ")[-1]
    head = word[: word.index("=") + 1] if word.startswith("-") and "=" in word else ""
    return sorted(head + o for o in offered)


@pytest.mark.skipif(not shutil.which("fish"), reason="fish not installed (apt-get install fish)")
def test_fish_completion(comp_dir, tmp_path):
    env = dict(_gantools_bin(tmp_path), COLUMNS="80")
    script = ROOT / "completions" / "gantools.fish"
    for line, want in CASES.items():
        r = subprocess.run(["fish", "--no-config", "-c", f"source {script}; complete -C {shlex.quote(line)}"],
                           cwd=comp_dir, env=env, capture_output=True, text=True)
        assert r.returncode == 0 and r.stderr == "", r.stderr
        have = sorted(x.split("\t")[0] for x in r.stdout.splitlines())
        if want:
            assert have == _whole_word(line, want), line
        else:  # gantools offers nothing: fish lists files (or nothing after a lone folder's prefix)
            assert not set(have) & {*MODELS, *LOSSES, *names.TOY_SETS, "train"}, line


def _zsh_complete(lines: list[str], cwd: Path, env: dict) -> list[list[str] | None]:
    """The values the zsh function hands to `_arguments` for each line (None: it asked for `_files`).
    zsh's completion system is stubbed: only a widget could run it."""
    script = (f"compdef() {{ }}; source {shlex.quote(str(ROOT / 'completions' / '_gantools'))}\n"
              "_arguments() { print -r -- \"A:$1\" }; _files() { print -r -- F: }\n")
    for line in lines:
        words = line.split(" ")  # zsh's words: a blank at the end starts an empty one
        script += f"words=({' '.join(shlex.quote(w) for w in words)}); CURRENT={len(words)}; _gantools_completion; print @@\n"
    r = subprocess.run(["zsh", "-f", "-c", script], cwd=cwd, env=env, capture_output=True, text=True)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    out = []
    for part in r.stdout.split("@@\n")[:-1]:
        if part.startswith("F:"):
            out.append(None)
            continue
        assert part.startswith("A:*: :((") and part.rstrip().endswith("))"), part
        items = re.findall(r'"((?:[^"\\]|\\.)*)"(?::"(?:[^"\\]|\\.)*")?', part[len("A:*: :(("):])
        out.append(sorted(v.replace("\\\\:", ":") for v in items))
    return out


@pytest.mark.skipif(not shutil.which("zsh"), reason="zsh not installed (apt-get install zsh)")
def test_zsh_completion(comp_dir, tmp_path):
    got = _zsh_complete(list(CASES), comp_dir, _gantools_bin(tmp_path))
    for (line, want), have in zip(CASES.items(), got):
        assert have == (_whole_word(line, want) if want else None), line


@pytest.mark.skipif(not shutil.which("zsh"), reason="zsh not installed (apt-get install zsh)")
def test_zsh_script_loads_with_compinit(tmp_path):
    script = ROOT / "completions" / "_gantools"
    r = subprocess.run(["zsh", "-n", str(script)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert script.read_text().startswith("#compdef gantools\n")  # compinit finds it on $fpath
    code = (f"autoload -U compinit; compinit -u -d {tmp_path}/zcd; source {script}; "
            "[[ $_comps[gantools] == _gantools_completion ]] && print ok")
    r = subprocess.run(["zsh", "-f", "-c", code], capture_output=True, text=True)
    assert r.stdout.strip() == "ok", r.stderr


# ----------------------------------------------------------------------------- start-up


def test_importing_the_cli_imports_no_torch():
    code = ("import sys, gantools.cli; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "[]"


COMPLETE_MODELS = {"_GANTOOLS_COMPLETE": "complete_bash", "COMP_WORDS": "gantools\ntrain\n", "COMP_CWORD": "2"}
COMPLETE_METRICS = {"_GANTOOLS_COMPLETE": "complete_fish", "_TYPER_COMPLETE_FISH_ACTION": "get-args",
                    "_TYPER_COMPLETE_ARGS": "gantools evaluate x --metrics fid,"}


@pytest.mark.parametrize("argv,env", [
    (["--help"], {}),
    (["train", "--help"], {}),
    (["evaluate", "--help"], {}),
    ([], COMPLETE_MODELS),
    ([], COMPLETE_METRICS),
], ids=["help", "train-help", "evaluate-help", "complete-models", "complete-metrics"])
def test_start_up_imports_no_torch(argv, env):
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "gantools", *argv],
                       env=dict(os.environ, **env), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip()
    imported = {line.rsplit("|", 1)[-1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")}
    assert "gantools.cli" in imported  # -X importtime did report
    heavy = sorted(m for m in imported if m.split(".")[0] in ("torch", "torchvision", "numpy", "scipy"))
    assert heavy == []
    assert "typer.rich_utils" not in imported  # rich help formatting alone costs ~0.3 s
    if env:  # a TAB press converts no value (pydantic) and renders no help text (rich): bench/startup.py
        assert not {m for m in imported if m.split(".")[0] in ("pydantic", "rich")}


def test_version():
    from gantools import __version__

    r = run_cli("--version")
    assert r.code == 0 and r.text == f"gantools {__version__}\n"


def test_bare_gantools_shows_the_help_on_stderr_and_exits_2():
    r = run_cli()
    assert r.code == 2 and r.out == b""
    assert r.err.startswith("Usage: gantools") and "error:" not in r.err
    assert all(name in r.err for name in COMMAND_NAMES)


# ----------------------------------------------------------------------------- every command


@pytest.mark.parametrize("name,cmd", _registered(), ids=[n for n, _ in _registered()])
def test_every_command_takes_quiet_and_verbose(name, cmd):
    opts = {o for p in cmd.params for o in getattr(p, "opts", [])}
    assert {"-q", "--quiet", "-v", "--verbose", "-h", "--help"} <= opts | {"-h", "--help"}, name
    assert {"-q", "--quiet", "-v", "--verbose"} <= opts, f"{name}: add quiet: bool = QuietOpt, verbose: bool = VerboseOpt"


def test_every_command_body_applies_verbosity_and_errors():
    """Each registered function is wrapped by cli.common.handle_errors (which applies -q/-v)."""
    from gantools.cli import app, common

    wrapper_code = common.handle_errors(lambda: None).__code__
    infos = app.registered_commands
    assert {i.name or i.callback.__name__ for i in infos} >= set(COMMAND_NAMES)
    for info in infos:
        assert info.callback.__code__ is wrapper_code, f"{info.callback.__name__}: decorate with @handle_errors"


def test_quiet_and_verbose_reach_the_log():
    from gantools import log
    from gantools.cli.common import handle_errors

    seen = []

    @handle_errors
    def body(quiet: bool = False, verbose: bool = False):
        seen.append(log.verbosity())

    body(quiet=True)
    body(verbose=True)
    body()
    assert seen == [-1, 1, 0]


# ----------------------------------------------------------------------------- colour


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def fresh_console():
    from gantools import log

    log._state.pop("console", None)
    yield
    log._state.pop("console", None)


def test_colour_and_bars_only_on_a_terminal_without_no_color(monkeypatch, fresh_console):
    from gantools import log

    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setattr(sys, "stderr", _Tty())
    assert log.color_enabled()
    bar = log.ProgressReporter(10, "test")
    assert bar._bar is not None  # a live rich bar on a terminal
    bar.close()

    monkeypatch.setenv("NO_COLOR", "1")
    assert not log.color_enabled()
    log._state.pop("console", None)
    assert log.console().no_color
    plain = log.ProgressReporter(10, "test", plain_every=0.0)
    assert plain._bar is None
    plain.update(10, "done")
    assert "test 10/10 done" in sys.stderr.getvalue()

    monkeypatch.setenv("NO_COLOR", "")  # empty means unset (no-color.org)
    assert log.color_enabled()
    monkeypatch.delenv("NO_COLOR")
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # not a terminal
    assert not log.color_enabled()
    assert log.ProgressReporter(10, "test")._bar is None


def test_help_has_no_escape_sequences(tmp_path):
    env = _gantools_bin(tmp_path)
    for argv in (["--help"], ["train", "--help"]):
        r = subprocess.run(["gantools", *argv], env=env, capture_output=True, text=True)
        assert r.returncode == 0 and "\x1b[" not in r.stdout and "Usage: gantools" in r.stdout


# ----------------------------------------------------------------------------- README pipelines


def _readme_section(title: str) -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert m, f"README.md has no '## {title}' section"
    return m.group(1)


def _code_blocks(section: str) -> list[str]:
    return re.findall(r"^```(?:sh|bash)\n(.*?)^```", section, re.M | re.S)


def _write_holes_csv(path: Path) -> int:
    """A small numeric table with 15% of its cells empty; returns the number of empty cells."""
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 4))
    x[:, 1] = 2 * x[:, 0] + 0.1 * x[:, 1]
    holes = rng.random(x.shape) < 0.15
    rows = [",".join("" if h else f"{v:.4f}" for v, h in zip(r, hr)) for r, hr in zip(x, holes)]
    path.write_text("a,b,c,d\n" + "\n".join(rows) + "\n")
    return int(holes.sum())


@pytest.mark.slow
def test_readme_pipelines_run(tmp_path):
    """Every code block of README's Pipelines section runs, in order, in one bash with pipefail."""
    blocks = _code_blocks(_readme_section("Pipelines"))
    assert len(blocks) >= 3
    text = "\n".join(blocks)
    for needed in ("| gantools evaluate - ", "ckpt=$(gantools train ", "gantools impute - < "):
        assert needed in text, f"README Pipelines lacks an example with {needed!r}"
    work = tmp_path / "work"
    work.mkdir()
    missing = _write_holes_csv(work / "holes.csv")
    # One torch thread per process: the pipe runs two gantools at once, and on a busy 2-core machine
    # OpenMP's spinning threads made the same steps ~20x slower (a timing knob, not a behaviour one).
    env = dict(_gantools_bin(tmp_path), OMP_NUM_THREADS="1")
    script = "set -euo pipefail\n"
    for i, block in enumerate(blocks):
        script += f"echo '@@ block {i}'\n{block}\n"
    script += "echo '@@ end'\nprintf 'ckpt=%s\\n' \"${ckpt:-}\"\n"
    r = subprocess.run(["bash", "-c", script], cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"exit {r.returncode}\nstdout:\n{r.stdout[-3000:]}\nstderr:\n{r.stderr[-3000:]}"
    assert "Traceback" not in r.stderr
    outputs = dict(re.findall(r"^@@ block (\d+)\n(.*?)(?=^@@ )", r.stdout, re.M | re.S))
    assert len(outputs) == len(blocks)
    for i, block in enumerate(blocks):
        out = outputs[str(i)]
        if "| gantools evaluate -" in block and "--json" not in block:
            assert re.search(r"^FID\s+\d+\.\d+", out, re.M), out
    ckpt = re.search(r"^ckpt=(.*)$", r.stdout, re.M).group(1)
    assert ckpt.endswith(".pt") and (work / ckpt).is_file()
    filled = (work / "filled.csv").read_text().splitlines()
    original = (work / "holes.csv").read_text().splitlines()
    assert filled[0] == original[0] and len(filled) == len(original)
    assert missing > 0 and all("" not in row.split(",") for row in filled[1:])
    for a, b in zip(original[1:], filled[1:]):  # only the missing cells changed
        for va, vb in zip(a.split(","), b.split(",")):
            assert va == "" or float(va) == pytest.approx(float(vb), abs=1e-3)
