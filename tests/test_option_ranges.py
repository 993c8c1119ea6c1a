"""Every numeric option of every command has a range in gantools/options.py: a value outside it is
refused with exit 2 and one stderr line naming the option, before the command reads anything."""

from __future__ import annotations

import math
from typing import List, Optional

import pytest
import typer
import typer.main

from conftest import TINY_DCGAN, run_cli
from gantools.cli import app
from gantools.cli.common import handle_errors, numeric_type
from gantools.errors import UsageError
from gantools.options import range_for

TRIALS = ["0", "-1", "nan", "inf", "-inf"]


def numeric_params(group) -> list:
    """(command, parameter) for every parameter of every subcommand that takes numbers."""
    return [(cmd, p) for _, cmd in sorted(group.commands.items()) for p in cmd.params if numeric_type(p) is not None]


def missing_ranges(group) -> list[str]:
    """The numeric parameters that the table has no range for."""
    return [f"{cmd.name} {p.opts[0]}" for cmd, p in numeric_params(group) if range_for(cmd.name, p.name) is None]


GANTOOLS = typer.main.get_command(app)
PARAMS = [(cmd.name, p.name) for cmd, p in numeric_params(GANTOOLS)]


def _param(command: str, name: str):
    return next(p for p in GANTOOLS.commands[command].params if p.name == name)


def test_the_walk_sees_every_numeric_option_and_nothing_else():
    found = set(PARAMS)
    assert {("train", "steps"), ("train", "lr_g"), ("train", "epochs"), ("sample", "n"), ("interpolate", "fps"),
            ("evaluate", "kid_subset_size"), ("impute", "hint_rate"), ("impute", "seed")} <= found
    assert not found & {("train", "ema"), ("train", "data"), ("train", "dry_run"), ("train", "betas"),
                        ("sample", "out"), ("impute", "evaluate")}
    assert {"train", "sample", "interpolate", "evaluate", "impute", "info", "models"} <= set(GANTOOLS.commands)


def test_every_numeric_option_has_a_range():
    assert missing_ranges(GANTOOLS) == []


def test_an_option_missing_from_the_table_fails_the_walk_and_the_command():
    extra = typer.Typer()

    @extra.command()
    @handle_errors
    def frob(count: int = typer.Option(1, "--count"), rate: Optional[float] = typer.Option(None, "--rate"),
             sizes: Optional[List[int]] = typer.Option(None, "--size"), seed: int = typer.Option(0),
             name: str = typer.Option("x"), flag: bool = typer.Option(False, "--flag")) -> None:
        """A command with options the table does not know."""

    @extra.command()
    def other() -> None:
        """A second command, so that typer builds a group."""

    group = typer.main.get_command(extra)
    assert missing_ranges(group) == ["frob --count", "frob --rate", "frob --size"]
    with pytest.raises(LookupError, match="--count"):
        group.main(["frob"], standalone_mode=False)


@pytest.mark.parametrize("text", TRIALS)
@pytest.mark.parametrize("command, name", PARAMS)
def test_each_value_is_refused_at_once_or_has_a_documented_meaning(tmp_path, command, name, text):
    cmd, param = GANTOOLS.commands[command], _param(command, name)
    flag, entry, kind = param.opts[0], range_for(command, name), numeric_type(param)
    try:
        value = kind(text)
    except ValueError:  # nan and inf are no integers: the parser refuses them
        value = None
    accepted = value is not None and entry.allows(value)
    if accepted:
        assert math.isfinite(value)
        if value in entry.special:  # a special value's meaning is in the option's help
            assert f"{text} ({entry.special[value]})" in param.help or f"{text} for {entry.special[value]}" in param.help
    # required arguments get paths that do not exist: a command that gets past its checks stops there
    inputs = [str(tmp_path / f"missing-{p.name}") for p in cmd.params if not p.opts[0].startswith("-") and p.required]
    r = run_cli(command, *inputs, flag, text)
    assert "Traceback" not in r.err
    if accepted:
        assert f"{flag} {text}: must be" not in r.err, r.err
        return
    assert r.code == 2 and r.out == b"", r.err
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"gantools {command}: error: "), r.err
    if value is None:
        assert "Invalid value for" in lines[0] and flag in lines[0], r.err
    else:
        assert lines[0].endswith(f"{flag} {text}: must be {entry.describe()}"), r.err


@pytest.mark.parametrize("args, words", [
    (["--steps", "0"], "--steps 0: must be an integer >= 1"),
    (["--batch-size", "0"], "--batch-size 0: must be an integer >= 1"),
    (["--n-critic", "0"], "--n-critic 0"),
    (["--z-dim", "0"], "--z-dim 0"),
    (["--epochs", "0"], "--epochs 0: must be a finite number > 0"),
    (["--lr-g", "nan"], "--lr-g nan: must be a finite number > 0"),
    (["--lr-g", "-1"], "--lr-g -1"),
    (["--lr-d", "0"], "--lr-d 0"),
    (["--ema-decay", "1"], "--ema-decay 1: must be a number in (0, 1)"),
    (["--r1", "-0.5"], "--r1 -0.5: must be a finite number > 0, or 0 (off)"),
    (["--seed", str(2**64)], f"--seed {2**64}"),
    (["--betas", "nan,0.9"], "--betas nan,0.9: must be 2 numbers in [0, 1)"),
    (["--betas", "0.5,1"], "--betas 0.5,1"),
])
def test_train_refuses_bad_numbers_before_any_work(cli, tmp_path, args, words):
    run = tmp_path / "run"
    r = cli("train", "dcgan", "--data", "toy:shapes", "--out", run, *args)
    assert r.code == 2 and r.out == b"", r.err
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"gantools train: error: {words}"), r.err
    assert not run.exists()


@pytest.mark.parametrize("line, words", [
    ("steps = 0", "steps = 0: must be an integer >= 1"),
    ("batch-size = 0", "batch_size = 0: must be an integer >= 1"),
    ("epochs = 0", "epochs = 0: must be a finite number > 0"),
    ("lr_g = nan", "lr_g = nan: must be a finite number > 0"),
    ("lr_d = -inf", "lr_d = -inf"),
    ("steps = 1.5", "steps = 1.5: must be an integer"),
    ("steps = true", "steps = True"),
    ('steps = "10"', "steps = '10'"),
    ("betas = [0.5, 1.0]", "betas = 0.5,1: must be 2 numbers in [0, 1)"),
    ("betas = [0.5]", "betas = 0.5: must be 2 numbers"),
    ("sample_every = -1", "sample_every = -1: must be an integer >= 1, or 0 (never)"),
])
def test_a_config_file_is_held_to_the_same_ranges(cli, tmp_path, line, words):
    cfg, run = tmp_path / "run.toml", tmp_path / "run"
    cfg.write_text(line + "\n")
    for extra in ([], ["--dry-run"]):
        r = cli("train", "dcgan", "--data", "toy:shapes", "--config", cfg, "--out", run, *extra)
        assert r.code == 2 and r.out == b"", r.err
        lines = r.err.strip().splitlines()
        assert len(lines) == 1 and f"{cfg}: {words}" in lines[0], r.err
        assert not run.exists()


def test_resume_overrides_are_checked_before_the_run_is_read(cli, tmp_path):
    r = cli("train", "--resume", tmp_path / "no-such-run", "--steps", "0")
    assert r.code == 2 and r.err.strip().splitlines() == ["gantools train: error: --steps 0: must be an integer >= 1"]


@pytest.mark.parametrize("field", ["steps", "batch_size", "n_critic", "z_dim", "epochs", "lr_g", "keep"])
def test_the_training_config_treats_only_none_as_unset(field):
    """_resolve, which every run goes through (CLI, --config, --resume, Python), refuses a 0."""
    from gantools.registry import MODELS
    from gantools.train import TrainConfig, _resolve

    with pytest.raises(UsageError, match=f"--{field.replace('_', '-')} 0: must be"):
        _resolve(TrainConfig(model="dcgan", data="toy:shapes", **{field: 0}), MODELS.get("dcgan"))
    spec = MODELS.get("dcgan")
    cfg = _resolve(TrainConfig(model="dcgan", data="toy:shapes"), spec)
    assert cfg.batch_size == spec.defaults["batch_size"] and cfg.z_dim == spec.defaults["z_dim"]


def test_dry_run_with_epochs_does_not_claim_the_default_steps(cli):
    r = cli("train", "dcgan", "--data", "toy:shapes", "--epochs", "2", "--dry-run")
    assert r.code == 0, r.err
    lines = r.text.splitlines()
    assert "epochs = 2.0" in lines and not any(ln.startswith("steps =") for ln in lines)
    from gantools.registry import MODELS

    r = cli("train", "dcgan", "--data", "toy:shapes", "--dry-run")
    assert f"steps = {MODELS.get('dcgan').defaults['steps']}" in r.text.splitlines()


def test_a_small_epoch_count_is_at_least_one_step(tmp_path):
    from gantools.train import TrainConfig, Trainer

    t = Trainer(TrainConfig(model="dcgan", data="toy:shapes", epochs=1e-6, batch_size=16, device="cpu",
                            out=str(tmp_path / "run"), sample_every=0, hparams=dict(TINY_DCGAN)))
    assert t.cfg.steps == 1
