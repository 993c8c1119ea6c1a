"""What is specific to `acgan` and `projection` (the registry contract test covers training, resume and
the commands): ACGAN's class head and its losses, the projection discriminator's formula, conditional
batch norm, and that a short training on toy:shapes makes G follow the label."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gantools.checkpoint import load_checkpoint
from gantools.data import toy
from gantools.generate import load_generator, load_objective
from gantools.models.layers import ConditionalBatchNorm2d
from gantools.objective import build_objective
from gantools.registry import LOSSES, MODELS
from gantools.train import TrainConfig, train

DATA = {"kind": "image", "channels": 3, "resolution": 32, "num_classes": 4}


def _objective(name: str, **hp):
    spec = MODELS.get(name)
    hparams = {**spec.defaults, "ngf": 8, "ndf": 8, **hp}
    obj = build_objective(spec, hparams, DATA, LOSSES.get(spec.default_loss))
    return obj, obj.build_networks()


def _grads(module: nn.Module) -> list[torch.Tensor]:
    return [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in module.parameters()]


def _zero(nets: dict) -> None:
    for net in nets.values():
        net.zero_grad(set_to_none=True)


def test_acgan_class_head_learns_reals_in_d_step_and_fakes_in_g_step():
    torch.manual_seed(0)
    obj, nets = _objective("acgan", lambda_cls=0.7)
    G, D = nets["G"], nets["D"]
    real, labels = torch.randn(8, 3, 32, 32), torch.tensor([0, 1, 2, 3, 3, 2, 1, 0])
    inputs = obj.build_prior().draw(8, torch.Generator().manual_seed(1))
    fake = obj.fake(G, inputs)

    d = obj.d_step(nets, real, labels, fake.detach(), inputs, with_g=False)
    d.loss.backward()
    head_d = _grads(D.classifier)
    assert all(g.abs().sum() > 0 for g in head_d)
    _zero(nets)
    (0.7 * F.cross_entropy(D(real)[1], labels)).backward()  # the head's gradient is the real CE's alone
    for got, want in zip(head_d, _grads(D.classifier)):
        torch.testing.assert_close(got, want)
    logits = D(real)[1]
    assert torch.isclose(d.logs["cls_real"], F.cross_entropy(logits, labels))
    assert d.logs["acc_real"] == (logits.argmax(1) == labels).float().mean()
    assert "cls_fake" not in d.logs

    _zero(nets)
    loss_g, logs_g = obj.g_step(nets, fake, inputs)
    loss_g.backward(retain_graph=True)
    head_g = _grads(D.classifier)
    assert all(g.abs().sum() > 0 for g in head_g)
    _zero(nets)
    (0.7 * F.cross_entropy(D(fake.detach())[1], inputs["y"])).backward()  # G's loss holds the fakes' CE on their labels
    for got, want in zip(head_g, _grads(D.classifier)):
        torch.testing.assert_close(got, want)
    (g_of_ce,) = torch.autograd.grad(logs_g["cls_fake"], fake)  # and that CE reaches G through the head
    assert g_of_ce.abs().sum() > 0
    assert torch.isclose(logs_g["cls_fake"], F.cross_entropy(D(fake)[1], inputs["y"]))

    shared = obj.d_step(nets, real, labels, fake, inputs, with_g=True)  # simultaneous: G's loss from D's pass
    assert torch.isclose(shared.loss_g, loss_g) and "cls_fake" in shared.logs
    assert torch.equal(obj.critic(nets, real, labels), D(real)[0])  # GP and R1 see the adversarial head only


def test_acgan_logs_class_losses_and_accuracy(tmp_path):
    images, labels = toy.shapes(n=32, seed=3)
    np.savez(tmp_path / "shapes.npz", images=images, labels=labels)
    ckpt = train(TrainConfig(model="acgan", data=str(tmp_path / "shapes.npz"), steps=2, batch_size=8, device="cpu",
                             hparams={"ngf": 8, "ndf": 8}, log_every=1, out=str(tmp_path / "run")))
    rows = [json.loads(line) for line in (ckpt.parent.parent / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2
    for row in rows:
        assert 0 <= row["acc_real"] <= 1 and row["cls_real"] > 0 and row["cls_fake"] > 0


def test_projection_discriminator_is_linear_plus_inner_product():
    torch.manual_seed(0)
    _, nets = _objective("projection")
    D = nets["D"].eval()  # eval: spectral norm's power iteration does not move between the calls below
    x, y = torch.randn(6, 3, 32, 32), torch.tensor([0, 1, 2, 3, 1, 2])
    with torch.no_grad():
        phi = F.relu(D.blocks(x)).sum(dim=(2, 3))
        by_hand = phi @ D.linear.weight[0] + D.linear.bias[0] + (D.embed.weight[y] * phi).sum(1)
        assert torch.allclose(D(x, y), by_hand, atol=1e-5)
        assert not torch.allclose(D(x, y), D(x, (y + 1) % 4))  # the label changes the score
    assert D.linear.parametrizations.weight and D.embed.parametrizations.weight  # spectrally normalised
    assert MODELS.get("projection").default_loss == "hinge"


def test_projection_d_step_widens_the_true_labels_margin():
    """D's step scores reals under their labels and fakes under the drawn ones: with the same images as
    fakes under wrong labels and every hinge active, its loss is 2 - (score(x, y) - score(x, wrong)), so a
    gradient step raises the true label's score over the wrong one's (reals scored under the drawn labels,
    or the hinge's sides swapped, would not)."""
    torch.manual_seed(0)
    objective, nets = _objective("projection")
    D = nets["D"].eval()  # eval: spectral norm's power iteration stays put, only the step moves D
    x, y = 0.05 * torch.randn(16, 3, 32, 32), torch.arange(4).repeat(4)
    wrong = (y + 1) % 4

    def margin() -> torch.Tensor:
        return (D(x, y) - D(x, wrong)).mean()

    with torch.no_grad():
        assert torch.cat([D(x, y), D(x, wrong)]).abs().max() < 1  # every hinge active
        before = margin()
    d = objective.d_step(nets, x, y, x, {"y": wrong}, with_g=False)
    torch.testing.assert_close(d.loss, 2 - before)
    d.loss.backward()
    with torch.no_grad():
        for p in D.parameters():
            p -= 1e-3 * p.grad
        assert margin() > before


def test_conditional_batch_norm_applies_each_samples_class_gain_and_bias():
    torch.manual_seed(0)
    cbn = ConditionalBatchNorm2d(5, 3)
    assert torch.equal(cbn.gain.weight, torch.ones(3, 5)) and torch.equal(cbn.bias.weight, torch.zeros(3, 5))
    with torch.no_grad():
        cbn.gain.weight.normal_()
        cbn.bias.weight.normal_()
    x, y = torch.randn(4, 5, 2, 2), torch.tensor([2, 0, 1, 2])
    normed = F.batch_norm(x, None, None, training=True, eps=cbn.bn.eps)
    want = torch.stack([cbn.gain.weight[c][:, None, None] * normed[i] + cbn.bias.weight[c][:, None, None]
                        for i, c in enumerate(y.tolist())])
    torch.testing.assert_close(cbn(x, y), want)
    # rows of class weights (interpolate --class-path): a one-hot row is the class, a mixture mixes them
    torch.testing.assert_close(cbn(x, F.one_hot(y, 3).float()), want)
    half = torch.tensor([[0.5, 0.5, 0.0]]).expand(4, -1)
    mix = (cbn.gain.weight[0] + cbn.gain.weight[1])[None, :, None, None] / 2 * normed \
        + (cbn.bias.weight[0] + cbn.bias.weight[1])[None, :, None, None] / 2
    torch.testing.assert_close(cbn(x, half), mix)


def _trained(name: str, steps: int, tmp_path, hparams: dict, **options):
    ckpt = load_checkpoint(train(TrainConfig(model=name, data="toy:shapes", steps=steps, batch_size=32, device="cpu",
                                             seed=1, hparams=hparams, log_every=steps, out=str(tmp_path / "run"),
                                             **options)))
    G, (objective, prior) = load_generator(ckpt, ema=False), load_objective(ckpt)
    return ckpt, G, objective, prior


@pytest.mark.slow
def test_acgan_short_training_makes_samples_its_class_head_labels_as_asked(tmp_path):
    """After 300 narrow steps on toy:shapes (~20 s), D's class head, fitted on real images only, labels
    held-out real shapes and G's samples for class K as K well above chance (0.25). It shows the label
    reaching the image through G's conditioning; a classifier of its own would need a longer training."""
    ckpt, G, objective, prior = _trained("acgan", 300, tmp_path, {"ngf": 16, "ndf": 16})
    D = MODELS.get("acgan").build_discriminator(ckpt["hparams"], ckpt["data"])
    D.load_state_dict(ckpt["state"]["D"])  # in training mode: batch statistics, as it was trained
    images, labels = toy.shapes(n=256, seed=99)
    y = torch.arange(4).repeat_interleave(64)
    with torch.no_grad():
        real = D(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1)[1].argmax(1)
        fake = D(objective.fake(G, prior.draw(len(y), np.random.default_rng(0), y)))[1].argmax(1)
    assert (real.numpy() == labels).mean() > 0.5
    assert (fake == y).float().mean() > 0.5


def test_projection_generator_follows_the_label_after_training(tmp_path):
    """A few steps move each class's batch-norm gains apart (at initialisation they are all 1, and G
    ignores the label): then one z drawn for each class gives four different images."""
    ckpt, G, objective, prior = _trained("projection", 4, tmp_path, {"ngf": 8, "ndf": 8}, n_critic=1)
    gains = G.blocks[0].norm1.gain.weight
    assert all(not torch.equal(gains[0], gains[c]) for c in range(1, 4))
    inputs = prior.draw(1, np.random.default_rng(0))
    with torch.no_grad():
        images = objective.fake(G, {"z": inputs["z"].expand(4, -1), "y": torch.arange(4)})
    assert all((images[0] - images[c]).abs().max() > 1e-3 for c in range(1, 4))
