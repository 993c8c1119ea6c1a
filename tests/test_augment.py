"""--augment: DiffAugment and ADA in front of D (gantools.augment), in the trainer and in resumes."""

from __future__ import annotations

import pytest
import torch

from conftest import TINY_DCGAN
from gantools.augment import AdaptiveAugment, AugmentedCritic, DiffAugment, translate
from gantools.checkpoint import load_checkpoint
from gantools.errors import UsageError
from gantools.train import AUGMENT_BELOW, Trainer, TrainConfig, default_augment, resume, train


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> str:
    """40 toy shapes (32 px RGB) as an .npz: a quick data set to train on."""
    import numpy as np

    from gantools.data import toy

    path = tmp_path_factory.mktemp("data") / "shapes.npz"
    np.savez(path, images=toy.shapes(n=40, seed=1)[0])
    return str(path)


def _cfg(tmp_path, data: str, name: str, **extra) -> TrainConfig:
    return TrainConfig(**{"model": "dcgan", "data": data, "batch_size": 8, "seed": 5, "device": "cpu",
                          "sample_every": 0, "log_every": 1, "ckpt_every": 100, "out": str(tmp_path / name),
                          "hparams": dict(TINY_DCGAN), **extra})


def _pinned_ada(p: float) -> AdaptiveAugment:
    ada = AdaptiveAugment("cpu", seed=1)
    ada.p.fill_(p)
    return ada


@pytest.mark.parametrize("augment", [DiffAugment("cpu", seed=1), _pinned_ada(1.0)], ids=["diffaug", "ada"])
def test_the_augmentation_is_differentiable(augment):
    x = torch.rand(4, 3, 16, 16, dtype=torch.float64) * 2 - 1
    x.requires_grad_(True)
    y = augment(x)
    assert not torch.equal(y, x)
    (grad,) = torch.autograd.grad((y * torch.randn_like(y)).sum(), x)
    assert grad.abs().sum() > 0
    # the drawn operations, replayed, are a function of x whose gradient autograd computes (gradcheck)
    state = augment.gen.get_state()

    def replay(t):
        augment.gen.set_state(state)
        return augment(t)

    small = (torch.rand(2, 3, 8, 8, dtype=torch.float64) * 2 - 1).requires_grad_(True)
    assert torch.autograd.gradcheck(replay, (small,), eps=1e-6, atol=1e-5, fast_mode=True)


@pytest.mark.parametrize("make", [lambda: DiffAugment("cpu", seed=3), lambda: _pinned_ada(0.5)], ids=["diffaug", "ada"])
def test_processes_augment_their_rows_as_one_process_would(monkeypatch, make):
    """Rank r of N takes rows r, r + N, ... of the batch (gantools.distributed): its augmentation is
    what one process would apply to those rows."""
    from gantools import distributed

    x = torch.randn(6, 3, 16, 16)
    whole = make()(x)
    for rank in (0, 1):
        monkeypatch.setattr(distributed, "current", lambda: distributed.Group(rank=rank, world=2))
        assert torch.equal(make()(x[rank::2]), whole[rank::2])


def test_translation_moves_whole_pixels_with_zero_or_reflected_borders():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    down = translate(x, torch.tensor([1]), torch.tensor([0]), reflect=False)[0, 0]
    assert torch.equal(down[1:], x[0, 0, :3]) and torch.equal(down[0], torch.zeros(4))
    left = translate(x, torch.tensor([0]), torch.tensor([-1]), reflect=True)[0, 0]
    assert torch.equal(left[:, :3], x[0, 0, :, 1:]) and torch.equal(left[:, 3], x[0, 0, :, 2])


def test_ada_at_p_zero_passes_images_through_unchanged():
    x = torch.randn(5, 3, 8, 8)
    assert torch.equal(_pinned_ada(0.0)(x), x)
    assert not torch.equal(_pinned_ada(1.0)(x), x)


def test_ada_p_follows_the_sign_of_d_on_reals():
    ada = AdaptiveAugment("cpu", seed=0, target=0.6, kimg=1, interval=2)
    for step in (1, 2):  # D sure of its reals (r_t = 1 > 0.6): p rises after `interval` steps
        ada.observe(torch.ones(10))
        ada.update(step, images=10)
        assert ada.p.item() == (0 if step == 1 else pytest.approx(20 / 1000))
    for step in (3, 4):  # r_t = 0.2 < 0.6: p falls by the same amount, to 0 and no lower
        ada.observe(torch.tensor([1.0] * 6 + [-1.0] * 4))
        ada.update(step, images=10)
    assert ada.p.item() == 0
    ada.p.fill_(0.5)
    for step in (5, 6):
        ada.observe(-torch.ones(10))
        ada.update(step, images=10)
    assert ada.p.item() == pytest.approx(0.5 - 20 / 1000)


@pytest.mark.parametrize("method", ["diffaug", "ada"])
def test_d_sees_augmented_reals_and_fakes_alike(tmp_path, shapes, method):
    """Every image D is given in a step, real or fake, went through the augmentation: DiffAugment's
    cutout zeroes at least a quarter-side square of each; ADA at p = 1 changes each."""
    trainer = Trainer(_cfg(tmp_path, shapes, "run", steps=2, augment=method))
    assert isinstance(trainer.step_nets["D"], AugmentedCritic)
    if method == "ada":
        trainer.augment.p.fill_(1.0)
    seen, given = [], []
    trainer.nets["D"].register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
    trainer.augment.register_forward_pre_hook(lambda m, args: given.append(args[0].detach().clone()))
    trainer.train_step(trainer.batch_source())
    assert len(seen) == len(given) == 2  # simultaneous updates: D on the reals, then on the fakes
    side = 8  # toy:shapes are 32 px; a cutout square is 16 px, at least 8 of its rows and columns inside
    for before, after in zip(given, seen):
        assert before.shape == after.shape
        if method == "diffaug":
            zeros = (after == 0).all(dim=1).flatten(1).sum(1)
            assert (zeros >= side * side).all()
        assert all(not torch.equal(a, b) for a, b in zip(after, before))


def test_small_image_sets_train_with_diffaug_by_default(tmp_path, shapes):
    assert default_augment(AUGMENT_BELOW) == "diffaug" and default_augment(AUGMENT_BELOW + 1) == "none"
    trainer = Trainer(_cfg(tmp_path, shapes, "run", steps=1))  # 40 images
    assert trainer.cfg.augment == "diffaug" and isinstance(trainer.augment, DiffAugment)
    assert Trainer(_cfg(tmp_path, shapes, "info", model="infogan", steps=1)).cfg.augment == "none"


@pytest.mark.parametrize("model, hparams", [("bagan", {"ngf": 8, "ndf": 8, "hidden": 32, "ae_steps": 1}),
                                            ("bagan-gp", {"ngf": 8, "ndf": 8, "ae_steps": 1})])
def test_a_models_registered_augment_overrides_the_size_rule_and_the_option_overrides_both(
        tmp_path, shapes_npz, model, hparams):
    """bagan and bagan-gp register augment none (augmented, their classes' images grow alike: bench/RESULTS.md,
    balance)."""
    small = {"model": model, "hparams": hparams, "steps": 1}
    assert Trainer(_cfg(tmp_path, str(shapes_npz), "plain", **small)).cfg.augment == "none"  # 64 images
    given = Trainer(_cfg(tmp_path, str(shapes_npz), "diffaug", augment="diffaug", **small))
    assert given.cfg.augment == "diffaug" and isinstance(given.augment, DiffAugment)


def test_augment_none_adds_nothing_and_ada_at_p_zero_trains_the_same_weights(tmp_path, shapes):
    """Off is the trainer without augmentation (no wrapper), and the hook itself changes nothing: ADA
    kept at p = 0 (target 1: r_t never exceeds it) trains bit-identical weights."""
    off = Trainer(_cfg(tmp_path, shapes, "probe", steps=1, augment="none"))
    assert off.augment is None and not isinstance(off.step_nets["D"], AugmentedCritic)
    plain = load_checkpoint(train(_cfg(tmp_path, shapes, "none", steps=4, augment="none")))
    held = load_checkpoint(train(_cfg(tmp_path, shapes, "ada0", steps=4, augment="ada", ada_target=1.0)))
    assert held["augment"]["p"].item() == 0
    for part in ("G", "D"):
        for k, v in plain["state"][part].items():
            assert torch.equal(v, held["state"][part][k]), (part, k)


def test_ada_resumes_exactly(tmp_path, shapes):
    extra = dict(augment="ada", ada_kimg=0.05)  # p moves 0.64 per adjustment of 4 steps of 8 images
    straight = load_checkpoint(train(_cfg(tmp_path, shapes, "straight", steps=8, **extra)))
    train(_cfg(tmp_path, shapes, "resumed", steps=4, **extra))
    resumed = load_checkpoint(resume(str(tmp_path / "resumed"), {"steps": 8}))
    assert 0 < straight["augment"]["p"].item() <= 1
    for key, value in straight["augment"].items():
        assert torch.equal(value, resumed["augment"][key]), key
    for part in ("G", "D", "opt_G", "opt_D"):
        for k, v in straight["state"][part].items():
            if isinstance(v, torch.Tensor):
                assert torch.equal(v, resumed["state"][part][k]), (part, k)
    assert [m["ada_p"] for m in straight["metrics"]] == [m["ada_p"] for m in resumed["metrics"]]


@pytest.mark.parametrize("model, data, why", [("gan", "toy:ring", "takes vectors"),
                                               ("infogan", "toy:shapes", "scores images through parts of D")])
def test_augment_is_refused_where_it_cannot_reach_every_image_d_scores(tmp_path, model, data, why):
    with pytest.raises(UsageError, match=f"--augment diffaug: augments D's input images; model {model} {why}"):
        train(TrainConfig(model=model, data=data, augment="diffaug", out=str(tmp_path / "r")))
    assert not (tmp_path / "r").exists()


def test_old_checkpoints_resume_without_augmentation(tmp_path, shapes):
    from gantools.checkpoint import save_checkpoint

    path = train(_cfg(tmp_path, shapes, "old", steps=2, augment="none"))
    ck = load_checkpoint(path)
    del ck["config"]["augment"]
    save_checkpoint(ck, path, overwrite=True)
    assert load_checkpoint(resume(str(tmp_path / "old"), {"steps": 3}))["config"]["augment"] == "none"
