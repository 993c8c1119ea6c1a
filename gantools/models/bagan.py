"""`bagan`: the balancing GAN (Mariani et al. 2018, "BAGAN: Data Augmentation with Balancing GAN"),
networks and defaults after the authors' code (IBM/BAGAN). Two phases:

1. `autoencode`: an encoder E and a decoder, which is G itself, learn to reconstruct all images (MSE).
2. At the phase's end (`end_phase`) E's codes of the training images give per class a mean and a
   covariance (`ClassGaussians`, fixed from then on), and E's convolutional trunk is copied into D's.
3. `adversarial`: D has N+1 outputs (the N classes and "fake"): it learns the real images' classes and
   to call G's images fake; G learns to make D answer the class its latent was drawn for. Classes are
   drawn uniformly (the authors' default), so G learns the rare classes as often as the others.

G's latent for class c is mean_c + L_c z with z ~ N(0, I) and L_c L_c^T = covariance_c: the prior
draws z (and the labels) like any conditional model's, `fake` moves z into the class's Gaussian, so
`sample --seed` and `interpolate` agree on z, and rows of class weights (`interpolate --class-path`)
mix the classes' means and factors."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gantools.errors import GantoolsError, UsageError
from gantools.log import warn
from gantools.objective import DStep, GANObjective, GaussianPrior, Phase
from gantools.registry import ModelSpec, register_model

RESOLUTIONS = (28, 32, 64, 128)  # halved down to the latent grid (7 or 8 pixels) as the authors' rule
LEAK = 0.3  # the slope of Keras' LeakyReLU default, which the authors' encoder uses


def _latent_res(resolution: int) -> int:
    """The encoder's and G's smallest grid: the resolution halved until at most 8 pixels."""
    if resolution not in RESOLUTIONS:
        raise ValueError(f"bagan supports resolutions {', '.join(map(str, RESOLUTIONS))}, not {resolution}")
    while resolution > 8:
        resolution //= 2
    return resolution


def _init(module: nn.Module) -> None:
    """Glorot initialisation (the Keras default the authors' layers use), zero biases."""
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class BAGANGenerator(nn.Module):
    """The decoder: z -> dense (hidden, ReLU) -> dense to ngf x 7 or 8 squared (ReLU) -> per doubling
    nearest upsampling and a 5x5 convolution with ReLU (2 ngf channels below half the resolution, then
    ngf) -> a 2x2 convolution to the image, tanh. No biases, no normalisation (as the authors')."""

    class_weights = True  # the objective mixes class Gaussians for rows of class weights (interpolate --class-path)

    def __init__(self, z_dim: int, channels: int, resolution: int, ngf: int, hidden: int):
        super().__init__()
        res = _latent_res(resolution)
        self.dense = nn.Sequential(nn.Linear(z_dim, hidden, bias=False), nn.ReLU(True),
                                   nn.Linear(hidden, ngf * res * res, bias=False), nn.ReLU(True),
                                   nn.Unflatten(1, (ngf, res, res)))
        layers: list[nn.Module] = []
        ch = ngf
        while res < resolution:
            out = 2 * ngf if res < resolution // 2 else ngf
            layers += [nn.Upsample(scale_factor=2), nn.Conv2d(ch, out, 5, padding=2, bias=False), nn.ReLU(True)]
            ch, res = out, res * 2
        # Keras' 2x2 "same" convolution pads one pixel right and below
        layers += [nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(ch, channels, 2, bias=False), nn.Tanh()]
        self.convs = nn.Sequential(*layers)
        self.apply(_init)
        for m in self.convs:
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_normal_(m.weight)  # the authors' glorot_normal here

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.convs(self.dense(z))


def _trunk(channels: int, resolution: int, ndf: int, dropout: float) -> nn.Sequential:
    """The encoder's convolutions, shared by E and D: 3x3 convolutions of ndf, 2, 4, 8 ndf channels
    (strides 2, 1, 2, 1), then pairs of 8 ndf (strides 2, 1) down to 7 or 8 pixels, each followed by
    LeakyReLU(0.3) and dropout; flattened."""
    plan = [(ndf, 2), (2 * ndf, 1), (4 * ndf, 2), (8 * ndf, 1)]
    res = -(-resolution // 4)
    while res > _latent_res(resolution):
        plan += [(8 * ndf, 2), (8 * ndf, 1)]
        res = -(-res // 2)
    layers: list[nn.Module] = []
    ch = channels
    for out, stride in plan:
        layers += [nn.Conv2d(ch, out, 3, stride, 1), nn.LeakyReLU(LEAK, True), nn.Dropout(dropout)]
        ch = out
    return nn.Sequential(*layers, nn.Flatten())


class BAGANEncoder(nn.Module):
    """image -> trunk -> linear code of width z_dim."""

    def __init__(self, channels: int, resolution: int, ndf: int, dropout: float, z_dim: int):
        super().__init__()
        self.trunk = _trunk(channels, resolution, ndf, dropout)
        self.head = nn.Linear(8 * ndf * _latent_res(resolution) ** 2, z_dim)
        self.apply(_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x))


class BAGANDiscriminator(BAGANEncoder):
    """image -> the encoder's trunk -> N+1 logits: the N classes, then "fake"."""

    def __init__(self, channels: int, resolution: int, ndf: int, dropout: float, num_classes: int):
        super().__init__(channels, resolution, ndf, dropout, num_classes + 1)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return super().forward(x)


class ClassGaussians(GaussianPrior):
    """G's inputs: z ~ N(0, I) and a class drawn uniformly; `mean` (N x z_dim) and `scale_tril` (N x z_dim
    x z_dim, the Cholesky factors of the classes' covariances) move z into the class's Gaussian
    (`latent`). Until `fit_codes` (the end of the autoencoder phase) every class is N(0, I).

    A class needs at least 2 images. One with at most z_dim images has a singular sample covariance:
    it is shrunk toward a multiple of the identity (Ledoit & Wolf 2004) with a warning."""

    def __init__(self, z_dim: int, num_classes: int):
        super().__init__(z_dim, num_classes)
        self.tensors["mean"] = torch.zeros(num_classes, z_dim)
        self.tensors["scale_tril"] = torch.eye(z_dim).repeat(num_classes, 1, 1)
        self._on_device: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def fit(self, labels: torch.Tensor | None) -> None:
        """Refuse a class of fewer than 2 images before training (its Gaussian could not be fitted);
        the class frequencies stay uniform (the authors' sampling of G's classes)."""
        counts = torch.bincount(labels.cpu().long(), minlength=len(self.tensors["mean"]))
        small = [f"{k} ({int(n)})" for k, n in enumerate(counts) if n < 2]
        if small:
            raise GantoolsError(f"bagan fits a Gaussian to each class's codes and needs at least 2 images per "
                                f"class; too few in class {', '.join(small)}")

    @torch.no_grad()
    def fit_codes(self, codes: torch.Tensor, labels: torch.Tensor, class_names: list[str] | None = None) -> None:
        """Per class, the mean and the (shrunk where singular) covariance of the encoder's codes. The warning
        names the classes by `class_names` (the data spec's) when given, else by index."""
        codes, labels = codes.double().cpu(), labels.cpu().long()
        d = codes.shape[1]
        means, factors, shrunk = [], [], []
        count = len(self.tensors["mean"])
        names = [str(n) for n in class_names] if class_names and len(class_names) == count else list(map(str, range(count)))
        for k in range(count):
            x = codes[labels == k]
            cov = torch.cov(x.T, correction=1)
            if len(x) <= d:
                cov = _ledoit_wolf(x)
                shrunk.append(f"{names[k]} ({len(x)})")
            jitter = 1e-6 * cov.diagonal().mean().clamp_min(1e-12)
            means.append(x.mean(0))
            factors.append(torch.linalg.cholesky(cov + jitter * torch.eye(d, dtype=cov.dtype)))
        if shrunk:
            warn(f"class {', '.join(shrunk)} has at most z_dim = {d} images: the covariance of its latent Gaussian is "
                 "shrunk toward a multiple of the identity (Ledoit-Wolf)")
        self.tensors["mean"] = torch.stack(means).float()
        self.tensors["scale_tril"] = torch.stack(factors).float()
        self._on_device.clear()

    def load_state_dict(self, tensors: dict[str, torch.Tensor]) -> None:
        super().load_state_dict(tensors)
        self._on_device.clear()

    def latent(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """G's input for standard normal z and labels (or rows of class weights): mean_y + L_y z."""
        if z.device not in self._on_device:  # kept on the device: no copy per step (nor in a CUDA graph)
            self._on_device[z.device] = (self.tensors["mean"].to(z.device), self.tensors["scale_tril"].to(z.device))
        mean, tril = self._on_device[z.device]
        if y.is_floating_point():  # class weights: mix the classes' means and factors
            w = y.to(mean.dtype)
            return (w @ mean + torch.einsum("nc,cij,nj->ni", w, tril, z.to(mean.dtype))).to(z.dtype)
        y = y.long()
        return (mean[y] + (tril[y] @ z.to(mean.dtype).unsqueeze(-1)).squeeze(-1)).to(z.dtype)


def _ledoit_wolf(x: torch.Tensor) -> torch.Tensor:
    """The Ledoit-Wolf covariance of rows x: the sample covariance shrunk toward mu I (mu its mean variance)
    by their estimate of the optimal weight."""
    n, d = x.shape
    xc = x - x.mean(0)
    s = xc.T @ xc / n
    mu = s.diagonal().mean()
    target = mu * torch.eye(d, dtype=x.dtype)
    dist = (s - target).pow(2).sum()
    spread = sum((torch.outer(r, r) - s).pow(2).sum() for r in xc) / n ** 2
    weight = 1.0 if dist == 0 else float(min(spread / dist, 1.0))
    return weight * target + (1 - weight) * s


class AutoencoderInit(GANObjective):
    """What bagan and bagan-gp share: an encoder E (`build_encoder`) and the autoencoder phase (E and G on
    `reconstruction`, optimiser `AE`); at its end (`end_phase`) the class Gaussians fitted to E's codes and
    E's trunk copied into D's; G's latent for class y drawn from y's Gaussian (G also gets y)."""

    reconstruction = staticmethod(F.mse_loss)

    def __init__(self, spec, hparams: dict, data: dict, loss=None):
        super().__init__(spec, hparams, data, loss)
        self.num_classes = int(data.get("num_classes") or 0)

    def build_encoder(self) -> nn.Module:
        raise NotImplementedError

    def build_networks(self) -> dict[str, nn.Module]:
        if self.hparams["ae_steps"] < 1:
            raise ValueError(f"ae_steps {self.hparams['ae_steps']}: the autoencoder phase needs at least 1 step")
        return {**super().build_networks(), "E": self.build_encoder()}

    def optimizers(self) -> dict[str, tuple[tuple[str, ...], str]]:
        return {**super().optimizers(), "AE": (("E", "G"), "lr_g")}

    def phases(self) -> list[Phase]:
        return [Phase("autoencode", int(self.hparams["ae_steps"]), optimizer="AE"), Phase("adversarial")]

    def build_prior(self) -> ClassGaussians:
        self.prior = ClassGaussians(int(self.hparams["z_dim"]), self.num_classes)
        return self.prior

    def fake(self, G, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return G(self.prior.latent(inputs["z"], inputs["y"]), inputs["y"])

    def phase_loss(self, phase: str, nets: dict, real: torch.Tensor, labels, inputs: dict) -> tuple[torch.Tensor, dict]:
        if phase != "autoencode":
            return super().phase_loss(phase, nets, real, labels, inputs)
        return self.reconstruction(nets["G"](nets["E"](real), labels).float(), real.float()), {}

    @torch.no_grad()
    def end_phase(self, phase: str, nets: dict, prior: ClassGaussians, batches) -> None:
        """After the autoencoder: fit the class Gaussians to E's codes (dropout off) of every training
        image, and copy E's trunk into D's."""
        if phase != "autoencode":
            return
        E = nets["E"]
        was_training = E.training
        E.eval()
        codes, labels = zip(*((E(x).float(), y) for x, y in batches))
        E.train(was_training)
        prior.fit_codes(torch.cat(codes), torch.cat(labels), self.data.get("class_names"))
        nets["D"].trunk.load_state_dict(E.trunk.state_dict())


class BAGANObjective(AutoencoderInit):
    """The autoencoder phase (E and G on MSE, optimiser `AE`), the transition (`end_phase`), then D's
    (N+1)-way cross-entropy and G's N-way one. Logs `acc_real` (D's class on reals) and `fake_as_drawn`
    (the share of fakes D gives the drawn class); `d_real`/`d_fake` are the mean probabilities of "not fake".

    The authors' D step adds ceil(batch / N) fakes to each real batch; here D sees a whole batch of fakes
    each weighted 1/N: the same loss in expectation, from the fakes the trainer draws anyway."""

    def __init__(self, spec, hparams: dict, data: dict, loss=None):
        super().__init__(spec, hparams, data, loss)
        if loss is not None and loss.name != "ns":
            raise UsageError(f"--loss {loss.name}: bagan trains with its (N+1)-way cross-entropy, the "
                             "multi-class form of ns; give --loss ns or leave it out")

    def build_encoder(self) -> nn.Module:
        hp, d = self.hparams, self.data
        if not 0 <= hp["dropout"] < 1:
            raise ValueError(f"dropout {hp['dropout']}: must be in [0, 1)")
        return BAGANEncoder(d["channels"], d["resolution"], hp["ndf"], hp["dropout"], hp["z_dim"])

    def critic(self, nets: dict, x: torch.Tensor, labels) -> torch.Tensor:
        """log P(a class) - log P(fake): the real-vs-fake logit inside D's N+1 outputs."""
        logits = nets["D"](x).float()
        return torch.logsumexp(logits[:, :-1], 1) - logits[:, -1]

    def _d_loss(self, real_logits, labels, fake_logits) -> torch.Tensor:
        fake_class = torch.full((len(fake_logits),), self.num_classes, dtype=torch.long, device=fake_logits.device)
        n = self.num_classes
        return (n * F.cross_entropy(real_logits, labels.long()) + F.cross_entropy(fake_logits, fake_class)) / (n + 1)

    def _g_loss(self, fake_logits, y) -> tuple[torch.Tensor, dict]:
        drawn = (fake_logits.detach().argmax(1) == y).float().mean()
        return F.cross_entropy(fake_logits, y.long()), {"fake_as_drawn": drawn}

    def d_step(self, nets: dict, real: torch.Tensor, labels, fake: torch.Tensor, inputs: dict,
               with_g: bool) -> DStep:
        real_logits, fake_logits = nets["D"](real).float(), nets["D"](fake).float()
        real_scores = torch.logsumexp(real_logits[:, :-1], 1) - real_logits[:, -1]
        with torch.no_grad():
            p_real, p_fake = real_logits.softmax(1), fake_logits.softmax(1)
            logs = {"d_real": 1 - p_real[:, -1].mean(), "d_fake": 1 - p_fake[:, -1].mean(),
                    "acc_real": (real_logits.argmax(1) == labels).float().mean()}
        loss_g = None
        if with_g:
            loss_g, logs_g = self._g_loss(fake_logits, inputs["y"])
            logs.update(logs_g)
        return DStep(self._d_loss(real_logits, labels, fake_logits), real_scores, logs, loss_g)

    def g_step(self, nets: dict, fake: torch.Tensor, inputs: dict) -> tuple[torch.Tensor, dict]:
        return self._g_loss(nets["D"](fake).float(), inputs["y"])


def build_generator(hp: dict, data: dict) -> nn.Module:
    return BAGANGenerator(hp["z_dim"], data["channels"], data["resolution"], hp["ngf"], hp["hidden"])


def build_discriminator(hp: dict, data: dict) -> nn.Module:
    return BAGANDiscriminator(data["channels"], data["resolution"], hp["ndf"], hp["dropout"], int(data["num_classes"]))


register_model(ModelSpec(
    name="bagan",
    description="balancing GAN (Mariani et al. 2018): an autoencoder first, then G from its decoder, D from its "
                "encoder with N+1 outputs, class latents from Gaussians fitted to the codes",
    data_kind="image",
    build_generator=build_generator,
    build_discriminator=build_discriminator,
    conditional=True,
    default_loss="ns",
    resolutions=RESOLUTIONS,
    objective=BAGANObjective,
    # the authors' code (IBM/BAGAN): Adam 5e-5 with beta1 0.5 for every network, batch 128, latent 100,
    # dropout 0.3, G's widths 1024 (dense) and 256/128 (convolutions: ngf 128), the encoder's 32..256
    # (ndf 32), and the autoencoder trained as long as the GAN (ae_steps = steps). One change, measured
    # (bench/RESULTS.md, balance): real batches class-balanced, where the authors' follow the data's
    # proportions, so that D and the encoder see the rare classes as often as G draws them; and D's inputs
    # never augmented by default (gantools otherwise turns DiffAugment on for sets of at most 1,000 images):
    # augmented, BAGAN's images of each class collapse to nearly one image (measured, bench/RESULTS.md)
    defaults={"z_dim": 100, "ngf": 128, "ndf": 32, "hidden": 1024, "dropout": 0.3, "ae_steps": 5000,
              "batch_size": 128, "lr_g": 5e-5, "lr_d": 5e-5, "betas": [0.5, 0.999], "steps": 5000,
              "updates": "alternating", "class_balanced": True, "augment": "none"},
))
