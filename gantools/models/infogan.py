"""`infogan`: InfoGAN (Chen et al. 2016). G takes noise z and latent codes c: categorical codes (one-hot)
and continuous codes uniform in [-1, 1], drawn by `InfoPrior`; z is uniform in [-1, 1] too, as in the
authors' code (`noise = "uniform"`; "normal" is N(0, I), which checkpoints from before the option drew).
A head Q on D's trunk recovers c from a fake; maximising the mutual-information bound L_I(G, Q) is
minimising Q's negative log-likelihood of c: cross-entropy for categorical codes plus a Gaussian NLL for
continuous ones, whose standard deviation is fixed to 1 (the authors' MNIST setting). The objective is min over G and Q of V(D, G) - lambda L_I:
`lambda_cat` weighs the categorical terms (1) and `lambda_cont` the continuous ones (0.1, smaller, as the
paper advises). Q is trained in both steps: its head is in D's optimiser and in G's, so D's step
(on the detached fakes) trains the head and the shared trunk to read the codes, and G's step trains G
and the head to make them readable."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gantools.errors import UsageError
from gantools.models.dcgan import _d_norm, _init_weights, _norm
from gantools.objective import DStep, GANObjective, GaussianPrior, normal
from gantools.registry import ModelSpec, register_model

RESOLUTIONS = (28, 32)  # the paper's MNIST networks: two stride-2 stages from resolution / 4
NOISE = ("uniform", "normal")  # z's distribution (hyper-parameter `noise`)


class InfoPrior(GaussianPrior):
    """G's inputs: noise z (uniform in [-1, 1], or N(0, I) with noise "normal"), categorical codes `c_cat`
    (n x len(cat_codes), code i uniform over cat_codes[i] values) and continuous codes `c_cont` (n x
    cont_codes, uniform in [-1, 1]). The noise's kind is in the prior's saved state, so that a resumed run
    and the commands draw what the run drew; a state saved without it drew normal noise."""

    def __init__(self, z_dim: int, cat_codes: list[int], cont_codes: int, noise: str = "uniform"):
        super().__init__(z_dim)
        self.cat_codes, self.cont_codes = [int(k) for k in cat_codes], int(cont_codes)
        self.tensors["uniform_noise"] = torch.tensor(noise == "uniform")

    def load_state_dict(self, tensors: dict[str, torch.Tensor]) -> None:
        super().load_state_dict({"uniform_noise": torch.tensor(False), **tensors})

    def _noise(self, n: int, generator, truncation: float | None, temperature: float | None = None) -> torch.Tensor:
        """n x z_dim noise from the prior's kind; truncation and temperature apply to normal noise only."""
        if not bool(self.tensors["uniform_noise"]):
            return normal((n, self.z_dim), generator, truncation, temperature)
        for option, value in (("truncation", truncation), ("temperature", temperature)):
            if value is not None:
                raise UsageError(f"--{option} {value}: this model's noise z is uniform in [-1, 1], not normal")
        if isinstance(generator, torch.Generator):
            return torch.rand((n, self.z_dim), generator=generator, device=generator.device) * 2 - 1
        return torch.from_numpy(generator.random((n, self.z_dim), dtype=np.float32) * 2 - 1)

    def draw(self, n: int, generator, labels=None, truncation: float | None = None,
             temperature: float | None = None) -> dict[str, torch.Tensor]:
        width = len(self.cat_codes) + self.cont_codes
        if isinstance(generator, torch.Generator):
            z = self._noise(n, generator, truncation, temperature)
            u = torch.rand((n, width), generator=generator, device=generator.device)
        else:
            # the codes' own stream, seeded by a first draw: z and the codes both stay prefix-stable in n
            codes = np.random.default_rng(int(generator.integers(2**63)))
            z = self._noise(n, generator, truncation, temperature)
            u = torch.from_numpy(codes.random((n, width), dtype=np.float32))
        k = len(self.cat_codes)
        sizes = torch.tensor(self.cat_codes, device=u.device)
        c_cat = torch.minimum((u[:, :k] * sizes).long(), sizes - 1)  # float32 rounding may reach k itself
        return {"z": z, "c_cat": c_cat, "c_cont": u[:, k:] * 2 - 1}


def _fc_norm(kind: str, ch: int) -> nn.Module:
    """D's normalisation for a fully connected layer (layer norm as GroupNorm(1, ch) under WGAN-GP)."""
    return nn.BatchNorm1d(ch) if kind == "batch" else _norm(kind, ch)


class InfoGANGenerator(nn.Module):
    """[z, one-hot codes, continuous codes] -> FC 1024 -> FC 128 x (r/4)^2 -> deconv 64 -> deconv to the image, tanh."""

    def __init__(self, in_dim: int, channels: int, resolution: int, ngf: int, hidden: int):
        super().__init__()
        self.base = resolution // 4
        self.fc = nn.Sequential(
            nn.Linear(in_dim, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(True),
            nn.Linear(hidden, 2 * ngf * self.base ** 2, bias=False), nn.BatchNorm1d(2 * ngf * self.base ** 2), nn.ReLU(True))
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(2 * ngf, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True),
            nn.ConvTranspose2d(ngf, channels, 4, 2, 1), nn.Tanh())
        self.apply(_init_weights)

    def forward(self, x: torch.Tensor, labels=None) -> torch.Tensor:
        return self.deconv(self.fc(x).view(len(x), -1, self.base, self.base))


class InfoGANDiscriminator(nn.Module):
    """image -> conv 64 -> conv 128 -> FC 1024 (the trunk Q shares) -> one logit; LeakyReLU(0.1) as the paper."""

    def __init__(self, channels: int, resolution: int, ndf: int, hidden: int, norm: str = "batch"):
        super().__init__()
        self.trunk = nn.Sequential(
            nn.Conv2d(channels, ndf, 4, 2, 1), nn.LeakyReLU(0.1, True),
            nn.Conv2d(ndf, 2 * ndf, 4, 2, 1, bias=False), _norm(norm, 2 * ndf), nn.LeakyReLU(0.1, True),
            nn.Flatten(), nn.Linear(2 * ndf * (resolution // 4) ** 2, hidden, bias=False), _fc_norm(norm, hidden),
            nn.LeakyReLU(0.1, True))
        self.head = nn.Linear(hidden, 1)
        self.apply(_init_weights)

    def forward(self, x: torch.Tensor, labels=None) -> torch.Tensor:
        return self.head(self.trunk(x)).flatten()


class QHead(nn.Module):
    """D's trunk features -> FC 128 -> the categorical codes' logits and the continuous codes' means."""

    def __init__(self, hidden: int, out_dim: int, norm: str = "batch"):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(hidden, 128, bias=False), _fc_norm(norm, 128), nn.LeakyReLU(0.1, True),
                                 nn.Linear(128, out_dim))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h)


def _codes(hp: dict) -> tuple[list[int], int]:
    """The categorical code sizes and the number of continuous codes, checked (and the noise's kind)."""
    cats, cont = [int(k) for k in hp["cat_codes"]], int(hp["cont_codes"])
    if any(k < 2 for k in cats) or cont < 0 or not (cats or cont):
        raise ValueError(f"cat_codes {cats} and cont_codes {cont}: each categorical code needs at least 2 values, "
                         "cont_codes at least 0, and there must be a code")
    for key in ("lambda_cat", "lambda_cont"):
        if not (float(hp[key]) >= 0 and math.isfinite(float(hp[key]))):
            raise ValueError(f"{key} {hp[key]}: must be a finite number >= 0")
    if hp.get("noise", "normal") not in NOISE:
        raise ValueError(f"noise {hp['noise']!r}: must be one of {', '.join(NOISE)}")
    return cats, cont


def _check_resolution(data: dict) -> int:
    if data["resolution"] not in RESOLUTIONS:
        raise ValueError(f"infogan supports resolutions {RESOLUTIONS}, not {data['resolution']}")
    return data["resolution"]


def build_generator(hp: dict, data: dict) -> nn.Module:
    cats, cont = _codes(hp)
    return InfoGANGenerator(hp["z_dim"] + sum(cats) + cont, data["channels"], _check_resolution(data), hp["ngf"], hp["hidden"])


def build_discriminator(hp: dict, data: dict) -> nn.Module:
    return InfoGANDiscriminator(data["channels"], _check_resolution(data), hp["ndf"], hp["hidden"], _d_norm(hp))


class InfoGANObjective(GANObjective):
    """G, D and Q; the registry loss on D's logit plus the mutual-information term in both steps."""

    # Q's head is in both optimisers: a simultaneous update would clear D's gradients on it with G's
    update_schemes = ("alternating",)
    augmentable = False  # fakes reach D's trunk directly (_heads): --augment would reach the reals only

    def build_networks(self) -> dict[str, nn.Module]:
        nets = super().build_networks()
        cats, cont = _codes(self.hparams)
        nets["Q"] = QHead(self.hparams["hidden"], sum(cats) + cont, _d_norm(self.hparams))
        return nets

    def optimizers(self) -> dict[str, tuple[tuple[str, ...], str]]:
        return {"G": (("G", "Q"), "lr_g"), "D": (("D", "Q"), "lr_d")}

    def build_prior(self) -> InfoPrior:
        cats, cont = _codes(self.hparams)
        return InfoPrior(int(self.hparams["z_dim"]), cats, cont, self.hparams.get("noise", "normal"))

    def fake(self, G, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        z = inputs["z"]
        one_hot = [F.one_hot(c, k).to(z.dtype) for c, k in zip(inputs["c_cat"].long().unbind(1), self.hparams["cat_codes"])]
        return G(torch.cat([z, *one_hot, inputs["c_cont"].to(z.dtype)], 1))

    def _heads(self, nets: dict, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """D's logit and Q's output from one pass through D's trunk."""
        h = nets["D"].trunk(x)
        return nets["D"].head(h).flatten().float(), nets["Q"](h).float()

    def mutual_info(self, q: torch.Tensor, inputs: dict) -> tuple[torch.Tensor, dict]:
        """lambda_cat x the categorical codes' cross-entropy + lambda_cont x the continuous codes' Gaussian NLL
        (std 1), each summed over codes and averaged over the batch; logs both terms and Q's accuracy."""
        cats = [int(k) for k in self.hparams["cat_codes"]]
        logits = q[:, :sum(cats)].split(cats, 1)
        c_cat = inputs["c_cat"].long()
        ce = sum((F.cross_entropy(lg, c_cat[:, i]) for i, lg in enumerate(logits)), q.new_zeros(()))
        mean, c_cont = q[:, sum(cats):], inputs["c_cont"].float()
        nll = (0.5 * (c_cont - mean) ** 2 + 0.5 * math.log(2 * math.pi)).sum(1).mean()
        loss = float(self.hparams["lambda_cat"]) * ce + float(self.hparams["lambda_cont"]) * nll
        logs = {"mi_cat": ce.detach(), "mi_cont": nll.detach()}
        if cats:
            with torch.no_grad():
                hits = torch.stack([lg.argmax(1) == c_cat[:, i] for i, lg in enumerate(logits)])
                logs["q_acc"] = hits.float().mean()
        return loss, logs

    def d_step(self, nets: dict, real: torch.Tensor, labels, fake: torch.Tensor, inputs: dict, with_g: bool) -> DStep:
        out_real = self.critic(nets, real, labels)
        out_fake, q = self._heads(nets, fake)
        mi, _ = self.mutual_info(q, inputs)
        return DStep(self.loss.d_loss(out_real, out_fake) + mi, out_real, self._scores(out_real, out_fake))

    def g_step(self, nets: dict, fake: torch.Tensor, inputs: dict) -> tuple[torch.Tensor, dict]:
        out_fake, q = self._heads(nets, fake)
        mi, logs = self.mutual_info(q, inputs)
        return self.loss.g_loss(out_fake) + mi, logs


register_model(ModelSpec(
    name="infogan",
    description="InfoGAN (Chen et al. 2016): categorical and continuous latent codes, a Q head on D's trunk",
    data_kind="image",
    build_generator=build_generator,
    build_discriminator=build_discriminator,
    objective=InfoGANObjective,
    default_loss="ns",
    resolutions=RESOLUTIONS,
    # The paper's MNIST setup (Chen et al. 2016, appendix C.1): 62 noise variables, one 10-way categorical
    # code and 2 continuous codes; D/Q: conv 64, conv 128, FC 1024 shared, Q's FC 128; G: FC 1024,
    # FC 7x7x128, deconv 64, deconv 1; Adam with lr 2e-4 for D and 1e-3 for G; betas as DCGAN's.
    # noise: z uniform in [-1, 1] as the authors' code (openai/InfoGAN's Uniform(62)), not N(0, I): on MNIST
    # (narrowed nets, 2,500 steps) the code error fell from 59.0% and 45.2% to 24.5% and 22.4% (seeds 0 and 1),
    # with these networks at 28 px from 62.1% to 20.9% at 2,000 steps (seed 0; bench/RESULTS.md "conditional").
    # Priors saved without it drew N(0, I) (InfoPrior.load_state_dict).
    # steps: 10,000 of 64 are the authors' 5,000 of 128 in images (640k). The code keeps sorting digits
    # that long: code error at 5,000 / 10,000 steps 4.6% / 3.3% (seed 0), 15.0% / 10.1% (seed 1), 10.0% / 7.0%
    # (seed 2) on MNIST at 28 px (bench/RESULTS.md "conditional", fourth session).
    defaults={"z_dim": 62, "noise": "uniform", "cat_codes": [10], "cont_codes": 2, "lambda_cat": 1.0, "lambda_cont": 0.1,
              "ngf": 64, "ndf": 64, "hidden": 1024, "d_norm": "auto", "batch_size": 64, "lr_g": 1e-3,
              "lr_d": 2e-4, "betas": [0.5, 0.999], "steps": 10000, "updates": "alternating"},
    hparam_min={"cont_codes": 0},  # no continuous codes
))
