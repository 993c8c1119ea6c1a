"""Augmentations of D's inputs, real and fake alike, for small data sets (`gantools train --augment`).

- `diffaug`: DiffAugment (Zhao et al. 2020), policy colour + translation + cutout on every image.
- `ada`: adaptive augmentation (Karras et al. 2020): each of its operations is applied to an image
  with probability p, and p follows D's overfitting signal r_t = E[sign(D(x_real))] towards a target.
  The operations here are a subset of ADA's pipeline: x-flip, integer translation (reflected at the
  border), brightness, contrast and saturation (no rotations, no geometric or filter operations).

Every operation is differentiable in the images, so G's gradient passes through. The trainer puts
the augmentation in front of D (`AugmentedCritic`), so every objective that calls `nets["D"]` sees
augmented images in training; its random draws come from a generator of their own, saved in the
checkpoint with ADA's p, so a resume is exact.
"""

from __future__ import annotations

import torch
from torch import nn

from gantools import distributed

TRANSLATE = 0.125  # the largest shift, as a fraction of the image side (both methods)
CUTOUT = 0.5  # DiffAugment's cutout square, as a fraction of the image side


def translate(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, reflect: bool) -> torch.Tensor:
    """Each image n shifted by (dy[n], dx[n]) whole pixels; the uncovered border is zero (DiffAugment)
    or the image reflected (ADA)."""
    n, _, h, w = x.shape
    rows = torch.arange(h, device=x.device) - dy[:, None]  # source row of each output row, N x H
    cols = torch.arange(w, device=x.device) - dx[:, None]
    if reflect:
        rows, cols = _reflect(rows, h), _reflect(cols, w)
    else:
        inside = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]
        rows, cols = rows.clamp(0, h - 1), cols.clamp(0, w - 1)
    batch = torch.arange(n, device=x.device)[:, None, None]
    out = x[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)  # N x H x W x C -> NCHW
    return out if reflect else out * inside[:, None].to(out.dtype)


def _reflect(i: torch.Tensor, size: int) -> torch.Tensor:
    """Indices mirrored into [0, size) about the border pixels (..., 2, 1, 0, 1, 2, ...)."""
    period = 2 * (size - 1)
    i = i.remainder(period)
    return torch.where(i >= size, period - i, i)


def _scale_about_mean(x: torch.Tensor, dims, factor: torch.Tensor) -> torch.Tensor:
    mean = x.mean(dim=dims, keepdim=True)
    return (x - mean) * factor + mean


class Augment(nn.Module):
    """The augmentation in front of D; draws from its own generator (`gen`). Subclasses: `forward`."""

    def __init__(self, device: torch.device | str, seed: int):
        super().__init__()
        self.gen = torch.Generator(device=device).manual_seed(seed)

    def _rows(self, draw, n: int, *shape) -> torch.Tensor:
        """`draw(size)` for this process's n images: the draw for the batch of all processes, this
        process's rows of it (gantools.distributed.rows), so that N processes augment as one would."""
        return distributed.rows(draw((n * distributed.current().world, *shape)))

    def _uniform(self, n: int, dev) -> torch.Tensor:
        """N x 1 x 1 x 1, uniform in [0, 1)."""
        return self._rows(lambda size: torch.rand(size, generator=self.gen, device=dev), n, 1, 1, 1)

    def _normal(self, n: int, dev) -> torch.Tensor:
        """N x 1 x 1 x 1, standard normal."""
        return self._rows(lambda size: torch.randn(size, generator=self.gen, device=dev), n, 1, 1, 1)

    def _integers(self, low: int, high: int, n: int, dev, *shape) -> torch.Tensor:
        return self._rows(lambda size: torch.randint(low, high, size, generator=self.gen, device=dev), n, *shape)

    def _shifts(self, n: int, size: int, dev) -> torch.Tensor:
        """Whole-pixel shifts uniform in [-TRANSLATE * size, TRANSLATE * size]."""
        most = int(size * TRANSLATE + 0.5)
        return self._integers(-most, most + 1, n, dev)

    def observe(self, real_scores: torch.Tensor) -> None:
        """D's scores on the (augmented) real batch of a D step."""

    def update(self, step: int, images: int) -> None:
        """After training step `step`, which showed D `images` real images."""

    def logs(self) -> dict[str, torch.Tensor]:
        return {}

    def get_state(self) -> dict:
        return {"generator": self.gen.get_state(), **{k: v.clone() for k, v in self.state_dict().items()}}

    def set_state(self, state: dict) -> None:
        self.gen.set_state(state["generator"])
        self.load_state_dict({k: v for k, v in state.items() if k != "generator"})


class DiffAugment(Augment):
    """DiffAugment's colour (brightness, saturation, contrast), translation (1/8, zero border) and
    cutout (a square of half the side, zeroed) on every image, each drawn per image."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        dev = x.device
        x = x + (self._uniform(n, dev) - 0.5)
        x = _scale_about_mean(x, 1, self._uniform(n, dev) * 2)
        x = _scale_about_mean(x, (1, 2, 3), self._uniform(n, dev) + 0.5)
        x = translate(x, self._shifts(n, h, dev), self._shifts(n, w, dev), reflect=False)
        return x * self._cutout_mask(n, h, w, dev)

    def _cutout_mask(self, n: int, h: int, w: int, dev) -> torch.Tensor:
        """N x 1 x H x W: 0 inside a square of CUTOUT x the side at a random centre, else 1."""
        size_h, size_w = int(h * CUTOUT + 0.5), int(w * CUTOUT + 0.5)
        top = self._integers(0, h, n, dev, 1) - size_h // 2
        left = self._integers(0, w, n, dev, 1) - size_w // 2
        r, c = torch.arange(h, device=dev), torch.arange(w, device=dev)
        in_rows = (r >= top) & (r < top + size_h)
        in_cols = (c >= left) & (c < left + size_w)
        return (~(in_rows[:, :, None] & in_cols[:, None, :]))[:, None].float()


class AdaptiveAugment(Augment):
    """ADA: x-flip, integer translation (1/8, reflected border), brightness (+N(0, 0.2)), contrast
    (x 2^N(0, 0.5)) and saturation (x 2^N(0, 1)), each applied to an image with probability p.

    Every `interval` steps p moves by sign(r_t - target) x (images shown since) / (kimg x 1000),
    clamped to [0, 1], where r_t is the mean sign of D's scores on the reals of those steps (of every
    process: p stays the same in all): p can go
    from 0 to 1 in `kimg` thousand images. All draws are made whatever p is, and an image whose
    operation is not applied is passed through unchanged, so p = 0 leaves D's inputs as they are.
    """

    def __init__(self, device, seed: int, target: float = 0.6, kimg: float = 100, interval: int = 4):
        super().__init__(device, seed)
        self.target, self.kimg, self.interval = target, kimg, interval
        self.register_buffer("p", torch.zeros((), device=device))
        self.register_buffer("sign_sum", torch.zeros((), device=device))  # since the last adjustment
        self.register_buffer("sign_count", torch.zeros((), device=device))
        self.register_buffer("images", torch.zeros((), device=device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        dev = x.device

        def applied() -> torch.Tensor:  # which images get the next operation: N x 1 x 1 x 1
            return self._uniform(n, dev) < self.p

        flip = applied() & (self._uniform(n, dev) < 0.5)
        x = torch.where(flip, x.flip(3), x)
        dy, dx = self._shifts(n, h, dev), self._shifts(n, w, dev)
        x = torch.where(applied(), translate(x, dy, dx, reflect=True), x)
        shift = self._normal(n, dev) * 0.2
        x = torch.where(applied(), x + shift, x)
        factor = torch.exp2(self._normal(n, dev) * 0.5)
        x = torch.where(applied(), _scale_about_mean(x, (1, 2, 3), factor), x)
        factor = torch.exp2(self._normal(n, dev))
        return torch.where(applied(), _scale_about_mean(x, 1, factor), x)

    @torch.no_grad()
    def observe(self, real_scores: torch.Tensor) -> None:
        self.sign_sum += real_scores.detach().float().sign().sum()
        self.sign_count += real_scores.numel()

    @torch.no_grad()
    def update(self, step: int, images: int) -> None:
        self.images += images
        if step % self.interval:
            return
        signs, count = distributed.mean(torch.stack([self.sign_sum, self.sign_count]))  # every process's reals
        r_t = signs / count.clamp(min=1e-12)
        self.p.add_(torch.sign(r_t - self.target) * self.images / (self.kimg * 1000)).clamp_(0, 1)
        self.sign_sum.zero_()
        self.sign_count.zero_()
        self.images.zero_()

    def logs(self) -> dict[str, torch.Tensor]:
        return {"ada_p": self.p}


class AugmentedCritic(nn.Module):
    """D with an augmentation in front: D(augment(x), ...). Attributes other than the call are D's."""

    def __init__(self, D: nn.Module, augment: Augment):
        super().__init__()
        self.D, self.augment = D, augment

    def forward(self, x: torch.Tensor, *args, **kwargs):
        return self.D(self.augment(x), *args, **kwargs)

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("D"), name)


def build_augment(method: str, device, seed: int, target: float = 0.6, kimg: float = 100) -> Augment | None:
    """The augmentation `--augment METHOD` names (None for "none"), its draws seeded by `seed`."""
    if method == "none":
        return None
    if method == "diffaug":
        return DiffAugment(device, seed)
    return AdaptiveAugment(device, seed, target, kimg)


def seed_for(seed: int) -> int:
    """The augmentation's own seed, apart from the run's other generators."""
    return (seed * 2_654_435_761 + 0xA06) % (2**63 - 1)

