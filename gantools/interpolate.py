"""Walks through a generator's latent space: slerp/lerp on latents, paths, and their frames.

A path is a list of endpoint latents; `--steps K` frames run from one endpoint to the
next, both included, and consecutive segments share their endpoint frame, so a path
through N endpoints has (K-1)(N-1)+1 frames, and a looped one (back to the first)
(K-1)N frames: its last frame leads back into the first.

Endpoint latents are the ones `gantools sample --seed` uses, drawn by the model's prior
(the standard normal unless the model has its own): seed s's latent is
`latents(s, 1, z_dim)[0]`, and `--rows R --seed S` row r runs from
`latents(S, 2R)[2r]` to `[2r+1]`; interpolation returns the endpoints exactly at
t = 0 and t = 1, so endpoint frames are the `sample` images for those latents.

Conditional models: the class stays fixed along a latent path, or a class path
interpolates between two classes at a fixed z. A class path passes `G(z, w)` a float
tensor `w` (N x num_classes) of class weights (a soft one-hot) instead of int64
labels; a generator that embeds labels (`embedding(labels)` = `onehot @ weight`)
supports it by declaring `class_weights = True` and using `w @ embedding.weight`, which
is exactly the linear interpolation of the two class embeddings.

Latent codes (InfoGAN): the prior's other inputs (its draws besides z and labels) stay
those of a path's first endpoint. `--code K` sweeps the K-th continuous code from
CODE_RANGE[0] to CODE_RANGE[1] at the seed's z and codes, one row per value of the
first categorical code, like the figures of Chen et al. 2016.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from gantools.errors import UsageError

METHODS = ("slerp", "lerp")
PARALLEL_EPS = 1e-6  # slerp falls back to lerp where sin(angle) is below this
CODE_RANGE = (-2.0, 2.0)  # a continuous code's sweep: the paper's figures, past the prior's [-1, 1]


def lerp(a: np.ndarray, b: np.ndarray, t) -> np.ndarray:
    """Linear interpolation: one row (1-t)a + tb per fraction in `t`, exact at t = 0 and 1."""
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    t = np.atleast_1d(np.asarray(t, np.float64))[:, None]
    out = ((1 - t) * a64 + t * b64).astype(np.result_type(a, b))
    return _pin_ends(out, a, b, t[:, 0])


def slerp(a: np.ndarray, b: np.ndarray, t, eps: float = PARALLEL_EPS) -> np.ndarray:
    """Spherical interpolation along the great circle from a to b, one row per fraction in `t`.

    Falls back to `lerp` when a and b are nearly parallel or antiparallel (sin of
    their angle below `eps`), where the great circle is undefined. Exact at t = 0 and 1.
    """
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    na, nb = np.linalg.norm(a64), np.linalg.norm(b64)
    if na == 0 or nb == 0:
        return lerp(a, b, t)
    cos = float(np.clip(a64 @ b64 / (na * nb), -1.0, 1.0))
    omega = float(np.arccos(cos))
    sin = float(np.sin(omega))
    if sin < eps:
        return lerp(a, b, t)
    t64 = np.atleast_1d(np.asarray(t, np.float64))[:, None]
    out = (np.sin((1 - t64) * omega) * a64 + np.sin(t64 * omega) * b64) / sin
    return _pin_ends(out.astype(np.result_type(a, b)), a, b, t64[:, 0])


def _pin_ends(out: np.ndarray, a, b, t: np.ndarray) -> np.ndarray:
    out[t == 0] = a
    out[t == 1] = b
    return out


def interpolate(a: np.ndarray, b: np.ndarray, t, method: str = "slerp") -> np.ndarray:
    """`slerp` or `lerp` by name."""
    if method == "slerp":
        return slerp(a, b, t)
    if method == "lerp":
        return lerp(a, b, t)
    raise UsageError(f"unknown interpolation {method!r} (slerp, lerp)")


def parse_seeds(text: str) -> list[int]:
    """'3,17,42' -> [3, 17, 42]; at least two non-negative integers, else a UsageError."""
    parts = [p.strip() for p in text.split(",")]
    try:
        seeds = [int(p) for p in parts]
    except ValueError:
        raise UsageError(f"--seeds {text}: expected comma-separated integers like 3,17,42") from None
    if any(s < 0 for s in seeds):
        raise UsageError(f"--seeds {text}: seeds must be non-negative")
    if len(seeds) < 2:
        raise UsageError(f"--seeds {text}: a path needs at least two seeds")
    return seeds


def fractions(steps: int) -> np.ndarray:
    """The K fractions 0, 1/(K-1), ..., 1 of one segment (K >= 2)."""
    if steps < 2:
        raise UsageError(f"--steps {steps}: must be at least 2 (a segment's two endpoints)")
    return np.linspace(0.0, 1.0, steps)


@dataclass
class Row:
    """One row of frames: latents z (F x d) with, per frame, its segment and fraction in it."""

    z: np.ndarray
    segment: np.ndarray
    t: np.ndarray
    class_weights: np.ndarray | None = None  # F x num_classes for a class path
    label: int | None = None  # the fixed class of a latent path on a conditional model
    codes: dict[str, np.ndarray] = field(default_factory=dict)  # the prior's other inputs, F x ... each

    def __len__(self) -> int:
        return len(self.z)


def latent_path(points: list[np.ndarray], steps: int, method: str = "slerp", loop: bool = False) -> Row:
    """Frames through `points` in order (back to the first with `loop`), `steps` per segment."""
    if len(points) < 2:
        raise UsageError("a path needs at least two endpoints")
    t = fractions(steps)
    ends = list(points) + ([points[0]] if loop else [])
    zs, segs, ts = [], [], []
    n_seg = len(ends) - 1
    for s in range(n_seg):
        last = s == n_seg - 1 and not loop
        tt = t if last else t[:-1]  # the shared endpoint is the next segment's first frame
        zs.append(interpolate(ends[s], ends[s + 1], tt, method))
        segs.append(np.full(len(tt), s, np.int64))
        ts.append(tt)
    return Row(np.concatenate(zs).astype(np.float32), np.concatenate(segs), np.concatenate(ts).astype(np.float32))


def class_path(z: np.ndarray, a: int, b: int, num_classes: int, steps: int, loop: bool = False) -> Row:
    """Frames at a fixed z whose class weights move linearly from one-hot a to one-hot b."""
    ea, eb = np.eye(num_classes)[a], np.eye(num_classes)[b]
    p = latent_path([ea, eb], steps, "lerp", loop)
    zs = np.repeat(np.asarray(z, np.float32)[None], len(p), axis=0)
    return Row(zs, p.segment, p.t, class_weights=p.z.astype(np.float32))


@dataclass
class Plan:
    """The rows of an interpolation; every row has the same number of frames."""

    rows: list[Row] = field(default_factory=list)

    @property
    def frames_per_row(self) -> int:
        return len(self.rows[0])

    def arrays(self) -> dict[str, np.ndarray]:
        """Row-major per-frame arrays: z, t (fraction in its segment), segment, row."""
        out = {
            "z": np.concatenate([r.z for r in self.rows]),
            "t": np.concatenate([r.t for r in self.rows]),
            "segment": np.concatenate([r.segment for r in self.rows]),
            "row": np.concatenate([np.full(len(r), i, np.int64) for i, r in enumerate(self.rows)]),
        }
        if self.rows[0].class_weights is not None:
            out["class_weights"] = np.concatenate([r.class_weights for r in self.rows])
        for name in self.rows[0].codes:
            out[name] = np.concatenate([r.codes[name] for r in self.rows])
        return out

    def labels(self) -> np.ndarray | None:
        """Per-frame int64 labels of latent paths on a conditional model (None otherwise)."""
        if self.rows[0].label is None:
            return None
        return np.concatenate([np.full(len(r), r.label, np.int64) for r in self.rows])


def _hold(row: Row, codes: dict[str, np.ndarray]) -> Row:
    """`row` with the prior's other inputs fixed at `codes` (one endpoint's) in every frame."""
    row.codes = {k: np.repeat(v[None], len(row), axis=0) for k, v in codes.items()}
    return row


def code_sweep(z: np.ndarray, codes: dict[str, np.ndarray], code: int, cat_codes: list[int], steps: int,
               loop: bool = False) -> list[Row]:
    """Rows sweeping continuous code `code` (from 1) over CODE_RANGE at a fixed z and other codes, one
    row per value of the first categorical code (one row when there is none)."""
    sweep = latent_path([np.array([CODE_RANGE[0]]), np.array([CODE_RANGE[1]])], steps, "lerp", loop)
    rows = []
    for value in range(cat_codes[0]) if cat_codes else [None]:
        held = dict(codes)
        if value is not None:
            held["c_cat"] = held["c_cat"].copy()
            held["c_cat"][0] = value
        row = _hold(Row(np.repeat(z[None], len(sweep), axis=0), sweep.segment, sweep.t), held)
        row.codes["c_cont"][:, code - 1] = sweep.z[:, 0]
        rows.append(row)
    return rows


def plan(
    z_dim: int,
    steps: int,
    seeds: list[int] | None = None,
    rows: int = 4,
    seed: int = 0,
    method: str = "slerp",
    loop: bool = False,
    truncation: float | None = None,
    num_classes: int = 0,
    class_index: int | None = None,
    class_pair: tuple[int, int] | None = None,
    prior=None,
    code: int | None = None,
) -> Plan:
    """Build the rows for the CLI's options.

    With `seeds`: one path through those seeds' latents in order; with a class pair,
    one class-path row per seed at its latent. Otherwise `rows` paths between the
    endpoints `latents(seed, 2*rows)`, or `rows` class paths at `latents(seed, rows)`.
    On a conditional model (`num_classes` > 0) a latent path keeps `class_index`, or by
    default the class `gantools sample --seed` draws for the path's first endpoint. Latents
    come from `prior` (the checkpoint's, `generate.load_objective`) when given, with its other
    inputs (latent codes) held at the path's first endpoint's. With `code` K: `code_sweep` at
    the first draw of `seed`.
    """
    from gantools.generate import class_labels

    def draws(seed_: int, n: int) -> list[dict[str, np.ndarray]]:
        """The prior's other inputs (not z, not labels) of the seed's first n draws, one dict per draw."""
        if prior is None:
            return [{} for _ in range(n)]
        drawn = prior.draw(n, np.random.default_rng(seed_), truncation=truncation)
        return [{k: v[i].numpy() for k, v in drawn.items() if k not in ("z", "y")} for i in range(n)]

    def latents(seed_: int, n: int, width: int, trunc: float | None) -> np.ndarray:
        """The seed's first n latents from the model's prior (`prior`), else the standard normal."""
        from gantools.generate import latents as standard

        if prior is None:
            return standard(seed_, n, width, trunc)
        return prior.draw(n, np.random.default_rng(seed_), truncation=trunc)["z"].numpy()

    fractions(steps)  # validate before drawing anything
    if method not in METHODS:
        raise UsageError(f"unknown interpolation {method!r} (slerp, lerp)")
    if seeds is None and rows < 1:
        raise UsageError(f"--rows {rows}: must be at least 1")
    if code is not None:
        n_cont = getattr(prior, "cont_codes", 0)
        if not n_cont:
            raise UsageError(f"--code {code}: the model has no continuous latent codes")
        if not 1 <= code <= n_cont:
            raise UsageError(f"--code {code}: must be in 1..{n_cont} (the model's continuous codes)")
        return Plan(code_sweep(latents(seed, 1, z_dim, truncation)[0], draws(seed, 1)[0], code,
                               list(getattr(prior, "cat_codes", [])), steps, loop))
    if seeds is not None and len(seeds) < 2 and class_pair is None:
        raise UsageError("--seeds: a path needs at least two seeds")
    if class_pair is not None:
        if seeds is not None:
            zs = [latents(s, 1, z_dim, truncation)[0] for s in seeds]
            codes = [draws(s, 1)[0] for s in seeds]
        else:
            zs, codes = list(latents(seed, rows, z_dim, truncation)), draws(seed, rows)
        return Plan([_hold(class_path(z, *class_pair, num_classes, steps, loop), c) for z, c in zip(zs, codes)])
    if seeds is not None:
        p = _hold(latent_path([latents(s, 1, z_dim, truncation)[0] for s in seeds], steps, method, loop),
                  draws(seeds[0], 1)[0])
        if num_classes:
            p.label = int(class_labels(1, num_classes, class_index)[0])
        return Plan([p])
    ends, codes = latents(seed, 2 * rows, z_dim, truncation), draws(seed, 2 * rows)
    labels = class_labels(2 * rows, num_classes, class_index) if num_classes else None
    out = []
    for r in range(rows):
        p = _hold(latent_path([ends[2 * r], ends[2 * r + 1]], steps, method, loop), codes[2 * r])
        if labels is not None:
            p.label = int(labels[2 * r])
        out.append(p)
    return Plan(out)


def render(G, plan_: Plan, batch_size: int = 256, device="cpu", objective=None) -> Iterator[np.ndarray]:
    """Yield uint8 NHWC frame batches, row-major, from generator G (already in eval mode), fed by
    `objective.fake` (the checkpoint's, which joins latent codes) when given, else as G(z, labels)."""
    import torch

    from gantools.generate import to_uint8

    if batch_size < 1:
        raise UsageError(f"--batch-size {batch_size}: must be at least 1")
    arrays = plan_.arrays()
    z_all = arrays["z"]
    cond = arrays.get("class_weights")
    if cond is None:
        cond = plan_.labels()
    names = ["z", *plan_.rows[0].codes] + ([] if cond is None else ["y"])
    arrays["y"] = cond
    with torch.no_grad():
        for start in range(0, len(z_all), batch_size):
            batch = {k: torch.from_numpy(np.ascontiguousarray(arrays[k][start:start + batch_size])).to(device) for k in names}
            out = G(batch["z"], batch.get("y")) if objective is None else objective.fake(G, batch)
            yield to_uint8(out).permute(0, 2, 3, 1).cpu().numpy()


def tile_rows(frames: np.ndarray, rows: int, padding: int = 2) -> np.ndarray:
    """Row-major frames (rows*F x H x W x C) -> F GIF frames, each the rows side by side."""
    from gantools.data.writers import make_grid

    per_row = len(frames) // rows
    grid = frames.reshape(rows, per_row, *frames.shape[1:])
    if rows == 1:
        return grid[0]
    return np.stack([make_grid(grid[:, j], nrow=rows, padding=padding) for j in range(per_row)])


def zoom(images: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour enlargement of NHWC images by an integer factor."""
    if factor == 1:
        return images
    return images.repeat(factor, axis=1).repeat(factor, axis=2)
