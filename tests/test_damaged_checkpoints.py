"""A checkpoint that loads but cannot make a generator (an unknown model, no generator weights, weights
of other shapes) is a file problem: exit 1, one line naming the file."""

from __future__ import annotations

import pytest

COMMANDS = {
    "sample": lambda ck, tmp: ["sample", ck, "-n", "2", "--device", "cpu", "-o", tmp / "s.png"],
    "interpolate": lambda ck, tmp: ["interpolate", ck, "--rows", "1", "-k", "2", "--device", "cpu", "-o", tmp / "i.png"],
    "evaluate": lambda ck, tmp: ["evaluate", ck, "--real", "toy:shapes", "-n", "8", "--device", "cpu"],
}


def _damaged(tiny_dcgan, path, how):
    import torch

    ck = torch.load(tiny_dcgan, weights_only=True)
    if how == "model":
        ck["model"] = "nosuchmodel"
    elif how == "state":
        ck["state"] = {k: v for k, v in ck["state"].items() if not k.startswith("G")}
    else:  # weights of another width
        ck["hparams"] = dict(ck["hparams"], ngf=ck["hparams"]["ngf"] * 2)
    torch.save(ck, path)
    return path


@pytest.mark.parametrize("how, words", [
    ("model", "unknown model 'nosuchmodel'"),
    ("state", "checkpoint has no generator weights (state 'G')"),
    ("shape", "checkpoint weights do not fit model 'dcgan': size mismatch"),
])
@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_damaged_checkpoint_is_named_and_exits_1(cli, tiny_dcgan, tmp_path, command, how, words):
    bad = _damaged(tiny_dcgan, tmp_path / "bad.pt", how)
    r = cli(*COMMANDS[command](bad, tmp_path))
    assert r.code == 1, r.err
    assert r.err.strip().splitlines() == [r.err.strip()] and "Traceback" not in r.err
    assert r.err.startswith(f"gantools: error: {bad}: {words}"), r.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.pt"]


def test_balance_names_a_model_it_does_not_know(cli, tiny_dcgan, tmp_path):
    bad = _damaged(tiny_dcgan, tmp_path / "bad.pt", "model")
    r = cli("balance", "toy:shapes", "-o", tmp_path / "out.npz", "--model", bad)
    assert r.code == 1 and r.err.startswith(f"gantools: error: --model {bad}: unknown model 'nosuchmodel'"), r.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.pt"]
