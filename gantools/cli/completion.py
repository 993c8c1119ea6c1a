"""Shell completion through Click's protocol, as typer implements it.

`_GANTOOLS_COMPLETE=source_bash gantools` (or source_zsh, source_fish) prints the completion script
(completions/ keeps them: `python -m gantools.cli.shelldocs`). On TAB the script runs
`_GANTOOLS_COMPLETE=complete_bash gantools` with the command line in its environment, and Click asks
the parameter under the cursor: an option's choices, or its `autocompletion=` function
(gantools.cli.names). `main()` imports this module only for such a request.

These are typer's bash, zsh and fish classes with two changes:
- nothing slow runs: typer would convert every parsed value (with pydantic, ~0.15 s of a TAB
  press) although completion only needs to know which parameter comes next, and would render help
  texts with rich (another ~0.15 s);
- the answer fits the word the shell replaces. Bash splits `--data=toy:ri` at '=' and ':'
  (COMP_WORDBREAKS) and replaces only `ri`, while Click needs the whole word; zsh and fish replace
  the whole word, `--loss=w` included, while Click answers with values alone.
"""

from __future__ import annotations

from typing import Any

import typer.core
from typer import _completion_classes as typer_shells

PROG = "gantools"
COMPLETE_VAR = "_GANTOOLS_COMPLETE"
_BREAKS = ("=", ":")  # bash word-break characters that occur inside gantools arguments


class _AsTyped:
    """Stands in for typer's value converter of every parameter: leaves the value as typed."""

    @staticmethod
    def coerce(value: Any, param: Any = None, ctx: Any = None) -> Any:
        return value


class _Shell:
    def source(self) -> str:
        return super().source().strip()  # zsh: `#compdef` must be the first line

    def get_completions(self, args: list[str], incomplete: str) -> list:
        # This process answers one completion request and exits, so two costly steps of typer are
        # switched off here: converting values (typer >= 0.26: pydantic adapters, ~0.15 s) and
        # rendering help texts with rich (~0.15 s; it also wraps long texts at $COLUMNS, which splits
        # a fish answer into two lines). gantools' help texts are plain (rich_markup_mode=None).
        param_class = getattr(typer.core, "_TyperParameter", None)
        if param_class is not None and hasattr(param_class, "get_runtime_param"):
            param_class.get_runtime_param = lambda param: _AsTyped
        if hasattr(typer_shells, "_sanitize_help_text"):
            typer_shells._sanitize_help_text = lambda text: " ".join(text.split())
        return super().get_completions(args, incomplete)


class _WholeWord(_Shell):
    """zsh, fish: the answer replaces the whole word, so `--opt=` stays in front of each value."""

    def get_completions(self, args: list[str], incomplete: str) -> list:
        items = super().get_completions(args, incomplete)
        if incomplete.startswith("-") and "=" in incomplete:
            head = incomplete[: incomplete.index("=") + 1]
            for item in items:
                item.value = head + item.value
        return items


class Bash(_Shell, typer_shells.BashComplete):
    def get_completion_args(self) -> tuple[list[str], str]:
        args, cur = super().get_completion_args()  # bash's words, split at COMP_WORDBREAKS
        tokens, words = args + [cur], []
        for i, w in enumerate(tokens):  # glue `--data = toy : ri` back into one word
            if words and (w in _BREAKS or tokens[i - 1] in _BREAKS):
                words[-1] += w
            else:
                words.append(w)
        incomplete = words.pop()
        value = incomplete.partition("=")[2] if incomplete.startswith("-") and "=" in incomplete else incomplete
        replaced = "" if cur in _BREAKS else cur  # what bash replaces: the text after its last break
        self.keep = len(value) - len(replaced)  # leading characters of each answer bash already has
        return words, incomplete

    def format_completion(self, item: Any) -> str:
        return str(item.value)[self.keep:]


class Zsh(_WholeWord, typer_shells.ZshComplete):
    pass


class Fish(_WholeWord, typer_shells.FishComplete):
    pass


SHELLS = {"bash": Bash, "zsh": Zsh, "fish": Fish}


def register() -> None:
    """Make Click answer `_GANTOOLS_COMPLETE=source_SHELL|complete_SHELL` with these classes."""
    for name, cls in SHELLS.items():
        typer_shells.add_completion_class(cls, name)


def script(shell: str, cli: Any) -> str:
    """The completion script for `shell` (what `_GANTOOLS_COMPLETE=source_SHELL gantools` prints)."""
    return SHELLS[shell](cli, {}, PROG, COMPLETE_VAR).source() + "\n"
