"""Registry names for shell completion, read without importing torch.

Importing the registering modules (`gantools.models`, `gantools.losses`, `gantools.metrics`) pulls
in torch or numpy, which would make every TAB press take seconds. Instead this module reads the
same modules' source with `ast` and picks out the `ModelSpec(...)`, `LossSpec(...)` and
`MetricSpec(...)` calls: their `name` (keyword or first argument) and `description`. Models
are those `gantools train` trains (not `trainer="gain"`, which `gantools impute` fits). It scans
exactly the modules the registry's loaders import, so a new model file is completed without
any list to update; tests/test_shell.py checks the result against the real registry.

`_GANTOOLS_COMPLETE_NAMES=KIND gantools` (KIND: models, losses, metrics) prints one
`name<TAB>description` line per entry; the generated completion scripts call it.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent.parent  # gantools/

# kind -> (spec class, files or packages the registry's loader imports, relative to gantools/)
KINDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "models": ("ModelSpec", ("models",)),
    "losses": ("LossSpec", ("losses.py",)),
    "metrics": ("MetricSpec", ("metrics",)),
}
ENV_VAR = "_GANTOOLS_COMPLETE_NAMES"


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


def _const_str(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _specs_in(path: Path, cls: str) -> list[tuple[str, str]]:
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


def print_names(kind: str) -> int:
    """The completion hook: `name<TAB>description` lines on stdout; exit status 2 for an unknown kind."""
    if kind not in KINDS:
        return 2
    for name, desc in registered(kind):
        print(f"{name}\t{' '.join(desc.split())}")
    return 0


def hook_requested() -> str | None:
    """The kind asked for by the completion hook's environment variable, or None."""
    return os.environ.get(ENV_VAR) or None
