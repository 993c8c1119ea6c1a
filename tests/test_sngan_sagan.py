"""What is specific to `sngan`, `sagan`/`sagan-cond` and dcgan's architecture options (the registry contract
test covers training, resume and the commands): where spectral norm is and that it normalises, the
self-attention block, the conditional variant's labels, the per-loss recipes, upsampling and minibatch std."""

from __future__ import annotations

import tomllib

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from gantools.checkpoint import load_checkpoint
from gantools.models.layers import ConditionalBatchNorm2d, MinibatchStd, SelfAttention
from gantools.registry import MODELS
from gantools.train import TrainConfig, train

DATA = {"kind": "image", "channels": 3, "resolution": 32, "num_classes": 4}


def _nets(name: str, **hp) -> tuple[nn.Module, nn.Module]:
    spec = MODELS.get(name)
    hparams = {**spec.defaults, "ngf": 16, "ndf": 16, "loss": spec.default_loss, **hp}
    torch.manual_seed(0)
    return spec.build_generator(hparams, DATA), spec.build_discriminator(hparams, DATA)


def _weighted(net: nn.Module) -> list[nn.Module]:
    """The layers with a weight matrix, but for conditional batch norm's per-class gains and biases (as in the paper)."""
    gains = {id(e) for m in net.modules() if isinstance(m, ConditionalBatchNorm2d) for e in m.children()}
    return [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding)) and id(m) not in gains]


@pytest.mark.parametrize("name, g_sn", [("sngan", False), ("sagan", True), ("sagan-cond", True)])
def test_spectral_norm_where_the_paper_puts_it_and_sigma_is_one(name, g_sn):
    """SNGAN: every weight of D (convolutions, the linear head, the projection's embedding), none of G;
    SAGAN: every weight of both. After 40 training-mode passes (one power iteration each) the largest
    singular value of each normalised weight, as a matrix (out, in x kh x kw), is 1."""
    G, D = _nets(name)
    for net, want in ((G, g_sn), (D, True)):
        layers = _weighted(net)
        assert layers and all(parametrize.is_parametrized(m, "weight") == want for m in layers)
    with torch.no_grad():  # weights of norm well above 1, which the normalisation must undo
        for m in _weighted(G) + _weighted(D):
            if parametrize.is_parametrized(m, "weight"):
                m.parametrizations.weight.original.mul_(3)
    x = torch.randn(2, 3, 32, 32)
    y = torch.randint(0, 4, (2,))
    for _ in range(40):
        D(x, y)
        G(torch.randn(2, 128), y)
    for net in (G, D) if g_sn else (D,):
        for m in _weighted(net):
            sigma = torch.linalg.matrix_norm(m.weight.detach().flatten(1), ord=2)
            assert abs(float(sigma) - 1) < 0.05, (name, m)  # power iteration converges slowly on a few layers
            assert torch.linalg.matrix_norm(m.parametrizations.weight.original.detach().flatten(1), ord=2) > 2


def test_self_attention_keeps_the_shape_starts_as_identity_and_then_mixes_distant_positions():
    torch.manual_seed(0)
    block = SelfAttention(16)
    x = torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        assert float(block.gamma) == 0 and torch.equal(block(x), x)
    with torch.no_grad():
        block.gamma.fill_(1.0)
        far = x.clone()
        far[:, :, 7, 7] += 1.0  # one corner changes ...
        out, out_far = block(x), block(far)
    assert out.shape == x.shape
    assert (out_far - out)[:, :, 0, 0].abs().max() > 1e-4  # ... and the opposite corner's output moves


@pytest.mark.parametrize("name", ["sagan", "sagan-cond"])
def test_sagan_attends_at_16x16_in_g_and_d(name):
    G, D = _nets(name)
    seen = []
    for net in (G, D):
        for m in net.modules():
            if isinstance(m, SelfAttention):
                m.register_forward_hook(lambda mod, inp, out: seen.append(tuple(inp[0].shape[2:])))
    y = torch.randint(0, 4, (2,))
    D(G(torch.randn(2, 128), y), y)
    assert seen == [(16, 16), (16, 16)]
    assert not any(isinstance(m, SelfAttention) for net in _nets("sngan") for m in net.modules())


def test_attention_at_a_resolution_the_networks_do_not_pass_is_refused():
    spec = MODELS.get("sagan")
    for build in (spec.build_generator, spec.build_discriminator):
        with pytest.raises(ValueError, match=r"attention = 7: self-attention goes at one of 8, 16"):
            build({**spec.defaults, "ngf": 8, "ndf": 8, "attention": 7}, DATA)  # the trainer: one usage line


@pytest.mark.slow
def test_sagan_cond_samples_carry_the_asked_labels_and_follow_them(cli, tmp_path):
    ckpt = train(TrainConfig(model="sagan-cond", data="toy:shapes", steps=3, batch_size=16, device="cpu", seed=1,
                             hparams={"ngf": 8, "ndf": 8}, log_every=3, out=str(tmp_path / "run")))
    assert load_checkpoint(ckpt)["data"]["num_classes"] == 4
    for k in (1, 3):
        r = cli("sample", ckpt, "-n", "4", "--class", str(k), "--seed", "0", "-o", tmp_path / f"c{k}.npz")
        assert r.code == 0, r.err
    one, three = np.load(tmp_path / "c1.npz"), np.load(tmp_path / "c3.npz")
    assert (one["labels"] == 1).all() and (three["labels"] == 3).all()
    assert np.array_equal(one["z"], three["z"]) and not np.array_equal(one["images"], three["images"])
    r = cli("train", "sagan", "--data", "toy:shapes", "--dry-run")
    assert r.code == 0 and not MODELS.get("sagan").conditional and MODELS.get("sagan-cond").conditional


@pytest.mark.parametrize("loss, want", [
    ("hinge", {"n_critic": 5, "betas": [0.0, 0.9], "lr_schedule": "linear"}),
    ("wgan-gp", {"n_critic": 5, "betas": [0.0, 0.9], "lr_schedule": "linear"}),
    ("lsgan", {"n_critic": 1, "betas": [0.5, 0.999], "lr_schedule": "constant"}),
])
def test_loss_selects_its_recipe_on_the_resnet_backbone(cli, loss, want):
    r = cli("train", "sngan", "--data", "toy:shapes", "--loss", loss, "--dry-run")
    assert r.code == 0, r.err
    cfg = tomllib.loads(r.text)
    assert {k: cfg[k] for k in want} == want
    assert cfg["hparams"]["d_spectral_norm"] is (loss != "wgan-gp")  # the WGAN-GP critic: the penalty, not SN
    over = tomllib.loads(cli("train", "sngan", "--data", "toy:shapes", "--loss", loss, "--n-critic", "2",
                             "--betas", "0.1,0.2", "--dry-run").text)
    assert over["n_critic"] == 2 and over["betas"] == [0.1, 0.2]  # the user's options win


@pytest.mark.slow
def test_wgan_gp_recipe_trains_a_critic_without_spectral_norm_unless_asked(tmp_path):
    """The WGAN-GP critic is constrained by its gradient penalty, not by spectral norm (Gulrajani et al.)."""
    def trained(out: str, **hp) -> dict:
        return load_checkpoint(train(TrainConfig(model="sngan", data="toy:shapes", steps=1, batch_size=8, device="cpu",
                                                 loss="wgan-gp", hparams={"ngf": 8, "ndf": 8, **hp},
                                                 out=str(tmp_path / out))))

    plain, with_sn = trained("plain"), trained("sn", d_spectral_norm=True)
    assert plain["hparams"]["d_spectral_norm"] is False and with_sn["hparams"]["d_spectral_norm"] is True
    assert not any("parametrizations" in k for k in plain["state"]["D"])
    assert any("parametrizations" in k for k in with_sn["state"]["D"])


def test_sagan_recipe_is_the_papers():
    d = MODELS.get("sagan").defaults
    assert (d["lr_g"], d["lr_d"], d["n_critic"], d["betas"]) == (1e-4, 4e-4, 1, [0.0, 0.9])
    assert MODELS.get("sagan").default_loss == MODELS.get("sngan").default_loss == "hinge"


@pytest.mark.parametrize("upsample", ["deconv", "resize", "pixelshuffle"])
@pytest.mark.parametrize("resolution, channels", [(32, 1), (64, 3)])
def test_dcgan_upsampling_variants_make_images_of_the_data_shape(upsample, resolution, channels):
    spec = MODELS.get("dcgan")
    hp = {**spec.defaults, "ngf": 8, "upsample": upsample}
    G = spec.build_generator(hp, {"channels": channels, "resolution": resolution})
    assert G(torch.randn(3, 100)).shape == (3, channels, resolution, resolution)
    kinds = {type(m) for m in G.modules()}
    assert (nn.PixelShuffle in kinds) == (upsample == "pixelshuffle")
    assert (nn.Upsample in kinds) == (upsample == "resize")
    doublings = int(np.log2(resolution)) - 2
    deconvs = sum(isinstance(m, nn.ConvTranspose2d) for m in G.modules())
    assert deconvs == (1 + doublings if upsample == "deconv" else 1)  # the first (4x4 from z) stays


def test_pixel_shuffle_starts_free_of_checkerboard():
    """ICNR: at initialisation each 2x2 block a pixel shuffle makes holds one value per channel."""
    spec = MODELS.get("dcgan")
    G = spec.build_generator({**spec.defaults, "ngf": 8, "upsample": "pixelshuffle"}, {"channels": 1, "resolution": 32})
    conv, shuffle = next((a, b) for a, b in zip(G.net, G.net[1:]) if isinstance(b, nn.PixelShuffle))
    out = shuffle(conv(torch.randn(2, conv.in_channels, 8, 8)))
    blocks = out.unfold(2, 2, 2).unfold(3, 2, 2)  # N x C x 8 x 8 x 2 x 2
    assert torch.allclose(blocks, blocks[..., :1, :1].expand_as(blocks))


def test_minibatch_std_appends_each_groups_std_as_a_feature_map():
    x = torch.randn(8, 3, 4, 4)
    out = MinibatchStd(4)(x)
    assert out.shape == (8, 4, 4, 4) and torch.equal(out[:, :3], x)
    for i in range(8):
        group = x[i % 2::2]  # sample i is in group i mod (8 / 4)
        assert torch.allclose(out[i, 3], group.std(0, unbiased=False).mean().expand(4, 4), atol=1e-5)
    assert MinibatchStd(4)(torch.randn(6, 3, 4, 4)).shape == (6, 4, 4, 4)  # 6 samples: groups of 2


def test_dcgan_minibatch_std_makes_d_see_the_other_samples():
    """In eval mode (batch norm on running statistics) a sample's score depends on the rest of the batch
    only through the minibatch-std layer."""
    spec = MODELS.get("dcgan")
    x = torch.randn(4, 1, 32, 32)
    other = x.clone()
    other[1:] = torch.randn(3, 1, 32, 32)
    for group, coupled in ((0, False), (4, True)):
        torch.manual_seed(0)
        D = spec.build_discriminator({**spec.defaults, "ndf": 8, "minibatch_std": group}, {"channels": 1, "resolution": 32})
        D.eval()
        with torch.no_grad():
            D.net[-1].weight[:, -1] = 1.0 if group else 0.0  # the last layer reads the std map (or would)
            moved = (D(x)[0] - D(other)[0]).abs() > 1e-6
        assert bool(moved) == coupled


def test_dcgan_upsamples_by_resize_and_older_checkpoints_keep_transposed_convolutions():
    """resize is the default (measured: bench/RESULTS.md "quality"); hyper-parameters saved before the
    option existed (no `upsample`) rebuild the transposed-convolution G they were trained with."""
    spec = MODELS.get("dcgan")
    assert spec.defaults["upsample"] == "resize" and spec.defaults["minibatch_std"] == 0
    data = {"channels": 1, "resolution": 32}
    new = spec.build_generator({**spec.defaults, "ngf": 8}, data)
    old = spec.build_generator({k: v for k, v in spec.defaults.items() if k != "upsample"} | {"ngf": 8}, data)
    assert any(isinstance(m, nn.Upsample) for m in new.modules())
    assert not any(isinstance(m, nn.Upsample) for m in old.modules())
    assert sum(isinstance(m, nn.ConvTranspose2d) for m in old.modules()) == 4  # 4x4 from z, then 3 doublings


@pytest.mark.slow
def test_unknown_upsample_is_refused_in_one_line(cli, tmp_path):
    r = cli("train", "dcgan", "--data", "toy:shapes", "--set", "upsample=bilinear", "--steps", "1",
            "--out", tmp_path / "r")
    assert r.code == 2 and "upsample 'bilinear'" in r.err and len(r.err.strip().splitlines()) == 1
