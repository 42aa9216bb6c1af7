"""Image metrics, measured in the feature space phi of the data source's feature network (madloop.features).

- ``fid``: the Frechet distance (Heusel et al. 2017) between Gaussian fits of phi(samples) and phi(reference):
  ||mu_1 - mu_2||^2 + tr S_1 + tr S_2 - 2 tr (S_2^1/2 S_1 S_2^1/2)^1/2, the squared W2 of madloop.gaussian
  with unbiased covariances (ddof = 1), as the standard FID (pytorch-fid, torchmetrics) computes it.
- ``kid``: the unbiased MMD^2 (Binkowski et al. 2018) with the cubic kernel k(a, b) = (a.b / f + 1)^3, on
  the full sets (no random subsets: the sets madloop measures are small, and the value is then exact).
- ``classes``: the class histogram of the samples under the network's classifier: its shares
  ``classes_0`` .. ``classes_{K-1}`` and the effective number of classes exp(entropy) as ``classes``
  (K when every class is equally common, 1 when one class is left: mode collapse shows here).

Precision and recall on images are knn.py's k-NN manifolds on ``feature_points(ev)`` (metrics registered in sample.py).

- ``fid_inception``: the same FID in the feature space of the standard FID Inception-v3 (madloop.inception),
  read from the weights file that the data source's option ``inception`` names. Its own name, so FIDs of the
  two networks never share a column; the file's identity (its SHA-256) is recorded in config.json.

The metrics of one generation share one forward pass (``embedded``); run r's images are embedded on their
own, so its values never depend on which runs share its chunk. ``fid``, ``kid``, ``precision`` and ``recall``
below are the same statistics for scripts, on two arrays of images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from madloop.errors import MadloopError
from madloop.features import FeatureNet, network
from madloop.gaussian import gaussian_w2, mean_cov
from madloop.inception import InceptionNet
from madloop.inception import load as load_inception
from madloop.metrics.base import NEEDS_IMAGES, Evaluation, register
from madloop.metrics.knn import KNN_K, PAIRS_PER_SLICE, coverage, knn_radius2


def frechet_distance(phi: np.ndarray, psi: np.ndarray) -> np.ndarray:
    """FID between each run's features phi (runs, n, f) and reference features psi (m, f): (runs,).

    With fewer images than features (Inception's f = 2048), the f x f matrix square root is replaced by an n x m
    problem with the same value: with B_1, B_2 the centred features divided by sqrt(n - 1) and sqrt(m - 1)
    (S_i = B_i^T B_i), the eigenvalues of S_2^1/2 S_1 S_2^1/2 are the squared singular values of B_1 B_2^T, so
    tr (S_2^1/2 S_1 S_2^1/2)^1/2 is the sum of those singular values and tr S_i the squared norm of B_i."""
    n, m, f = phi.shape[1], len(psi), phi.shape[-1]
    if min(n, m) >= f:
        mu1, s1 = mean_cov(phi, ddof=1)
        mu2, s2 = mean_cov(psi[None], ddof=1)
        return gaussian_w2(mu1, s1, mu2[0], s2[0]) ** 2
    mu1, mu2 = phi.mean(1), psi.mean(0)
    b1, b2 = (phi - mu1[:, None]) / np.sqrt(n - 1), (psi - mu2) / np.sqrt(m - 1)
    cross = np.linalg.svd(b1 @ b2.T, compute_uv=False).sum(-1)
    return ((mu1 - mu2) ** 2).sum(-1) + (b1**2).sum((1, 2)) + (b2**2).sum() - 2 * cross


def cubic_kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """k(a, b) = (a.b / f + 1)^3 between the rows of a (..., n, f) and b (..., m, f): (..., n, m)."""
    return (a @ np.swapaxes(b, -1, -2) / a.shape[-1] + 1) ** 3


def off_diagonal_mean(k: np.ndarray) -> np.ndarray:
    """Mean of the off-diagonal entries of square kernel matrices (..., n, n)."""
    n = k.shape[-1]
    return (k.sum((-2, -1)) - np.trace(k, axis1=-2, axis2=-1)) / (n * (n - 1))


def kernel_distance(phi: np.ndarray, psi: np.ndarray) -> np.ndarray:
    """KID: unbiased MMD^2 between each run's features phi (runs, n, f) and psi (m, f), cubic kernel: (runs,)."""
    yy = off_diagonal_mean(cubic_kernel(psi, psi))
    n, m = phi.shape[1], len(psi)
    step = max(1, PAIRS_PER_SLICE // (n * (n + m)))
    out = [off_diagonal_mean(cubic_kernel(x, x)) + yy - 2 * cubic_kernel(x, psi).mean((-2, -1))
           for x in (phi[i : i + step] for i in range(0, len(phi), step))]
    return np.concatenate(out)


def class_shares(labels: np.ndarray, classes: int) -> dict[str, np.ndarray]:
    """Per run, the share of each class among labels (runs, n) and the effective number of classes."""
    shares = (labels[..., None] == np.arange(classes)).mean(1)
    plogp = np.where(shares > 0, shares * np.log(np.where(shares > 0, shares, 1.0)), 0.0)
    return {"classes": np.exp(-plogp.sum(-1)), **{f"classes_{k}": shares[:, k] for k in range(classes)}}


# ----------------------------------------------------------------------------------------------------------
# The registered metrics: one forward pass per Evaluation.


@dataclass(frozen=True)
class Embedded:
    """An Evaluation's images in feature space."""

    net: FeatureNet
    samples: np.ndarray  # (runs, n, f) float64
    labels: np.ndarray  # (runs, n) int64: the classifier's predictions
    reference: np.ndarray  # (m, f) float64


def check_images(ev: Evaluation) -> None:
    """Image metrics need an image data source and samples (runs, n, C, H, W)."""
    if ev.data is None or not hasattr(ev.data, "feature_set"):
        raise MadloopError(NEEDS_IMAGES)
    if ev.samples is None or ev.samples.ndim != 5:
        raise MadloopError(f"image metrics need samples of shape (runs, n, C, H, W), got "
                           f"{None if ev.samples is None else ev.samples.shape}")


def embedded(ev: Evaluation) -> Embedded:
    """The Evaluation's samples and reference in feature space, kept in ``ev.shared`` (one dict for all the
    metrics of a generation): fid, kid, precision, recall and classes of one generation share one forward pass."""
    check_images(ev)
    net = network(ev.data)
    key = f"embedded:{net.identity}"
    if key not in ev.shared:
        pairs = [net.forward(x) for x in ev.samples]  # run by run: a run's values never depend on its chunk
        ev.shared[key] = Embedded(net, np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs]),
                                  net.embed(ev.reference))
    return ev.shared[key]


def feature_notes(data: Any) -> dict[str, Any]:
    """The prepare hook of the metrics in an image set's feature space: the network is trained here, once, so the
    workers find it cached, and config.json records which network it is and how well it classifies (SPEC 5: FIDs
    of different networks are not comparable). Nothing for data that are not images (precision on points)."""
    if len(getattr(data, "shape", ())) != 3:
        return {}
    net = network(data)
    return {"features": {"identity": net.identity, "accuracy": round(float(net.accuracy), 4), "dim": net.dim}}


def feature_points(ev: Evaluation) -> tuple[np.ndarray, np.ndarray]:
    """Image samples and reference as feature vectors: (runs, n, f) and (m, f), for sample.py's precision/recall."""
    e = embedded(ev)
    return e.samples, e.reference


@register("fid", batched=True, images=True, prepare=feature_notes)
def fid_metric(ev: Evaluation) -> np.ndarray:
    """FID in the data source's feature network's space (unbiased covariances), per run."""
    e = embedded(ev)
    return frechet_distance(e.samples, e.reference)


def inception_net(data: Any) -> InceptionNet:
    """The Inception network of the weights file that image data source ``data`` names in its option inception."""
    if not getattr(data, "inception", None):
        raise MadloopError("metric fid_inception measures FID with the standard Inception-v3 network, read from a local "
                           "file: pass --inception /path/to/pt_inception-2015-12-05-6726825d.pth (see the README)")
    return load_inception(data.inception)


def inception_notes(data: Any) -> dict[str, Any]:
    """fid_inception's prepare hook: the weights file is read before the run starts, so a missing or wrong file
    fails there, and config.json records its identity (a resume refuses a changed file)."""
    net = inception_net(data)
    return {"inception": {"identity": net.identity, "sha256": net.sha256, "file": net.path, "dim": net.dim}}


@register("fid_inception", batched=True, images=True, prepare=inception_notes)
def fid_inception_metric(ev: Evaluation) -> np.ndarray:
    """FID in the standard FID Inception-v3's feature space (unbiased covariances), per run."""
    check_images(ev)
    net = inception_net(ev.data)
    key = f"embedded:{net.identity}"
    if key not in ev.shared:  # run by run, as in embedded
        ev.shared[key] = (np.stack([net.embed(x) for x in ev.samples]), net.embed(ev.reference))
    samples, reference = ev.shared[key]
    return frechet_distance(samples, reference)


@register("kid", batched=True, images=True, prepare=feature_notes, signed=True)  # unbiased: below zero near its floor
def kid_metric(ev: Evaluation) -> np.ndarray:
    """KID (unbiased MMD^2, cubic kernel, full sets) in the feature network's space, per run."""
    e = embedded(ev)
    return kernel_distance(e.samples, e.reference)


# A histogram: no distance to p_r, no MAD ratio.
@register("classes", batched=True, distance=False, images=True, prepare=feature_notes)
def classes_metric(ev: Evaluation) -> dict[str, np.ndarray]:
    """The effective number of classes among each run's samples and the share of each class."""
    e = embedded(ev)
    return class_shares(e.labels, e.net.classes)


# ----------------------------------------------------------------------------------------------------------
# For scripts: two arrays of images in, one number out.


INCEPTION = "inception:"  # features="inception:/path/to/weights.pth": the FID Inception-v3 network


def feature_net(features: Any) -> FeatureNet | InceptionNet:
    """A feature network from a registered data source's name (its default options), a data source, a FeatureNet,
    ``"inception:PATH"`` (the FID Inception-v3 in weights file PATH) or an InceptionNet."""
    if isinstance(features, (FeatureNet, InceptionNet)):
        return features
    if isinstance(features, str) and features.startswith(INCEPTION):
        return load_inception(features.removeprefix(INCEPTION))
    if isinstance(features, str):
        import madloop.images  # noqa: F401  (registers the image data sources)
        from madloop.registry import DATA

        features = DATA[features]()
    if not all(hasattr(features, a) for a in ("feature_set", "key", "classes")):
        raise MadloopError(f"features must be an image data source's name (such as 'digits'), an image data source, "
                           f"'inception:/path/to/weights.pth' or a FeatureNet, got {type(features).__name__}")
    return network(features)


def as_images(x: Any, net: FeatureNet | InceptionNet, what: str, least: int) -> np.ndarray:
    """Check images (n, H, W) or (n, C, H, W), float in [0, 1] or uint8, for net; float32 (n, C, H, W)."""
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[:, None]
    if net.shape is None:  # the Inception network resizes every image
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise MadloopError(f"{what} must be an array of images (n, H, W) or (n, 1 or 3, H, W) for the Inception "
                               f"network, got shape {x.shape}")
    elif x.ndim != 4 or x.shape[1:] != net.shape:
        c, h, w = net.shape
        expected = f"(n, {h}, {w}) or (n, {c}, {h}, {w})" if c == 1 else f"(n, {c}, {h}, {w})"
        raise MadloopError(f"{what} must be an array of images {expected} for the feature network {net.identity}, "
                           f"got shape {x.shape}")
    if len(x) < least:
        raise MadloopError(f"{what} has {len(x)} images; this statistic needs at least {least}")
    if x.dtype == np.uint8:
        return (x / np.float32(255)).astype(np.float32)
    if not np.issubdtype(x.dtype, np.floating):
        raise MadloopError(f"{what} must hold floats in [0, 1] or uint8 values 0..255, got dtype {x.dtype}")
    if not np.isfinite(x).all():
        raise MadloopError(f"{what} holds NaN or inf values")
    if x.min() < 0 or x.max() > 1:
        raise MadloopError(f"{what} has values in [{x.min():.3g}, {x.max():.3g}]; images must lie in [0, 1] "
                           "(or be uint8 0..255)")
    return x.astype(np.float32)


def _pair(a, b, features, least: int, names=("images_a", "images_b")) -> tuple[np.ndarray, np.ndarray]:
    net = feature_net(features)
    return tuple(net.embed(as_images(x, net, name, least)) for x, name in zip((a, b), names))


def fid(images_a, images_b, features: Any = "digits") -> float:
    """FID between two sets of images in the feature space of ``features``: a data source's name, a data source
    or a FeatureNet (its domain network), or ``"inception:/path/to/pt_inception-2015-12-05-6726825d.pth"`` (the
    standard FID Inception-v3). Images: (n, H, W) or (n, C, H, W), floats in [0, 1] or uint8."""
    a, b = _pair(images_a, images_b, features, 2)
    return float(frechet_distance(a[None], b)[0])


def kid(images_a, images_b, features: Any = "digits") -> float:
    """KID (unbiased MMD^2, cubic kernel, full sets) between two sets of images; arguments as ``fid``."""
    a, b = _pair(images_a, images_b, features, 2)
    return float(kernel_distance(a[None], b)[0])


def precision(images, reference, features: Any = "digits") -> float:
    """Share of ``images`` inside the k-NN manifold (k = 3) of ``reference`` in feature space; arguments as ``fid``."""
    a, b = _pair(images, reference, features, KNN_K + 1, ("images", "reference"))
    return float(coverage(a, b, knn_radius2(b)))


def recall(images, reference, features: Any = "digits") -> float:
    """Share of ``reference`` inside the k-NN manifold (k = 3) of ``images`` in feature space; arguments as ``fid``."""
    a, b = _pair(images, reference, features, KNN_K + 1, ("images", "reference"))
    return float(coverage(b, a, knn_radius2(a)))
