"""GAN objectives on discriminator outputs (logits or critic scores).

Each registers `d_loss(real_out, fake_out)` and `g_loss(fake_out)`; WGAN-GP and
ns-gp add a gradient penalty (computed by the training loop) and 5 critic steps. They are
building blocks: a model's objective (gantools.objective) calls them on D's scores.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gantools.registry import LossSpec, register_loss


def _ns_d(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    # -log D(x) - log(1 - D(G(z))) with D = sigmoid(logit), in the stable softplus form
    return F.softplus(-real).mean() + F.softplus(fake).mean()


def _ns_g(fake: torch.Tensor) -> torch.Tensor:
    # -log D(G(z)), the non-saturating generator loss
    return F.softplus(-fake).mean()


register_loss(LossSpec(
    "ns", "non-saturating GAN loss: G maximises log D(G(z)) (Goodfellow et al. 2014)",
    d_loss=_ns_d, g_loss=_ns_g, probabilities=True,
))
register_loss(LossSpec(
    "ns-gp", "ns with the gradient penalty (lambda 10) at real-fake mixtures and 5 D steps: bounded like ns, "
    "smooth like wgan-gp (BAGAN-GP's authors' D loss)",
    d_loss=_ns_d, g_loss=_ns_g, probabilities=True,
    gradient_penalty=10.0, default_n_critic=5,
))
register_loss(LossSpec(
    "minimax", "the original minimax loss: G minimises log(1 - D(G(z))) (saturates early)",
    d_loss=_ns_d, g_loss=lambda fake: -F.softplus(fake).mean(), probabilities=True,
))
register_loss(LossSpec(
    "lsgan", "least squares GAN (Mao et al. 2017): targets 1 for real, 0 for fake",
    d_loss=lambda real, fake: 0.5 * ((real - 1).pow(2).mean() + fake.pow(2).mean()),
    g_loss=lambda fake: 0.5 * (fake - 1).pow(2).mean(),
))
register_loss(LossSpec(
    "hinge", "hinge loss (Lim & Ye 2017; SNGAN, SAGAN)",
    d_loss=lambda real, fake: F.relu(1 - real).mean() + F.relu(1 + fake).mean(),
    g_loss=lambda fake: -fake.mean(),
))
register_loss(LossSpec(
    "wgan-gp", "Wasserstein loss with gradient penalty, lambda 10, 5 critic steps (Gulrajani et al. 2017)",
    d_loss=lambda real, fake: fake.mean() - real.mean(),
    g_loss=lambda fake: -fake.mean(),
    gradient_penalty=10.0,
    default_n_critic=5,
))


def gradient_penalty(D, real: torch.Tensor, fake: torch.Tensor, labels=None,
                     eps: torch.Tensor | None = None) -> torch.Tensor:
    """E[(||grad D(x_hat)||_2 - 1)^2] at x_hat = eps * real + (1 - eps) * fake, with one mixing
    weight per sample: `eps` (N values in [0, 1]) or, if None, drawn uniformly here."""
    shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    eps = torch.rand(shape, device=real.device, dtype=real.dtype) if eps is None else eps.view(shape)
    x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
    out = D(x_hat, labels)
    (grad,) = torch.autograd.grad(out.sum(), x_hat, create_graph=True)
    return (grad.flatten(1).norm(2, dim=1) - 1).pow(2).mean()
