"""What TAB offers for option values and arguments, without importing torch.

The commands attach these functions to their parameters (`autocompletion=`); Click's completion
protocol (gantools.cli.completion) calls the one under the cursor. Fixed words are not here:
they are the options' choice types, so completion and validation share one list.

Registry names: importing the registering modules (`gantools.models`, `gantools.losses`,
`gantools.metrics`) pulls in torch or numpy, which would make every TAB press take seconds.
Instead `registered()` reads the same modules' source with `ast` and picks out the
`ModelSpec(...)`, `LossSpec(...)` and `MetricSpec(...)` calls: their `name` (keyword or first
argument) and `description`. Models are those `gantools train` trains (not `trainer="gain"`, which
`gantools impute` fits). It scans exactly the modules the registry's loaders import, so a new
model file is completed without any list to update; tests/test_shell.py checks the result
against the real registry.

Paths: a completer that lists paths offers folders (with a trailing /) and the files it wants;
when it has nothing but one folder to offer it offers nothing, and the shell completes the path
itself (the folder then gets its slash and no trailing space).
"""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent.parent  # gantools/

# kind -> (spec class, files or packages the registry's loader imports, relative to gantools/)
KINDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "models": ("ModelSpec", ("models",)),
    "losses": ("LossSpec", ("losses.py",)),
    "metrics": ("MetricSpec", ("metrics",)),
}
TOY_SETS = ("toy:ring", "toy:grid", "toy:shapes")  # the built-in data sets (gantools.data.toy)
DEVICES = ("auto", "cpu", "cuda", "mps")  # --device also takes cuda:N


def _files(rel: str) -> list[Path]:
    p = _PACKAGE / rel
    if p.is_file():
        return [p]
    # A package: every module pkgutil.iter_modules would import (not _private ones), subpackages included.
    out = []
    for f in sorted(p.iterdir()):
        if f.name.startswith("_"):
            continue
        if f.suffix == ".py":
            out.append(f)
        elif f.is_dir() and (f / "__init__.py").exists():
            out.extend(sorted(f.rglob("*.py")))
    return out


def _const_str(node) -> str | None:
    import ast

    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _specs_in(path: Path, cls: str) -> list[tuple[str, str]]:
    import ast  # here, not at the top: `gantools --help` does not need it

    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return []
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if (f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None) != cls:
            continue
        kw = {k.arg: k.value for k in node.keywords if k.arg}
        name = _const_str(kw.get("name", node.args[0] if node.args else None))
        desc = _const_str(kw.get("description", node.args[1] if len(node.args) > 1 else None))
        if cls == "ModelSpec" and _const_str(kw.get("trainer")) not in (None, "gan"):
            continue  # not trained by `gantools train`
        if name:
            found.append((name, desc or ""))
    return found


def registered(kind: str) -> list[tuple[str, str]]:
    """(name, description) of every `kind` entry ('models': those `gantools train` trains, 'losses',
    'metrics'), sorted by name."""
    cls, rels = KINDS[kind]
    entries: dict[str, str] = {}
    for rel in rels:
        for f in _files(rel):
            for name, desc in _specs_in(f, cls):
                entries.setdefault(name, desc)
    return sorted(entries.items())


# ----------------------------------------------------------------------------- completers


def _one_line(text: str) -> str:
    return " ".join(text.split())


def complete_models(incomplete: str) -> list[tuple[str, str]]:
    """Models `gantools train` trains, with their descriptions."""
    return [(n, _one_line(d)) for n, d in registered("models") if n.startswith(incomplete)]


def complete_losses(incomplete: str) -> list[tuple[str, str]]:
    """Loss names, with their descriptions."""
    return [(n, _one_line(d)) for n, d in registered("losses") if n.startswith(incomplete)]


def complete_metric_list(incomplete: str) -> list[tuple[str, str]]:
    """The last item of a comma-separated list of metric names (those not already in it)."""
    head, comma, last = incomplete.rpartition(",")
    chosen = set(head.split(",")) if comma else set()
    return [(head + comma + n, _one_line(d)) for n, d in registered("metrics")
            if n.startswith(last) and n not in chosen]


def complete_devices(incomplete: str) -> list[str]:
    return [d for d in DEVICES if d.startswith(incomplete)]


def _paths(incomplete: str, suffix: str | None = None) -> list[str]:
    """Folders (as NAME/) and files (ending in `suffix`, when given) whose path starts with `incomplete`;
    hidden ones only when asked for by a leading dot."""
    cut = incomplete.rfind("/") + 1
    folder, start = incomplete[:cut], incomplete[cut:]
    try:
        entries = sorted(os.scandir(os.path.expanduser(folder) or "."), key=lambda e: e.name)
    except OSError:
        return []
    out = []
    for e in entries:
        if not e.name.startswith(start) or (e.name.startswith(".") and not start.startswith(".")):
            continue
        if e.is_dir():
            out.append(f"{folder}{e.name}/")
        elif suffix is None or e.name.endswith(suffix):
            out.append(folder + e.name)
    return out


def _or_shell(found: list[str]) -> list[str]:
    """Nothing (the shell completes paths itself) when all there is to offer is one folder."""
    return [] if len(found) == 1 and found[0].endswith("/") else found


def complete_checkpoints(incomplete: str) -> list[str]:
    """Checkpoints (*.pt) and folders."""
    return _or_shell(_paths(incomplete, ".pt"))


def complete_toml(incomplete: str) -> list[str]:
    """Configuration files (*.toml) and folders."""
    return _or_shell(_paths(incomplete, ".toml"))


def complete_data(incomplete: str) -> list[str]:
    """A data source: the built-in toy sets, '-' (the image stream) and any path."""
    words = [w for w in ("-",) + TOY_SETS if w.startswith(incomplete)]
    return words + _paths(incomplete) if words else []  # no toy set matches: the shell completes the path
