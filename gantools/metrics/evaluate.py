"""Score generated images against real ones: the one code path behind `gantools evaluate`.

`evaluate(fake, real, metrics)` opens each side (a data source, a checkpoint to generate from, or
a statistics file), checks everything that can be checked before the Inception passes, extracts
features once per side, computes the registered metrics (gantools.registry.METRICS) and returns
the report that `gantools evaluate --json` prints.

    from gantools.metrics.evaluate import evaluate
    report = evaluate("ckpt.pt", "./real", ["fid", "kid"], n=10_000)
    report["metrics"]["fid"]
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from gantools import distributed
from gantools.log import info, warn

DEFAULT_GENERATED = 10_000
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")


def evaluate(fake: str, real: Optional[str] = None, metrics: str | Sequence[str] | None = None, *,
             n: Optional[int] = None, seed: int = 0, batch_size: Optional[int] = None, device: str = "auto",
             per_class: bool = False, save_stats: str | Path | None = None, overwrite: bool = False,
             inception_weights: str | Path | None = None, kid_subsets: int = 100, kid_subset_size: int = 1000,
             is_splits: int = 10, ema: bool = True) -> dict:
    """Score FAKE (against REAL where a metric needs it); returns the report dict (None on ranks other
    than 0 under torchrun: each rank extracts a share of the features, rank 0 scores them).

    `fake`/`real`: a data source (as `open_source` reads, "-" for the stream on stdin), a checkpoint
    (`n` images generated from `seed`, default 10,000) or a statistics file from `save_stats`.
    `metrics`: names or a comma-separated string of fid, is, kid, pr (default: fid with `real`).
    `n` on a data source uses its first n images. `save_stats` writes REAL's FID statistics
    (FAKE's when there is no REAL); an existing file there is refused before any work unless
    `overwrite`, and an input file always. Bad arguments raise UsageError, unreadable inputs GantoolsError.
    """
    from gantools.errors import UsageError
    from gantools.options import check_values

    save_stats = Path(save_stats) if save_stats is not None else None
    names = parse_metrics(metrics, real is not None, save_stats is not None)
    # the CLI's ranges (gantools.options), for API callers too
    check_values("evaluate", dict(n=n, seed=seed, batch_size=batch_size, kid_subsets=kid_subsets,
                                  kid_subset_size=kid_subset_size, is_splits=is_splits))
    if fake == "-" and real == "-":
        raise UsageError("FAKE and --real cannot both be '-' (there is one stdin)")
    group = distributed.join()  # under torchrun: every rank extracts a share, rank 0 scores (gantools.distributed)
    if group.world > 1 and "-" in (fake, real):
        raise UsageError("'-': the image stream on stdin cannot be shared by several processes; give a file")

    fake_kind = _classify(fake)
    real_kind = _classify(real) if real is not None else None
    _check_combination(names, fake, fake_kind, real, real_kind, per_class, save_stats)
    if save_stats is not None:
        from gantools.fsutil import check_target

        check_target(save_stats, overwrite, inputs=[fake, real])

    from gantools.registry import METRICS

    specs = {name: METRICS.get(name) for name in names}
    if (real is not None and not per_class and save_stats is None
            and not any(spec.needs_real for spec in specs.values())):
        warn(f"--real {real}: not used by --metrics {','.join(names)}; not read")
        real, real_kind = None, None
    stats_side = None
    if save_stats is not None:
        stats_side = "real" if real is not None and real_kind != "stats" else "fake"

    if "is" in names:
        from gantools.metrics.inception import is_weights_path

        is_weights_path(inception_weights)  # no weights: one line saying where to put them, before any work

    import torch  # noqa: F401  (after argument checks: a bad call fails fast)

    from gantools.generate import resolve_device

    device_ = distributed.local_device(resolve_device(device))
    want_logits = "is" in names
    ctx = _Context(device_, batch_size, inception_weights, want_logits, seed, n, ema, per_class)

    # Open both sides before extracting anything: a bad source, a statistics file made by another
    # network, or unlabelled data for --per-class is refused before minutes of Inception passes.
    fake_job = ctx.open(fake, fake_kind, "FAKE", logits=want_logits)
    real_job = ctx.open(real, real_kind, "REAL", logits=False) if real is not None else None
    fake_set = fake_job()
    real_set = real_job() if real_job is not None else None
    if not group.main:  # its share of the features went to rank 0, which scores and reports
        return None

    options = {"device": str(device_), "seed": seed, "kid_subsets": kid_subsets,
               "kid_subset_size": kid_subset_size, "is_splits": is_splits}
    uses_stats = "fid" in names or stats_side is not None
    for label, side in (("FAKE", fake_set), ("REAL", real_set)):
        if side is not None and uses_stats and side.features is not None and side.count < 2048:
            # Talk, not data: on stderr only, never in the --json object.
            warn(f"{label}: {side.count} images give a rank-deficient covariance (fewer than 2048): FID is "
                 "biased upward and comparable only with FIDs of the same count")

    results: dict = {}
    for name, spec in specs.items():
        info(f"computing {name}")
        results[name] = spec.compute(fake_set, real_set, options)

    per_class_result = None
    if per_class:
        from gantools.metrics.fid import per_class_fid

        per_class_result = per_class_fid(fake_set, real_set, str(device_))

    saved = None
    if stats_side is not None:
        from gantools.metrics.stats import save_stats as write_stats

        side = real_set if stats_side == "real" else fake_set
        saved = str(write_stats(save_stats, side.fid_stats(str(device_)), overwrite))
        info(f"saved the FID statistics of {side.source} ({side.count} images) to {saved}")

    return _report(names, results, per_class_result, fake, fake_kind, fake_set, real, real_kind, real_set,
                   ctx, options, saved)


# ----------------------------------------------------------------------------- arguments


def parse_metrics(metrics: str | Sequence[str] | None, have_real: bool, have_save: bool) -> list[str]:
    """Metric names from a list or a comma-separated string (aliases allowed), checked against METRICS."""
    from gantools.errors import UsageError
    from gantools.registry import METRICS

    if metrics is None:
        if have_real:
            return ["fid"]
        if have_save:
            return []
        raise UsageError("give --real REAL for FID (or --metrics is for the Inception Score alone)")
    names: list[str] = []
    for raw in (metrics.split(",") if isinstance(metrics, str) else metrics):
        name = raw.strip().lower()
        if not name:
            continue
        name = {"precision": "pr", "recall": "pr", "inception_score": "is", "isc": "is"}.get(name, name)
        if name not in METRICS:
            raise UsageError(f"--metrics {raw.strip()}: unknown metric (known: {', '.join(METRICS.names())})")
        if name not in names:
            names.append(name)
    if not names:
        raise UsageError("--metrics: name at least one of " + ", ".join(METRICS.names()))
    return names


def _classify(spec: str) -> str:
    """'stats' (a --save-stats file), 'checkpoint' (.pt), or 'images' (anything open_source reads)."""
    if spec == "-":
        return "images"
    p = Path(spec)
    if p.suffix.lower() in CHECKPOINT_SUFFIXES and p.is_file():
        return "checkpoint"
    if p.suffix.lower() == ".npz" and p.is_file():
        from gantools.metrics.stats import is_stats_file

        if is_stats_file(p):
            return "stats"
    return "images"


def _check_combination(names, fake, fake_kind, real, real_kind, per_class, save_stats) -> None:
    from gantools.errors import UsageError
    from gantools.registry import METRICS

    if real is None:
        needing = [m for m in names if METRICS.get(m).needs_real]
        if needing:
            raise UsageError(f"--metrics {','.join(needing)} needs --real REAL (only is works without it)")
    if fake_kind == "stats":
        other = [m for m in names if m != "fid"]
        if other:
            raise UsageError(f"{fake}: a statistics file holds FID statistics only; {','.join(other)} need(s) images")
    if real_kind == "stats":
        other = [m for m in names if m in ("kid", "pr")]
        if other:
            raise UsageError(f"--real {real}: a statistics file holds FID statistics only; "
                             f"{','.join(other)} need(s) images")
    if per_class and (real is None or "stats" in (fake_kind, real_kind)):
        raise UsageError("--per-class needs labelled images on both sides (not statistics files), and --real")
    if save_stats is not None:
        if save_stats.suffix.lower() != ".npz":
            raise UsageError(f"--save-stats {save_stats}: statistics files end in .npz")
        side_kind = real_kind if real is not None and real_kind != "stats" else fake_kind
        if side_kind == "stats":
            raise UsageError("--save-stats: both sides are already statistics files")


# ----------------------------------------------------------------------------- loading a side


def _check_stats_origin(fs) -> None:
    """A statistics file must come from this network and preprocessing (else FID would mix two scales)."""
    from gantools.errors import GantoolsError
    from gantools.metrics import inception
    from gantools.metrics.resize import PREPROCESSING_ID

    if fs.network != inception.NETWORK_ID:
        raise GantoolsError(f"{fs.source}: statistics made with network '{fs.network}', not with "
                            f"'{inception.NETWORK_ID}': refusing to compare statistics made differently")
    if fs.preprocessing != PREPROCESSING_ID:
        raise GantoolsError(f"{fs.source}: statistics made with preprocessing '{fs.preprocessing}', not with "
                            f"'{PREPROCESSING_ID}': refusing to compare statistics made differently")
    if fs.stats.mu.shape != (inception.FEATURE_DIM,):
        raise GantoolsError(f"{fs.source}: {fs.stats.mu.shape[0]}-d statistics, expected "
                            f"{inception.FEATURE_DIM}-d pool3 statistics")


class _Context:
    def __init__(self, device, batch_size, inception_weights, want_logits, seed, n, ema, per_class=False):
        self.device, self.batch_size = device, batch_size
        self.inception_weights = str(inception_weights) if inception_weights else None
        self.want_logits, self.seed, self.n, self.ema = want_logits, seed, n, ema
        self.per_class = per_class
        self.extractor = None
        self.rates: dict = {}

    def _extractor(self):
        if self.extractor is None:
            from gantools.metrics.features import Extractor

            self.extractor = Extractor(self.device, logits=self.want_logits, is_weights=self.inception_weights,
                                       batch_size=self.batch_size)
        return self.extractor

    def open(self, spec: str, kind: str, label: str, logits: bool):
        """Check and open one side; returns a function that extracts its features (a FeatureSet)."""
        if kind == "stats":
            from gantools.metrics.features import FeatureSet
            from gantools.metrics.stats import load_stats

            st = load_stats(spec)
            fs = FeatureSet(source=spec, count=st.count, network=st.network, preprocessing=st.preprocessing,
                            stats=st)
            _check_stats_origin(fs)
            return lambda: fs
        if kind == "checkpoint":
            return self._open_checkpoint(spec, label, logits)
        return self._open_source(spec, label, logits)

    def _open_source(self, spec: str, label: str, logits: bool):
        from gantools.data import open_source
        from gantools.errors import GantoolsError

        name = "<stdin>" if spec == "-" else spec
        s = open_source(spec)
        if getattr(s, "kind", "image") != "image":
            raise GantoolsError(f"{name}: holds {s.kind}s, not images; evaluate scores images")
        total = len(s)
        if total == 0:
            raise GantoolsError(f"{name}: no images")
        if self.per_class and s.labels is None:
            raise GantoolsError(f"--per-class: {label} ({name}) has no class labels (use class folders, a "
                                "labelled .npz/.h5/IDX, a labelled stream or a conditional checkpoint)")
        if self.n is not None and self.n < total:
            total = self.n
        elif self.n is not None and self.n > total:
            warn(f"-n {self.n}: {name} has only {total} images; {label} uses all {total}")

        def extract():
            info(f"{label}: {name}: {total} images, {s.channels}x{s.height}x{s.width}")
            ex = self._extractor()
            batches = _take(s.batches(max(ex.batch_size, 64)), total)
            out = distributed.extract(ex, batches, name, total, class_names=s.class_names, logits=logits)
            self.rates[label] = ex.images_per_second
            return out

        return extract

    def _open_checkpoint(self, spec: str, label: str, logits: bool):
        from gantools.checkpoint import load_checkpoint
        from gantools.errors import GantoolsError
        from gantools.generate import generate_batches, is_conditional, load_generator, model_spec

        ck = load_checkpoint(spec)
        model_spec(ck, spec)  # an unknown model: one line naming the file
        kind = ck["data"].get("kind")
        if kind != "image":
            raise GantoolsError(f"{spec}: a {ck['model']} checkpoint of {kind} data; evaluate scores image models")
        if self.per_class and not is_conditional(ck):
            raise GantoolsError(f"--per-class: {label} ({spec}) is an unconditional model (no class labels)")
        n = self.n or DEFAULT_GENERATED
        G = load_generator(ck, self.device, self.ema, path=spec)
        names = list(ck["data"].get("class_names") or []) if is_conditional(ck) else []

        def extract():
            ex = self._extractor()
            info(f"{label}: {spec}: generating {n} images (seed {self.seed})")
            gen = generate_batches(ck, n, self.seed, max(ex.batch_size, 64), self.device, ema=self.ema, G=G)
            out = distributed.extract(ex, ((x, y) for x, y, _z in gen), spec, n, class_names=names, logits=logits)
            self.rates[label] = ex.images_per_second
            return out

        return extract


def _take(batches, total: int):
    """The first `total` images of a stream of batches."""
    left = total
    for x, y in batches:
        if left <= 0:
            break
        if len(x) > left:
            x, y = x[:left], (y[:left] if y is not None else None)
        left -= len(x)
        yield x, y


# ----------------------------------------------------------------------------- report


def _versions() -> dict:
    import platform

    import numpy
    import scipy
    import torch

    from gantools import __version__

    return {"gantools": __version__, "torch": torch.__version__, "numpy": numpy.__version__,
            "scipy": scipy.__version__, "python": platform.python_version()}


def _side_report(spec, kind, fs, ctx, label) -> dict | None:
    if spec is None:
        return None
    d = {"source": "<stdin>" if spec == "-" else spec, "kind": kind, "count": fs.count}
    if kind == "checkpoint":
        d["seed"] = ctx.seed
    if fs.labels is not None:
        d["classes"] = len(fs.class_names) or int(fs.labels.max()) + 1
    if label in ctx.rates:
        d["images_per_second"] = round(ctx.rates[label], 2)
    return d


def _report(names, results, per_class, fake, fake_kind, fake_set, real, real_kind, real_set, ctx, options,
            saved) -> dict:
    from gantools.metrics import inception
    from gantools.metrics.resize import PREPROCESSING_ID

    settings: dict = {}
    if "kid" in names:
        settings.update(kid_subsets=results["kid"]["subsets"], kid_subset_size=results["kid"]["subset_size"],
                        kid_seed=options["seed"])
    if "is" in names:
        settings["is_splits"] = results["is"]["splits"]
    if "pr" in names:
        settings["pr_k"] = results["pr"]["k"]
    report = {
        "metrics": results,
        "fake": _side_report(fake, fake_kind, fake_set, ctx, "FAKE"),
        "real": _side_report(real, real_kind, real_set, ctx, "REAL"),
        "network": fake_set.network,
        "preprocessing": fake_set.preprocessing if fake_set.preprocessing else PREPROCESSING_ID,
        "device": str(ctx.device),
        "settings": settings,
        "versions": _versions(),
    }
    if "is" in names:
        report["is_network"] = inception.IS_NETWORK_ID
    if per_class is not None:
        report["per_class"] = per_class
    if saved:
        report["saved_stats"] = saved
    return report
