"""GAIN (Yoon, Jordon & van der Schaar, ICML 2018): the networks and a fast training loop.

The data reach this module already encoded (see `gantools.impute.schema`): a float32 matrix
with the numeric columns min-max normalised to [0, 1] first, then one one-hot block per
categorical column, 0 in missing cells, and a mask of the same shape (1 observed, 0 missing;
a categorical cell's mask is repeated over its block).

Networks, as the authors' code builds them: 3-layer MLPs, hidden width = dim, ReLU, weights
drawn N(0, 2/fan_in) ("xavier_init" in their code), zero biases. G reads [data, mask] and
ends in a sigmoid for numeric columns and a softmax per categorical block; D reads
[imputed, hint] and returns one logit per encoded entry.

Why the loop is fast: the networks are tiny (16 wide for Letter), so a plain PyTorch loop
spends its time in per-operation overhead (autograd graph building, optimizer bookkeeping,
per-iteration sampling calls), and with more than one intra-op thread, in thread hand-offs.
This loop

* draws the batches, noise, hints and (for the `gantools` variant) the extra drop masks for
  many iterations at once, and precomputes everything that depends only on them;
* computes the gradients by hand (the networks are three dense layers; `tests/test_impute_gain.py`
  checks them against autograd), with `out=` into one flat gradient buffer per network;
* keeps each network's parameters as views of one flat tensor, so Adam is one fused call;
* runs on one intra-op thread on the CPU (restored afterwards).

Hand-written gradients instead of autograd only because it is measurably faster: 10,000
iterations on Letter (20000 x 16, batch 128) take 5.5 s here against 26.0 s for the plain
autograd + torch.optim.Adam loop of bench/impute.py, run in the same process (4.8x; 2-core CPU
container, 2026-11-23, bench/RESULTS.md). tests/test_impute_gain.py checks every gradient
against autograd.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Callable

import torch
from torch import nn

# Logits of categorical blocks are clamped to this range before the softmax, so one exp per
# entry and two small matrix products make every block's softmax at once without overflow or
# underflow (a softmax with logits 60 apart is one-hot to float32 anyway).
CAT_LOGIT_CLAMP = 30.0

from gantools.impute.params import DEFAULT_VARIANT, VARIANTS, GainParams  # noqa: F401  (re-exported)


# --------------------------------------------------------------------------- networks


def _group_matrix(cat_sizes: list[int]) -> torch.Tensor:
    """S (sum(cat_sizes) x len(cat_sizes)): S[j, k] = 1 when encoded entry j is in block k."""
    total = sum(cat_sizes)
    s = torch.zeros(total, len(cat_sizes))
    start = 0
    for k, size in enumerate(cat_sizes):
        s[start:start + size, k] = 1.0
        start += size
    return s


def _block_softmax(a: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Softmax within each block of columns of `a` (blocks given by the indicator matrix `s`)."""
    e = a.clamp(-CAT_LOGIT_CLAMP, CAT_LOGIT_CLAMP).exp()
    return e / ((e @ s) @ s.t())


class _MLP3(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.l1 = nn.Linear(2 * dim, hidden)
        self.l2 = nn.Linear(hidden, hidden)
        self.l3 = nn.Linear(hidden, dim)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        with torch.no_grad():
            for layer in (self.l1, self.l2, self.l3):
                fan_in = layer.weight.shape[1]
                layer.weight.normal_(0.0, math.sqrt(2.0 / fan_in), generator=generator)
                layer.bias.zero_()

    def logits(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        x = torch.cat([a, b], dim=1)
        return self.l3(torch.relu(self.l2(torch.relu(self.l1(x)))))


class GainGenerator(_MLP3):
    """G([data, mask]): sigmoid for the first `n_num` entries, a softmax per categorical block."""

    def __init__(self, dim: int, hidden: int, n_num: int | None = None, cat_sizes: list[int] | None = None):
        super().__init__(dim, hidden)
        self.dim, self.n_num = dim, dim if n_num is None else n_num
        self.cat_sizes = list(cat_sizes or [])
        if self.n_num + sum(self.cat_sizes) != dim:
            raise ValueError(f"n_num {self.n_num} + categorical sizes {self.cat_sizes} != dim {dim}")
        self.register_buffer("groups", _group_matrix(self.cat_sizes), persistent=False)

    def head(self, a: torch.Tensor) -> torch.Tensor:
        if not self.cat_sizes:
            return torch.sigmoid(a)
        return torch.cat([torch.sigmoid(a[:, :self.n_num]), _block_softmax(a[:, self.n_num:], self.groups)], 1)

    def forward(self, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        return self.head(self.logits(x, m))


class GainDiscriminator(_MLP3):
    """D([imputed, hint]) -> one logit per encoded entry (the probability it was observed)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__(dim, hidden)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return self.logits(x, h)


def build_networks(hp: dict, data: dict) -> tuple[GainGenerator, GainDiscriminator]:
    """G and D for a checkpoint's hparams and table data spec."""
    dim = int(data["dim"])
    hidden = int(hp["hidden"]) if hp.get("hidden") else max(1, int(round(hp.get("hidden_mult", 1.0) * dim)))
    cat_sizes = [int(c) for c in data.get("cat_sizes", [])]
    return GainGenerator(dim, hidden, dim - sum(cat_sizes), cat_sizes), GainDiscriminator(dim, hidden)


# --------------------------------------------------------------------------- training


def _flatten_into(module: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Re-home the module's parameters as views of one flat tensor; return (flat, flat_grad)."""
    params = list(module.parameters())
    total = sum(p.numel() for p in params)
    flat = torch.empty(total, dtype=params[0].dtype, device=params[0].device)
    grad = torch.zeros_like(flat)
    offset = 0
    for p in params:
        n = p.numel()
        flat[offset:offset + n].copy_(p.data.reshape(-1))
        p.data = flat[offset:offset + n].view_as(p)
        offset += n
    return flat, grad


def _grad_views(module: nn.Module, grad: torch.Tensor) -> list[torch.Tensor]:
    views, offset = [], 0
    for p in module.parameters():
        n = p.numel()
        views.append(grad[offset:offset + n].view_as(p))
        offset += n
    return views


class _Adam:
    """Adam over one flat parameter tensor (torch defaults: lr 1e-3, betas 0.9/0.999, eps 1e-8)."""

    def __init__(self, flat: torch.Tensor, grad: torch.Tensor, lr: float):
        self.flat, self.grad, self.lr = flat, grad, lr
        self.m = torch.zeros_like(flat)
        self.v = torch.zeros_like(flat)
        self.step_t = torch.zeros((), dtype=torch.float32, device=flat.device)
        self._fused = hasattr(torch, "_fused_adam_")

    def step(self) -> None:
        self.step_t += 1
        if self._fused:
            torch._fused_adam_([self.flat], [self.grad], [self.m], [self.v], [], [self.step_t],
                               lr=self.lr, beta1=0.9, beta2=0.999, weight_decay=0.0, eps=1e-8,
                               amsgrad=False, maximize=False)
            return
        t = float(self.step_t)
        self.m.lerp_(self.grad, 0.1)
        self.v.mul_(0.999).addcmul_(self.grad, self.grad, value=0.001)
        denom = self.v.sqrt().div_(math.sqrt(1 - 0.999 ** t)).add_(1e-8)
        self.flat.addcdiv_(self.m, denom, value=-self.lr / (1 - 0.9 ** t))

    def state(self) -> dict:
        return {"m": self.m.clone(), "v": self.v.clone(), "step": int(self.step_t)}


@dataclass
class Batch:
    """Everything one iteration needs, precomputed from its rows, noise, hints and drops."""

    gin: torch.Tensor  # [x_in, m_in] with x_in = m_in*x + (1-m_in)*noise       (B, 2d)
    din: torch.Tensor  # [m_in*x, hint]; the first half becomes the imputed x_hat  (B, 2d)
    om: torch.Tensor  # 1 - m_in                                                  (B, d)
    d_target: torch.Tensor  # -m_in / (B d): D loss gradient is p/(Bd) + this       (B, d)
    g_adv: torch.Tensor  # om / (B d): G adversarial gradient is (p - 1) * this        (B, d)
    cm: torch.Tensor  # reconstruction weight on observed cells                      (B, d)
    cmx: torch.Tensor  # cm * x                                                       (B, d)
    mx_in: torch.Tensor  # m_in * x (the observed part of x_hat)                      (B, d)


@dataclass
class FitResult:
    G: GainGenerator
    D: GainDiscriminator
    seconds: float
    iterations: int  # the iterations of the G kept (the chosen count when selected on validation)
    history: list = field(default_factory=list)  # [iteration, validation RMSE] every eval_every
    opt_state: dict = field(default_factory=dict)
    validation: dict = field(default_factory=dict)  # rate, cells, rmse, residuals (see Validation)
    members: list = field(default_factory=list)  # more Gs (other widths) whose outputs G's is averaged with
    weights: list = field(default_factory=lambda: [1.0])  # of G's outputs and the members', in the average
    averaged: bool = False  # G is the moving average of the iterates' weights (it scored better)


def cell_weight(d: int, n_num: int, cat_sizes: list[int], device) -> torch.Tensor:
    """Each encoded entry's share of a cell: 1 for a numeric entry, 1/size in a categorical block."""
    w = torch.ones(d, device=device)
    start = n_num
    for size in cat_sizes:
        w[start:start + size] = 1.0 / size
        start += size
    return w


def hold_out(m: torch.Tensor, n_num: int, cat_sizes: list[int], rate: float, seed: int) -> torch.Tensor:
    """Entries of `rate` of the observed cells, drawn per cell (seeded), to hold out of training; each
    column keeps at least one observed cell. A categorical cell is held out over its whole block."""
    reps = torch.tensor([1] * n_num + list(cat_sizes))
    starts = torch.cumsum(reps, 0) - reps
    cells = m[:, starts.to(m.device)].cpu() > 0
    u = torch.rand(cells.shape, generator=torch.Generator().manual_seed(int(seed) + 1))
    held = cells & (u < rate)
    for j in torch.nonzero((cells & ~held).sum(0) == 0).flatten().tolist():
        rows = torch.nonzero(held[:, j]).flatten()
        if len(rows):
            held[rows[0], j] = False
    return held.to(m.dtype).repeat_interleave(reps, dim=1).to(m.device)


class Validation:
    """Observed cells held out of training, on which G is scored while it trains.

    `v` marks the held-out entries (a categorical cell's mask over its whole block). The score is
    an RMSE over the held-out cells: a numeric cell's squared error in min-max units, a categorical
    cell's half squared distance between G's probabilities and the one-hot label (both in [0, 1]).
    """

    def __init__(self, x: torch.Tensor, m: torch.Tensor, v: torch.Tensor, cell_weight: torch.Tensor,
                 n_num: int, seed: int):
        rows = v.any(1)
        self.x, self.v, self.n_num = x[rows], v[rows], n_num
        m_train = (m - v)[rows]
        self.cells = max(1, int(round(float((self.v * cell_weight).sum()))))
        w = torch.full((x.shape[1],), 0.5, device=x.device)
        w[:n_num] = 1.0
        self.weight = self.v * w
        gen = torch.Generator().manual_seed(int(seed) + 2)
        noise = torch.rand(self.x.shape, generator=gen).mul_(0.01).to(x.device)
        self.x_in, self.m_in = m_train * self.x + (1 - m_train) * noise, m_train

    def predict(self, G: GainGenerator | list[GainGenerator], weights: list[float] | None = None) -> torch.Tensor:
        """G's values on the held-out cells' rows (a list of Gs: the weighted mean of theirs)."""
        return generate_on(G, self.x_in, self.m_in, weights)

    def score(self, g: torch.Tensor) -> float:
        """The RMSE of values `g` on the held-out cells."""
        err = (g - self.x).square_().mul_(self.weight).sum()
        return math.sqrt(float(err) / self.cells)

    def rmse(self, G: GainGenerator | list[GainGenerator], weights: list[float] | None = None) -> float:
        return self.score(self.predict(G, weights))

    def errors(self, G: GainGenerator | list[GainGenerator], weights: list[float] | None = None,
               most: int = 1000) -> tuple[list[list[float]], list[list[float]]]:
        """Per numeric entry, G's values on the held-out cells and their errors (true - G), in
        min-max units, ordered by G's value; at most about `most` of them (every k-th)."""
        g = self.predict(G, weights)[:, :self.n_num]
        r = self.x[:, :self.n_num] - g
        held = self.v[:, :self.n_num] > 0
        values, errors = [], []
        for k in range(self.n_num):
            order = torch.argsort(g[held[:, k], k])
            order = order[::max(1, -(-len(order) // most))]
            values.append([round(float(v), 4) for v in g[held[:, k], k][order]])
            errors.append([round(float(v), 4) for v in r[held[:, k], k][order]])
        return values, errors


class GainTrainer:
    """The GAIN loop with hand-written gradients; see the module docstring."""

    def __init__(self, x: torch.Tensor, m: torch.Tensor, n_num: int, cat_sizes: list[int],
                 hp: GainParams, generator: torch.Generator):
        if x.shape != m.shape or x.dim() != 2:
            raise ValueError("x and m must be matrices of the same shape")
        self.x, self.m = x, m
        self.n, self.d = x.shape
        self.n_num, self.cat_sizes = n_num, list(cat_sizes)
        self.hp, self.gen = hp, generator
        self.B = max(1, min(int(hp.batch_size), self.n))
        hidden = hp.hidden_width(self.d)
        dev = x.device
        self.G = GainGenerator(self.d, hidden, n_num, cat_sizes).to(dev)
        self.D = GainDiscriminator(self.d, hidden).to(dev)
        # Seeded init on the CPU generator, then moved (same weights on every device).
        cpu_gen = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device)))
        for net in (self.G, self.D):
            net.to("cpu").reset_parameters(cpu_gen)
            net.to(dev)
        self.G.groups = self.G.groups.to(dev)
        self.g_flat, self.g_grad = _flatten_into(self.G)
        self.d_flat, self.d_grad = _flatten_into(self.D)
        self.gw = _grad_views(self.G, self.g_grad)  # W1 b1 W2 b2 W3 b3
        self.dw = _grad_views(self.D, self.d_grad)
        self.opt_g = _Adam(self.g_flat, self.g_grad, hp.lr)
        self.opt_d = _Adam(self.d_flat, self.d_grad, hp.lr)
        self.cell_weight = cell_weight(self.d, n_num, cat_sizes, dev)
        # Reconstruction gradient scale: d/dg alpha*sum(m (x-g)^2)/N = 2 alpha m (g-x)/N for a
        # numeric entry; d/dlogits alpha*CE/N = alpha m (g-y)/N for a categorical block.
        self.rec_scale = torch.where(torch.arange(self.d, device=dev) < n_num, 2.0, 1.0) * hp.alpha
        self._perm = torch.empty(0, dtype=torch.long, device=dev)
        # Iterations per chunk of presampled batches: ~8M floats of buffers at most.
        self.chunk = int(max(1, min(500, 8_000_000 // (self.B * self.d * 10))))
        # Where training stands (train() may be called again to go on): iterations done, the
        # validation history, the best score, its iteration and G's parameters then, seconds spent.
        self.done, self.history, self.stopped, self.seconds = 0, [], False, 0.0
        self.best, self.best_at, self.best_g, self.best_averaged = math.inf, 0, None, False
        self.g_ema = self.g_flat.clone() if hp.ema_half_life > 0 else None

    # -- sampling ---------------------------------------------------------------
    def _indices(self, count: int) -> torch.Tensor:
        """`count` row indices from successive random permutations (an epoch at a time)."""
        parts, have = [self._perm], self._perm.numel()
        while have < count:
            p = torch.randperm(self.n, generator=self.gen, device=self.gen.device).to(self.x.device)
            parts.append(p)
            have += p.numel()
        allidx = torch.cat(parts)
        self._perm = allidx[count:]
        return allidx[:count]

    def sample_chunk(self, t: int) -> list[Batch]:
        """Draw and precompute `t` iterations' batches at once."""
        B, d, hp, dev = self.B, self.d, self.hp, self.x.device
        gen = self.gen

        def rand(*shape):
            return torch.rand(*shape, generator=gen, device=gen.device).to(dev)

        idx = self._indices(t * B)
        x = self.x[idx].view(t, B, d)
        m = self.m[idx].view(t, B, d)
        m_in = m
        if hp.drop_rate > 0:
            keep = self._cell_bernoulli(rand(t, B, self.n_cells()), 1.0 - hp.drop_rate)
            m_in = m * keep
        noise = rand(t, B, d).mul_(0.01)
        hint = m_in * self._cell_bernoulli(rand(t, B, self.n_cells()), hp.hint_rate)
        om = 1.0 - m_in
        mx_in = m_in * x
        gin = torch.cat([torch.addcmul(mx_in, om, noise), m_in], 2)
        din = torch.cat([mx_in, hint], 2)
        bd = 1.0 / (B * d)
        d_target = m_in * -bd
        g_adv = om * bd
        # Cells in the reconstruction loss: every observed cell, those G was shown weighted by
        # kept_weight (1 in the paper, where no cell is hidden from G).
        w_rec = m if hp.kept_weight == 1.0 else m - (1.0 - hp.kept_weight) * m_in
        n_obs = (w_rec * self.cell_weight).sum((1, 2)).clamp_min(1e-6)
        cm = w_rec * (self.rec_scale / n_obs.view(t, 1, 1))
        cmx = cm * x
        return [Batch(gin[i], din[i], om[i], d_target[i], g_adv[i], cm[i], cmx[i], mx_in[i])
                for i in range(t)]

    def n_cells(self) -> int:
        return self.n_num + len(self.cat_sizes)

    def _cell_bernoulli(self, u: torch.Tensor, p: float) -> torch.Tensor:
        """Per-cell Bernoulli(p) draws `u < p`, expanded to the encoded entries."""
        b = (u < p).to(self.x.dtype)
        if not self.cat_sizes:
            return b
        reps = torch.tensor([1] * self.n_num + self.cat_sizes, device=b.device)
        return b.repeat_interleave(reps, dim=-1)

    # -- the two half-steps ---------------------------------------------------------
    def g_forward(self, b: Batch) -> tuple:
        G = self.G
        h1 = torch.addmm(G.l1.bias, b.gin, G.l1.weight.t()).relu_()
        h2 = torch.addmm(G.l2.bias, h1, G.l2.weight.t()).relu_()
        a3 = torch.addmm(G.l3.bias, h2, G.l3.weight.t())
        if self.cat_sizes:
            g = G.head(a3)
        else:
            g = a3.sigmoid_()
        return h1, h2, g

    def d_forward(self, din: torch.Tensor) -> tuple:
        D = self.D
        r1 = torch.addmm(D.l1.bias, din, D.l1.weight.t()).relu_()
        r2 = torch.addmm(D.l2.bias, r1, D.l2.weight.t()).relu_()
        p = torch.addmm(D.l3.bias, r2, D.l3.weight.t()).sigmoid_()
        return r1, r2, p

    def d_grads(self, b: Batch, g: torch.Tensor) -> torch.Tensor:
        """Fill the D gradient of the masked cross-entropy; return D's output probabilities."""
        din = b.din
        din[:, :self.d].copy_(b.mx_in).addcmul_(b.om, g)  # x_hat = m*x + (1-m)*G
        r1, r2, p = self.d_forward(din)
        dl = torch.add(b.d_target, p, alpha=1.0 / (self.B * self.d))  # (p - m)/(Bd)
        W1, B1, W2, B2, W3, B3 = self.dw
        D = self.D
        torch.mm(dl.t(), r2, out=W3)
        torch.sum(dl, 0, out=B3)
        dr2 = torch.ops.aten.threshold_backward(dl @ D.l3.weight, r2, 0)
        torch.mm(dr2.t(), r1, out=W2)
        torch.sum(dr2, 0, out=B2)
        dr1 = torch.ops.aten.threshold_backward(dr2 @ D.l2.weight, r1, 0)
        torch.mm(dr1.t(), din, out=W1)
        torch.sum(dr1, 0, out=B1)
        return p

    def g_grads(self, b: Batch, h1: torch.Tensor, h2: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """Fill the G gradient (adversarial term through the current D, plus alpha * reconstruction)."""
        D, G, d = self.D, self.G, self.d
        r1, r2, p = self.d_forward(b.din)
        dl = torch.addcmul(torch.neg(b.g_adv), p, b.g_adv)  # -(1-m)(1-p)/(Bd)
        dr2 = torch.ops.aten.threshold_backward(dl @ D.l3.weight, r2, 0)
        dr1 = torch.ops.aten.threshold_backward(dr2 @ D.l2.weight, r1, 0)
        dxh = dr1 @ D.l1.weight[:, :d]
        rec = torch.addcmul(torch.neg(b.cmx), b.cm, g)
        if not self.cat_sizes:
            da3 = torch.ops.aten.sigmoid_backward(rec.addcmul_(b.om, dxh), g)
        else:
            nn_ = self.n_num
            adv = b.om * dxh
            da3 = torch.empty_like(g)
            da3[:, :nn_] = torch.ops.aten.sigmoid_backward(adv[:, :nn_] + rec[:, :nn_], g[:, :nn_])
            gc, s = g[:, nn_:], G.groups
            dc = adv[:, nn_:]
            da3[:, nn_:] = gc * (dc - ((dc * gc) @ s) @ s.t()) + rec[:, nn_:]
        W1, B1, W2, B2, W3, B3 = self.gw
        torch.mm(da3.t(), h2, out=W3)
        torch.sum(da3, 0, out=B3)
        dh2 = torch.ops.aten.threshold_backward(da3 @ G.l3.weight, h2, 0)
        torch.mm(dh2.t(), h1, out=W2)
        torch.sum(dh2, 0, out=B2)
        dh1 = torch.ops.aten.threshold_backward(dh2 @ G.l2.weight, h1, 0)
        torch.mm(dh1.t(), b.gin, out=W1)
        torch.sum(dh1, 0, out=B1)
        return p

    def step(self, b: Batch) -> None:
        """One D and one G update; then G's weight average moves towards G (with ema_half_life)."""
        h1, h2, g = self.g_forward(b)
        self.d_grads(b, g)
        self.opt_d.step()
        self.g_grads(b, h1, h2, g)
        self.opt_g.step()
        if self.g_ema is not None:
            half_life = min(self.hp.ema_half_life, self.hp.ema_rampup * float(self.opt_g.step_t))
            self.g_ema.lerp_(self.g_flat, 1.0 - 0.5 ** (1.0 / max(half_life, 1e-3)))

    def _ema_score(self, val: Validation) -> float:
        """The validation RMSE of the averaged G (G's own weights are put back)."""
        own = self.g_flat.clone()
        self.g_flat.copy_(self.g_ema)
        try:
            return val.rmse(self.G)
        finally:
            self.g_flat.copy_(own)

    def losses(self, b: Batch) -> dict:
        """The losses on one batch (for progress and tests; not used by the loop)."""
        with torch.no_grad():
            _, _, g = self.g_forward(b)
            din = b.din.clone()
            din[:, :self.d] = b.mx_in + b.om * g
            _, _, p = self.d_forward(din)
            m_in = -b.d_target * (self.B * self.d)
            eps = 1e-8
            d_loss = -(m_in * torch.log(p + eps) + b.om * torch.log(1 - p + eps)).mean()
            g_adv = -(b.om * torch.log(p + eps)).mean()
            mse = ((b.cmx - b.cm * g) ** 2 / b.cm.clamp_min(1e-12)).sum() / (b.cm > 0).sum().clamp_min(1)
            return {"d_loss": float(d_loss), "g_adv": float(g_adv), "rec": float(mse)}

    def train(self, until: int, progress: Callable[[int, int], None] | None = None,
              val: Validation | None = None) -> None:
        """Train on up to iteration `until` (of `iterations`). With `val`, score G on it every
        `eval_every` iterations; with `select_iterations`, remember the G where the mean of the last
        `smooth` scores is lowest, and stop for good `patience` iterations after it."""
        hp = self.hp
        iters = int(hp.iterations)
        if hp.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"unknown lr_schedule {hp.lr_schedule!r}")
        cosine = hp.lr_schedule == "cosine"
        select = val is not None and hp.select_iterations
        every = int(hp.eval_every) if val is not None else max(1, iters)
        t0 = time.perf_counter()
        threads = torch.get_num_threads()
        if self.x.device.type == "cpu":
            torch.set_num_threads(1)  # tiny matrices: thread hand-offs cost more than they give
        try:
            with torch.no_grad():
                until = min(until, iters)
                while self.done < until and not self.stopped:
                    done = self.done
                    t = min(self.chunk, until - done, every - done % every)
                    for i, b in enumerate(self.sample_chunk(t)):
                        if cosine:
                            lr = 0.5 * hp.lr * (1.0 + math.cos(math.pi * (done + i) / iters))
                            self.opt_g.lr = self.opt_d.lr = lr
                        self.step(b)
                    self.done = done = done + t
                    if progress is not None:
                        progress(done, iters)
                    if val is not None and (done % every == 0 or done == iters):
                        # G scored is the better of the iterate and (with ema_half_life) the average
                        raw = val.rmse(self.G)
                        mean = self._ema_score(val) if self.g_ema is not None else math.inf
                        averaged = mean < raw
                        self.history.append([done, min(raw, mean)])
                        # selection reads the mean of the last `smooth` scores: one lucky score on
                        # a few hundred cells is noise, not a better G
                        score = sum(h[1] for h in self.history[-hp.smooth:]) / len(self.history[-hp.smooth:])
                        if select and score < self.best:
                            kept = self.g_ema if averaged else self.g_flat
                            self.best, self.best_at, self.best_g = score, done, kept.clone()
                            self.best_averaged = averaged
                        self.stopped = select and done - self.best_at >= hp.patience
        finally:
            torch.set_num_threads(threads)
            self.seconds += time.perf_counter() - t0

    def result(self, val: Validation | None = None) -> FitResult:
        """The trained networks (G: the best-scoring iterate when selecting), ending training."""
        averaged = self.best_averaged
        if self.best_g is not None:
            self.g_flat.copy_(self.best_g)
        elif self.g_ema is not None:  # the average, unless the iterate scores better on `val`
            with torch.no_grad():
                averaged = val is None or self._ema_score(val) < val.rmse(self.G)
            if averaged:
                self.g_flat.copy_(self.g_ema)
        G, D = self.G, self.D
        # Give the networks their own (non-shared) parameter storage again.
        for net in (G, D):
            for p in net.parameters():
                p.data = p.data.clone()
        validation = {}
        if val is not None:
            with torch.no_grad():
                values, errors = val.errors(G)
                validation = {"cells": val.cells, "rmse": val.rmse(G), "predictions": values, "residuals": errors}
        return FitResult(G, D, self.seconds, self.best_at if self.best_g is not None else self.done,
                         history=self.history, validation=validation, averaged=averaged,
                         opt_state={"opt_G": self.opt_g.state(), "opt_D": self.opt_d.state()})

    def fit(self, progress: Callable[[int, int], None] | None = None,
            val: Validation | None = None) -> FitResult:
        """Train for `iterations` (see `train`) and return the result."""
        self.train(int(self.hp.iterations), progress, val)
        return self.result(val)


def fit(x: torch.Tensor, m: torch.Tensor, n_num: int, cat_sizes: list[int], hp: GainParams,
        seed: int = 0, progress: Callable[[int, int], None] | None = None) -> FitResult:
    """Train G and D on encoded data `x` (0 where missing) with mask `m`; seeded.

    With a `validation_rate`, that fraction of the observed cells is held out and G scored on it
    (see GainTrainer.train). With `select_iterations` and `width_choices` too, one G per hidden width
    (the multipliers whose width lies within `width_range`) trains `screen_iterations`, and only the
    best-scoring one trains on; `validation` records the widths tried and the multiplier chosen. On
    a table of at most `ensemble_rows` rows every width trains on instead (each to its own best count)
    and the returned G's outputs are averaged with others' (`members`), weighted as chosen on the
    held-out cells (`_ensemble_weights`). On a table of at most `refit_rows` rows, each G kept is
    then trained afresh on every observed cell with its width and count; on such a table, with
    `ema_half_life`, each G scored is the better of the iterate and the moving average of its
    weights (see GainTrainer.train), and a refit returns the average if that was the better."""
    gen_device = x.device if x.device.type != "cpu" else "cpu"
    val, x_all, m_all, n_rows = None, x, m, x.shape[0]
    if n_rows > hp.refit_rows:
        # no weight average above the refit size: there G is still improving at the budget (full
        # Letter: the average lagged, 0.1001 against 0.0988), and scoring it costs time
        hp = replace(hp, ema_half_life=0)
    if hp.validation_rate > 0:
        v = hold_out(m, n_num, cat_sizes, hp.validation_rate, seed)
        if v.any():
            val = Validation(x, m, v, cell_weight(x.shape[1], n_num, cat_sizes, x.device), n_num, seed)
            m = m - v
            x = x * m
    d = x.shape[1]
    lo, hi = hp.width_range
    widths = [w for w in hp.width_choices if lo <= w * d <= hi] or [hp.hidden_mult]
    if val is None or not hp.select_iterations or hp.hidden or len(widths) < 2:
        gen = torch.Generator(device=gen_device).manual_seed(int(seed))
        results, mults = [GainTrainer(x, m, n_num, cat_sizes, hp, gen).fit(progress, val)], [hp.hidden_mult]
    else:
        trainers = [GainTrainer(x, m, n_num, cat_sizes, replace(hp, hidden_mult=float(w)),
                                torch.Generator(device=gen_device).manual_seed(int(seed))) for w in widths]
        for tr in trainers:
            tr.train(int(hp.screen_iterations), None, val)
        scores = [tr.best for tr in trainers]
        best = min(range(len(trainers)), key=scores.__getitem__)
        kept = [best] + [k for k in range(len(trainers)) if k != best and n_rows <= hp.ensemble_rows]
        for k in kept:
            trainers[k].train(int(hp.iterations), progress, val)
        results, mults = [trainers[k].result(val) for k in kept], [float(widths[k]) for k in kept]
        weights = [1.0]
        if len(kept) > 1:
            with torch.no_grad():
                weights = _ensemble_weights([val.predict(r.G) for r in results], val)
            order = sorted((i for i in range(len(kept)) if weights[i] > 0), key=lambda i: -weights[i])
            results, mults, weights = [results[i] for i in order], [mults[i] for i in order], [weights[i] for i in order]
        results[0].seconds = sum(tr.seconds for tr in trainers)
        results[0].weights = weights
        results[0].validation.update(hidden_mult=mults[0],
                                     widths_tried=[[float(w), sc] for w, sc in zip(widths, scores)])
        if len(results) > 1:
            results[0].validation["ensemble"] = [[m, r.iterations, w] for m, r, w in zip(mults, results, weights)]
    res = results[0]
    if val is not None:
        res.validation.update(rate=hp.validation_rate, averaged=res.averaged)
        if len(results) > 1:
            with torch.no_grad():
                Gs = [r.G for r in results]
                values, errors = val.errors(Gs, res.weights)
                res.validation.update(rmse=val.rmse(Gs, res.weights), predictions=values, residuals=errors)
        if hp.select_iterations and n_rows <= hp.refit_rows and res.iterations > 0:
            # A small table misses its held-out cells most: train afresh on every observed cell,
            # with the chosen widths and counts (the errors --draws uses stay those measured).
            seconds = res.seconds
            for i, (r, mult) in enumerate(zip(results, mults)):
                chosen = replace(hp, iterations=r.iterations, hidden_mult=mult,
                                 ema_half_life=hp.ema_half_life if r.averaged else 0)
                gen = torch.Generator(device=gen_device).manual_seed(int(seed))
                again = GainTrainer(x_all, m_all, n_num, cat_sizes, chosen, gen).fit(progress)
                seconds += again.seconds
                results[i] = again
            again = results[0]
            again.seconds, again.weights = seconds, res.weights
            again.history, again.validation = res.history, dict(res.validation, refit=True)
            res = again
    res.members = [r.G for r in results[1:]]
    return res


def _ensemble_weights(preds: list[torch.Tensor], val: Validation, rounds: int = 10) -> list[float]:
    """Weights of an average of the predictions, chosen on the held-out cells by greedy selection with
    replacement (Caruana et al. 2004): start from the best one, add the one that lowers the average's
    RMSE most, stop when none does; a prediction's weight is the share of picks it got."""
    counts, total, mean, best = [0] * len(preds), 0, None, math.inf
    for _ in range(rounds):
        score, i = min((val.score(p if mean is None else (mean * total + p) / (total + 1)), i)
                       for i, p in enumerate(preds))
        if score >= best:
            break
        mean = preds[i] if mean is None else (mean * total + preds[i]) / (total + 1)
        counts[i], total, best = counts[i] + 1, total + 1, score
    return [c / total for c in counts]


def generate_on(G: GainGenerator | list[GainGenerator], x_in: torch.Tensor, m: torch.Tensor,
                weights: list[float] | None = None) -> torch.Tensor:
    """G([x_in, m]); for a list of Gs, the mean of their values weighted by `weights` (default equal)."""
    Gs = G if isinstance(G, list) else [G]
    weights = weights or [1.0 / len(Gs)] * len(Gs)
    return sum(w * g(x_in, m) for g, w in zip(Gs, weights))


@torch.no_grad()
def generate(G: GainGenerator | list[GainGenerator], x: torch.Tensor, m: torch.Tensor, seed: int = 0,
             batch: int = 65536, weights: list[float] | None = None) -> torch.Tensor:
    """G's values for every entry: x filled with U(0, 0.01) noise where m is 0, then G([x, m]);
    for a list of Gs, the weighted mean of their values on the same input (see generate_on)."""
    Gs = G if isinstance(G, list) else [G]
    gen = torch.Generator(device="cpu").manual_seed(int(seed) + 1)
    out = torch.empty_like(x)
    for g in Gs:
        g.eval()
    for s in range(0, x.shape[0], batch):
        xb, mb = x[s:s + batch], m[s:s + batch]
        z = torch.rand(xb.shape, generator=gen).mul_(0.01).to(x.device)
        out[s:s + batch] = generate_on(Gs, mb * xb + (1 - mb) * z, mb, weights)
    return out
