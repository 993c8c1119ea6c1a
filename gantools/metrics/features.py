"""Batched Inception features (pool3, and the IS logits when asked) from uint8 NCHW batches.

The extractor takes any iterator of `(uint8 N x C x H x W tensor, labels or None)`
batches (an ImageSet's `.batches()`, a generator's output), re-chunks them to
`batch_size`, preprocesses on the device (TF1 bilinear to 299, (x-128)/128)
and keeps the features on the device until the end, so a GPU is never made to
wait for a copy back while the host decodes the next batch.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import numpy as np
import torch

from gantools.errors import GantoolsError
from gantools.metrics import inception
from gantools.metrics.resize import PREPROCESSING_ID, preprocess


@dataclass
class FeatureSet:
    """What one side of an evaluation is reduced to: features, optional logits and labels, or saved stats."""

    source: str
    count: int
    features: np.ndarray | None = None  # N x 2048 float32
    logits: np.ndarray | None = None  # N x 1008 float32, without the output bias
    labels: np.ndarray | None = None  # N int64
    class_names: list = field(default_factory=list)
    network: str = inception.NETWORK_ID
    preprocessing: str = PREPROCESSING_ID
    stats: object | None = None  # FIDStats, computed lazily (or loaded from a file)

    def fid_stats(self, device: str = "cpu"):
        """Mean and covariance (float64) of the features; cached."""
        if self.stats is None:
            from gantools.metrics.stats import FIDStats

            if self.features is None:
                raise GantoolsError(f"{self.source}: no features to make FID statistics from")
            self.stats = FIDStats.from_features(self.features, self.network, self.preprocessing,
                                                self.source, device)
        return self.stats

    def subset(self, mask: np.ndarray, source: str) -> "FeatureSet":
        return FeatureSet(source=source, count=int(mask.sum()),
                          features=self.features[mask] if self.features is not None else None,
                          logits=self.logits[mask] if self.logits is not None else None,
                          labels=self.labels[mask] if self.labels is not None else None,
                          class_names=self.class_names, network=self.network, preprocessing=self.preprocessing)


def default_batch_size(device: torch.device) -> int:
    return 200 if device.type == "cuda" else 32


@contextlib.contextmanager
def _exact_float32(device: torch.device) -> Iterator[None]:
    """No TF32 on CUDA while extracting: it would move features by ~1e-3 and FID in the second digit."""
    if device.type != "cuda":
        yield
        return
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def _rechunk(batches: Iterable, size: int) -> Iterator[tuple[torch.Tensor, np.ndarray | None]]:
    """Re-cut a stream of (images, labels) batches into batches of `size` (the last may be short).

    Labels are passed on only while every batch so far had them.
    """
    xs: list[torch.Tensor] = []
    ys: list[np.ndarray] = []
    have, labelled = 0, True
    for x, y in batches:
        if not isinstance(x, torch.Tensor):
            x = torch.from_numpy(np.asarray(x))
        if x.dtype != torch.uint8:
            raise GantoolsError(f"expected uint8 images, got {x.dtype}")
        if y is None:
            labelled = False
        if labelled:
            ys.append(np.asarray(y.cpu() if isinstance(y, torch.Tensor) else y, dtype=np.int64))
        xs.append(x)
        have += len(x)
        if have < size:
            continue
        big = torch.cat(xs) if len(xs) > 1 else xs[0]
        lab = (np.concatenate(ys) if len(ys) > 1 else ys[0]) if labelled else None
        full = have - have % size
        for s in range(0, full, size):
            yield big[s:s + size], (lab[s:s + size] if lab is not None else None)
        xs = [big[full:]] if have > full else []
        ys = [lab[full:]] if lab is not None and have > full else []
        have -= full
    if have:
        big = torch.cat(xs) if len(xs) > 1 else xs[0]
        yield big, ((np.concatenate(ys) if len(ys) > 1 else ys[0]) if labelled else None)


class Extractor:
    """Inception features on `device`; with `logits=True` also the IS logits (needs the full weights).

    When the full network's pool3 part holds exactly the trunk's tensors, one
    forward pass gives both; otherwise features come from the trunk and logits
    from the full network, so FID never silently uses another network.
    """

    def __init__(self, device: str | torch.device = "cpu", logits: bool = False,
                 is_weights: str | None = None, trunk_file: str | None = None,
                 batch_size: int | None = None, verify: bool = True):
        self.device = torch.device(device)
        self.batch_size = batch_size or default_batch_size(self.device)
        if self.batch_size < 1:
            from gantools.errors import UsageError

            raise UsageError(f"--batch-size {self.batch_size}: must be at least 1")
        self.trunk = inception.load_trunk(self.device, trunk_file, verify=verify)
        self.full = None
        self.one_pass = False
        if logits:
            self.full = inception.load_is_network(is_weights, self.device, verify=verify)
            self.one_pass = inception.same_trunk(self.full, self.trunk)
        # On the CPU the network takes its input channels-last: oneDNN's convolutions and the pools then
        # skip their layout reorders, ~15% less CPU time a batch (bench/eval_throughput.py). Only the
        # summation order inside the convolutions changes: features move by ~1e-6 relative.
        self.channels_last = self.device.type == "cpu"
        self.network_id = inception.NETWORK_ID
        self.preprocessing_id = PREPROCESSING_ID
        self.images_per_second = 0.0

    @torch.inference_mode()
    def _forward(self, x: torch.Tensor, logits: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = preprocess(x.to(self.device, non_blocking=True))
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.full is None or not logits:
            return self.trunk(x), None
        if self.one_pass:
            return self.full(x)
        return self.trunk(x), self.full(x)[1]

    def run(self, batches: Iterable, source: str, total: int | None = None,
            class_names: list | None = None, progress: bool = True, logits: bool = True) -> FeatureSet:
        """Features of every image in `batches` -> FeatureSet (numpy, on the host).

        `logits=False` skips the IS logits for this run (e.g. the real side of an evaluation).
        """
        from gantools.log import ProgressReporter

        feats: list[torch.Tensor] = []
        logits: list[torch.Tensor] = []
        labels: list = []
        labelled = True
        done = 0
        bar = ProgressReporter(total, f"features {source}") if progress and total else None
        start = time.perf_counter()
        try:
            with _exact_float32(self.device):
                for x, y in _rechunk(batches, self.batch_size):
                    if x.ndim != 4 or x.shape[1] not in (1, 3):
                        raise GantoolsError(f"{source}: images must be grey or RGB, got shape {tuple(x.shape)}")
                    f, lg = self._forward(x, logits)
                    feats.append(f)
                    if lg is not None:
                        logits.append(lg)
                    if y is None:
                        labelled = False
                    else:
                        labels.append(y)
                    done += len(x)
                    if bar is not None:
                        rate = done / max(time.perf_counter() - start, 1e-9)
                        bar.update(done, f"{rate:.0f} img/s")
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)
        finally:
            if bar is not None:
                bar.close()
        if done == 0:
            raise GantoolsError(f"{source}: no images to evaluate")
        self.images_per_second = done / max(time.perf_counter() - start, 1e-9)
        out = FeatureSet(
            source=source,
            count=done,
            features=torch.cat(feats).float().cpu().numpy(),
            logits=torch.cat(logits).float().cpu().numpy() if logits else None,
            labels=np.concatenate(labels) if labelled and labels else None,
            class_names=list(class_names or []),
            network=self.network_id,
            preprocessing=self.preprocessing_id,
        )
        return out


def extract_features(images: torch.Tensor | np.ndarray, device: str = "cpu", batch_size: int | None = None,
                     logits: bool = False, is_weights: str | None = None) -> FeatureSet:
    """Convenience for the Python API: features of one uint8 N x C x H x W array."""
    x = torch.as_tensor(images)
    ex = Extractor(device, logits=logits, is_weights=is_weights, batch_size=batch_size)
    step = ex.batch_size
    return ex.run(((x[i:i + step], None) for i in range(0, len(x), step)), "<array>", len(x), progress=False)
