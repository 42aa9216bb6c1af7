"""The image metrics' feature network (madloop.features) and FID, KID, classes (madloop.metrics.image), on the
8x8 digits: a deterministic network that classifies, a crash-safe cache, FID with a floor and growing with
corruption, equal to torchmetrics' given the same features, and clear errors for bad images."""

import numpy as np
import pytest

from madloop import features
from madloop.errors import MadloopError
from madloop.images import DigitsData, pools
from madloop.metrics import Evaluation, image
from madloop.registry import METRICS


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """The digits source with its network trained once into a scratch cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MADLOOP_CACHE", str(tmp_path_factory.mktemp("cache")))
        features._NETS.clear()
        data = DigitsData()
        features.network(data)
        yield data
    features._NETS.clear()


@pytest.fixture(scope="module")
def net(digits):
    return features.network(digits)


@pytest.fixture(scope="module")
def real(digits):
    """800 training-pool images and the 400 reference images."""
    p = pools(digits)
    return p.training.x, p.reference.x


def blur(x, sigma):
    """Gaussian blur (7x7 kernel, edges replicated)."""
    import torch

    r = np.arange(-3, 4)
    k = np.exp(-(r**2) / (2 * sigma**2))
    k2 = torch.from_numpy(np.outer(k, k) / k.sum() ** 2).float()[None, None]
    padded = torch.nn.functional.pad(torch.from_numpy(np.array(x)), (3, 3, 3, 3), mode="replicate")
    return torch.nn.functional.conv2d(padded, k2).numpy()


def noised(x, sigma):
    return np.clip(x + sigma * np.random.default_rng(0).standard_normal(x.shape), 0, 1).astype(np.float32)


# ----------------------------------------------------------------------------------------------------------
# The network.


def test_training_is_deterministic_and_the_network_classifies(digits, net):
    x, y = digits.feature_set()
    again, accuracy = features.train(x, y, digits.classes)
    assert all(np.array_equal(again[k], net.params[k]) for k in net.params)
    assert accuracy == net.accuracy >= 0.95  # 0.978 on the 90 held-out images
    assert net.identity.startswith(f"lenet:{digits.key}:") and net.identity.endswith(":seed0")
    assert net.embed(x[:10]).shape == (10, features.FEATURES) and net.embed(x[:10]).dtype == np.float64


def test_an_image_is_embedded_alike_in_any_batch(net, real):
    # Bit for bit only in batches of the same size (a run's images are embedded on their own for that reason):
    # torch picks other kernels for small batches, which round in float32 differently.
    x = real[0][:700]  # two forward batches
    assert net.embed(x)[7:9] == pytest.approx(net.embed(x[7:9]), rel=1e-5, abs=1e-5)
    assert np.array_equal(net.embed(x)[500:], net.embed(x[500:]))
    assert np.array_equal(net.embed((x * 255).round().astype(np.uint8)), net.embed((x * 255).round() / 255))


def test_the_cache_round_trips_and_a_damaged_file_is_retrained(digits, net, tmp_path, monkeypatch):
    monkeypatch.setenv("MADLOOP_CACHE", str(tmp_path))
    trained = []
    monkeypatch.setattr(features, "train", lambda x, y, classes, seed: trained.append(1) or (net.params, net.accuracy))
    monkeypatch.setattr(features, "_NETS", {})
    features.network(digits)  # trains (here: the stub) and writes the file
    (path,) = tmp_path.glob("*.npz")
    assert path.name.startswith("lenet_digits-8x8-") and len(trained) == 1

    monkeypatch.setattr(features, "_NETS", {})
    loaded = features.network(digits)  # reads the file, no training
    assert len(trained) == 1 and loaded.identity == net.identity and loaded.accuracy == net.accuracy
    assert all(np.array_equal(loaded.params[k], net.params[k]) for k in net.params)

    path.write_bytes(path.read_bytes()[:300])  # a truncated file
    monkeypatch.setattr(features, "_NETS", {})
    assert features.network(digits).identity == net.identity and len(trained) == 2  # retrained ...
    assert features.load(path, net.identity, net.shape, net.classes) is not None  # ... and replaced


def test_an_unwritable_cache_keeps_the_network_in_memory(digits, net, tmp_path, monkeypatch):
    (tmp_path / "file").write_text("not a folder")
    monkeypatch.setenv("MADLOOP_CACHE", str(tmp_path / "file" / "cache"))
    monkeypatch.setattr(features, "train", lambda x, y, classes, seed: (net.params, net.accuracy))
    monkeypatch.setattr(features, "_NETS", {})
    assert features.network(digits).identity == net.identity


def test_the_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("MADLOOP_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert features.cache_dir() == tmp_path / "madloop"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert features.cache_dir().parts[-2:] == (".cache", "madloop")


# ----------------------------------------------------------------------------------------------------------
# FID and KID.


def test_fid_has_a_floor_and_grows_with_corruption(digits, real):
    train, ref = real
    x = train[:400]
    floor = image.fid(x, ref, digits)
    assert image.fid(ref, ref, digits) == pytest.approx(0.0, abs=1e-6)
    assert 0.05 < floor < 1  # 0.25: two real sets of 400 and 400 images
    blurred = [image.fid(blur(x, s), ref, digits) for s in (0.5, 0.8, 1.2)]  # 2.7, 11.0, 20.6
    noisy = [image.fid(noised(x, s), ref, digits) for s in (0.2, 0.3, 0.4)]  # 1.0, 1.5, 2.1
    assert floor * 3 < blurred[0] < blurred[1] < blurred[2]
    assert floor * 3 < noisy[0] < noisy[1] < noisy[2]
    assert image.kid(x, ref, digits) < image.kid(blur(x, 0.5), ref, digits) < image.kid(blur(x, 1.2), ref, digits)


class Phi:
    """The network's features as the torch module torchmetrics takes (a custom feature extractor)."""

    def __new__(cls, net):
        import torch

        class Module(torch.nn.Module):
            num_features = features.FEATURES

            def forward(self, imgs):
                return torch.from_numpy(net.embed(imgs.numpy()))

        return Module()


def test_fid_equals_torchmetrics(net, real):
    pytest.importorskip("torchmetrics", reason="torchmetrics is the reference FID (pip install torchmetrics)")
    import torch
    from torchmetrics.image.fid import FrechetInceptionDistance

    train, ref = real
    for x in (train[:300], blur(train[300:600], 0.7)):
        reference = FrechetInceptionDistance(feature=Phi(net))
        reference.update(torch.tensor(ref), real=True)
        reference.update(torch.tensor(x), real=False)
        assert image.fid(x, ref, net) == pytest.approx(float(reference.compute()), rel=1e-3)


def test_fid_with_fewer_images_than_features_equals_the_matrix_square_root():
    # Inception's 2048 features and a few hundred images: the n x m singular values give the f x f formula's value.
    from madloop.gaussian import gaussian_w2, mean_cov

    rng = np.random.default_rng(0)
    phi = rng.standard_normal((3, 40, 300)) * rng.uniform(0.5, 2, 300) + np.arange(3)[:, None, None] * 0.1
    psi = rng.standard_normal((55, 300)) @ rng.standard_normal((300, 300)) / 20
    (mu1, s1), (mu2, s2) = mean_cov(phi, ddof=1), mean_cov(psi[None], ddof=1)
    # rtol: the f x f route takes square roots of the round-off in the zero eigenvalues of rank-deficient covariances.
    np.testing.assert_allclose(image.frechet_distance(phi, psi), gaussian_w2(mu1, s1, mu2[0], s2[0]) ** 2, rtol=1e-6)
    assert image.frechet_distance(psi[None], psi)[0] == pytest.approx(0, abs=1e-9)


def test_kid_equals_torchmetrics_and_the_direct_formula(net, real):
    train, ref = real
    a, b = net.embed(train[:120]), net.embed(ref[:90])
    k = lambda u, v: (u @ v / a.shape[1] + 1) ** 3
    n, m = len(a), len(b)
    direct = (sum(k(a[i], a[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
              + sum(k(b[i], b[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
              - 2 * sum(k(u, v) for u in a for v in b) / (n * m))
    assert image.kid(train[:120], ref[:90], net) == pytest.approx(direct, rel=1e-9, abs=1e-12)

    pytest.importorskip("torchmetrics", reason="torchmetrics is the reference KID (pip install torchmetrics)")
    import torch
    from torchmetrics.image.kid import KernelInceptionDistance

    x = blur(train[:400], 0.7)  # equal sizes and one subset of all images: torchmetrics' subsets are then the full sets
    with pytest.warns(UserWarning, match="buffer"):
        reference = KernelInceptionDistance(feature=Phi(net), subsets=1, subset_size=len(ref))
    reference.update(torch.tensor(ref), real=True)
    reference.update(torch.tensor(x), real=False)
    assert image.kid(x, ref, net) == pytest.approx(float(reference.compute()[0]), rel=1e-3)


# ----------------------------------------------------------------------------------------------------------
# The registered metrics on an Evaluation.


def evaluation(samples, reference, data, shared=None):
    return Evaluation(samples, reference, None, np.random.default_rng(0), data=data, shared={} if shared is None else shared)


def test_registered_metrics_measure_each_run_alone(digits, real):
    train, ref = real
    runs = np.stack([train[:200], blur(train[200:400], 0.8), train[400:600]])  # (3, 200, 1, 8, 8)
    ev = evaluation(runs, ref, digits)
    fid, kid = METRICS["fid"](ev), METRICS["kid"](ev)
    assert fid == pytest.approx([image.fid(x, ref, digits) for x in runs], rel=1e-12)
    assert kid == pytest.approx([image.kid(x, ref, digits) for x in runs], rel=1e-12)
    alone = evaluation(runs[1:2], ref, digits)
    assert METRICS["fid"](alone)[0] == fid[1] and METRICS["kid"](alone)[0] == kid[1]
    samples, reference = image.feature_points(ev)
    assert samples.shape == (3, 200, features.FEATURES) and reference.shape == (len(ref), features.FEATURES)
    assert not METRICS["classes"].distance and METRICS["fid"].distance and METRICS["kid"].distance


def test_the_metrics_of_one_generation_share_one_forward_pass(digits, real, monkeypatch):
    train, ref = real
    calls = []
    forward = features.FeatureNet.forward
    monkeypatch.setattr(features.FeatureNet, "forward", lambda self, x: calls.append(len(x)) or forward(self, x))
    runs = np.stack([train[:100], train[100:200]])
    shared = {}  # one Evaluation per metric sharing one dict, as measure.py makes them
    for name in ("fid", "kid", "precision", "recall", "classes"):
        METRICS[name](evaluation(runs, ref, digits, shared))
    assert calls == [100, 100, len(ref)]
    METRICS["fid"](evaluation(runs[::-1].copy(), ref, digits))  # other images: embedded anew
    assert len(calls) == 6


def test_classes_count_the_digits(digits, real):
    train, ref = real
    y = pools(digits).training.y
    threes = train[y == 3][:60]
    ev = evaluation(np.stack([train[:200], threes[np.arange(200) % len(threes)]]), ref, digits)
    out = METRICS["classes"](ev)
    assert sorted(out) == sorted(["classes", *(f"classes_{k}" for k in range(10))])
    shares = np.stack([out[f"classes_{k}"] for k in range(10)])
    assert shares.sum(0) == pytest.approx(1.0)
    assert out["classes"][0] > 9.0  # a real sample: all ten digits, about equally
    assert out["classes_3"][1] > 0.95 and out["classes"][1] < 1.3  # only 3s: one class


def test_precision_and_recall_in_feature_space(digits, real):
    train, ref = real
    assert 0.85 < image.precision(train[:400], ref, digits) <= 1 and 0.85 < image.recall(train[:400], ref, digits) <= 1
    assert image.recall(blur(train[:400], 1.2), ref, digits) < 0.5


# ----------------------------------------------------------------------------------------------------------
# Bad input.


def test_bad_images_are_one_clear_error(digits, net, real):
    train, ref = real
    x = train[:50]
    with pytest.raises(MadloopError, match=r"\(n, 8, 8\) or \(n, 1, 8, 8\).*got shape \(50, 1, 9, 9\)"):
        image.fid(np.zeros((50, 1, 9, 9)), ref, digits)
    with pytest.raises(MadloopError, match="NaN"):
        image.fid(np.where(x > 0.5, np.nan, x), ref, net)
    with pytest.raises(MadloopError, match=r"must lie in \[0, 1\]"):
        image.kid(x * 16, ref, net)
    with pytest.raises(MadloopError, match="floats in .0, 1. or uint8"):
        image.fid((x * 255).astype(np.int64), ref, net)
    with pytest.raises(MadloopError, match="has 1 images; this statistic needs at least 2"):
        image.fid(x[:1], ref, net)
    with pytest.raises(MadloopError, match="at least 4"):
        image.precision(x[:3], ref, net)
    with pytest.raises(MadloopError, match="unknown data source 'digit'.*did you mean 'digits'"):
        image.fid(x, ref, "digit")
    with pytest.raises(MadloopError, match="image data source's name"):
        image.fid(x, ref, features=42)
    with pytest.raises(MadloopError, match="need an image data source"):
        METRICS["fid"](evaluation(x[None], ref, None))
    assert image.fid(x[:, 0], ref[:, 0], net) == image.fid(x, ref, net)  # (n, H, W) reads as one channel
    assert image.fid(x, ref, "digits") == image.fid(x, ref, net)  # a data source's name: its default options


class Unlabelled:
    key, classes = "unlabelled-8x8", 0

    def feature_set(self):
        return np.zeros((40, 1, 8, 8), np.float32), None


class Tiny(Unlabelled):
    key, classes = "tiny-6x6", 10

    def feature_set(self):
        return np.zeros((40, 1, 6, 6), np.float32), np.arange(40) % 10


def test_sources_the_network_cannot_learn_are_refused():
    with pytest.raises(MadloopError, match="needs labels of at least two classes"):
        features.network(Unlabelled())
    with pytest.raises(MadloopError, match="at least 8x8 pixels.*larger --data.size"):
        image.fid(np.zeros((5, 6, 6)), np.zeros((5, 6, 6)), Tiny())
