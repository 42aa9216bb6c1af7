"""The domain feature network: a LeNet-5-like classifier whose penultimate layer is the feature space of
the image metrics (FID, KID, precision, recall) and whose predictions give the class histogram.

As the MAD paper measured MNIST with a LeNet (SPEC section 5), madloop trains a small CNN on the data
source's FEATURE pool (``data.feature_set()``, disjoint from D_r and from the metrics' reference set), holding
out ``TEST_SHARE`` of it to measure its test accuracy. The architecture follows LeNet-5 (LeCun et al. 1998):

    C1: conv 5x5, 16 maps, ReLU, 2x2 max-pool   (padding 2, so an 8x8 image keeps its border)
    C3: conv 5x5, 32 maps, ReLU, adaptive average pool to 4x4   (8x8, 14x14 and 28x28 images alike)
    F5: 120 units, ReLU
    F6: FEATURES = 84 units, ReLU   <- the features phi(x), scaled to mean square 1 on the training images
    output: one logit per class

Determinism: the initialisation (PyTorch's default uniform bounds) and the minibatch order are NumPy draws
from a fixed SeedSequence; training runs on one torch thread. Two trainings on one machine give the same
weights bit for bit; another CPU type may round differently, so each network is trained once and cached.

Cache: ``$MADLOOP_CACHE``, else ``$XDG_CACHE_HOME/madloop``, else ``~/.cache/madloop``; one ``.npz`` (no
pickles) per (data key, feature-pool digest, seed, madloop version), written atomically. A damaged file is
retrained and replaced; a cache folder that cannot be written leaves the network in memory only.

torch is imported inside the functions that run the network, so importing this module costs nothing.
"""

from __future__ import annotations

import hashlib
import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from madloop.errors import MadloopError
from madloop.files import __version__, atomic_write
from madloop.rng import Role, role_id
from madloop.threads import one_thread

if TYPE_CHECKING:
    import torch

SEED = 0  # the feature network's seed: part of its identity, never the run's seed
TEST_SHARE = 0.15  # of the feature pool, held out for the test accuracy
MAPS = (16, 32)  # C1 and C3 feature maps
POOL = 4  # C3's output is average-pooled to POOL x POOL
HIDDEN = 120  # F5
FEATURES = 84  # F6: the feature dimension f
EPOCHS = 60  # passes over a small pool (digits); larger pools get fewer, see epochs()
STEPS = 1500  # ... so that every pool trains for about this many minibatches
BATCH = 64  # training minibatch
LR = 1e-3  # Adam
FORWARD_BATCH = 500  # images per forward pass when embedding (bounds memory)


def epochs(n_train: int) -> int:
    """Epochs for a pool of n_train images: EPOCHS, or fewer when that would exceed STEPS minibatches."""
    return max(1, min(EPOCHS, round(STEPS * BATCH / n_train)))


# ----------------------------------------------------------------------------------------------------------
# The network, as a pure function of its parameters.


def param_shapes(shape: tuple[int, int, int], classes: int) -> dict[str, tuple[tuple[int, ...], int]]:
    """Each layer's weight shape and fan-in, for images of shape (C, H, W)."""
    flat = MAPS[1] * POOL * POOL
    return {"c1": ((MAPS[0], shape[0], 5, 5), shape[0] * 25), "c3": ((MAPS[1], MAPS[0], 5, 5), MAPS[0] * 25),
            "f5": ((HIDDEN, flat), flat), "f6": ((FEATURES, HIDDEN), HIDDEN), "out": ((classes, FEATURES), FEATURES)}


def init_params(shape: tuple[int, int, int], classes: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """PyTorch's default initialisation (weights and biases U(-1/sqrt(fan_in), 1/sqrt(fan_in))), drawn by NumPy."""
    params = {}
    for name, (w_shape, fan_in) in param_shapes(shape, classes).items():
        bound = 1.0 / np.sqrt(fan_in)
        params[f"{name}.w"] = rng.uniform(-bound, bound, w_shape).astype(np.float32)
        params[f"{name}.b"] = rng.uniform(-bound, bound, w_shape[0]).astype(np.float32)
    return params


def lenet(p: dict[str, torch.Tensor], x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x (n, C, H, W) in [0, 1] -> (features phi(x) (n, FEATURES), logits (n, classes))."""
    import torch.nn.functional as F

    h = F.max_pool2d(F.relu(F.conv2d(2 * x - 1, p["c1.w"], p["c1.b"], padding=2)), 2)
    h = F.adaptive_avg_pool2d(F.relu(F.conv2d(h, p["c3.w"], p["c3.b"], padding=2)), POOL)
    h = F.relu(F.linear(h.flatten(1), p["f5.w"], p["f5.b"]))
    phi = F.relu(F.linear(h, p["f6.w"], p["f6.b"]))
    return phi, F.linear(phi, p["out.w"], p["out.b"])


@dataclass(frozen=True, eq=False)
class FeatureNet:
    """A trained feature network: its parameters, what it was trained on and how well it classifies.

    ``identity`` labels every value measured in its feature space (FIDs of different networks never mix);
    ``accuracy`` is its accuracy on the held-out share of the feature pool.
    """

    params: dict[str, np.ndarray]
    shape: tuple[int, int, int]  # (C, H, W) of the images it reads
    classes: int
    identity: str
    accuracy: float

    @property
    def dim(self) -> int:
        return FEATURES

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Features (n, f) float64 and predicted classes (n,) int64 of images x (n, C, H, W).

        Batches of FORWARD_BATCH images from the start of x, on one thread: an image's features depend on
        x alone (torch picks its kernels by batch size, so the same image in another batch may round
        differently in the last bit), never on the machine's thread count."""
        import torch

        x = self.check(x)
        p = {k: torch.from_numpy(v) for k, v in self.params.items()}
        phi, label = [], []
        with torch.no_grad(), one_thread():
            for i in range(0, len(x), FORWARD_BATCH):
                f, logits = lenet(p, torch.from_numpy(x[i : i + FORWARD_BATCH]))
                phi.append(f.double().numpy())
                label.append(logits.argmax(1).numpy())
        if not phi:
            return np.zeros((0, FEATURES)), np.zeros(0, dtype=np.int64)
        return np.concatenate(phi), np.concatenate(label).astype(np.int64)

    def embed(self, x: np.ndarray) -> np.ndarray:
        """Penultimate-layer features phi(x), (n, f) float64, of images x (n, C, H, W) in [0, 1] (or uint8)."""
        return self.forward(x)[0]

    def classify(self, x: np.ndarray) -> np.ndarray:
        """Predicted class (n,) int64 of images x (n, C, H, W) in [0, 1] (or uint8)."""
        return self.forward(x)[1]

    def check(self, x: np.ndarray) -> np.ndarray:
        """x as float32 (n, C, H, W) in [0, 1]; uint8 images are divided by 255."""
        x = np.asarray(x)
        if x.ndim != 4 or tuple(x.shape[1:]) != tuple(self.shape):
            raise MadloopError(f"the feature network {self.identity} reads images of shape (n, {', '.join(map(str, self.shape))}), "
                             f"got {x.shape}")
        if x.dtype == np.uint8:
            return (x / np.float32(255)).astype(np.float32)
        return np.array(x, dtype=np.float32)  # a copy: torch reads only writable arrays without a warning


# ----------------------------------------------------------------------------------------------------------
# Training.


def train(x: np.ndarray, y: np.ndarray, classes: int, seed: int = SEED) -> tuple[dict[str, np.ndarray], float]:
    """Train the network on images x (N, C, H, W) in [0, 1] with labels y; returns (params, test accuracy).

    1. Hold out TEST_SHARE of the pool (a fixed random split).
    2. Initialise as PyTorch does, with NumPy draws.
    3. Adam on the cross-entropy, minibatches in a NumPy-drawn order, epochs(n_train) passes.
    4. Scale the features to mean square 1.
    5. Measure the accuracy on the held-out images.
    """
    import torch

    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(role_id(Role.FEATURES),)))
    # 1. The split.
    order = rng.permutation(len(x))
    n_test = max(1, round(TEST_SHARE * len(x)))
    test, fit = order[:n_test], order[n_test:]
    # 2. Initialisation.
    params = {k: torch.from_numpy(v).requires_grad_() for k, v in init_params(tuple(x.shape[1:]), classes, rng).items()}
    optimiser = torch.optim.Adam(params.values(), lr=LR, foreach=False)
    xs, ys = torch.from_numpy(np.array(x, dtype=np.float32)), torch.from_numpy(np.array(y, dtype=np.int64))
    # 3. Minibatch training.
    with one_thread():
        for _ in range(epochs(len(fit))):
            for batch in np.array_split(rng.permutation(fit), max(1, len(fit) // BATCH)):
                index = torch.from_numpy(batch)
                loss = torch.nn.functional.cross_entropy(lenet(params, xs[index])[1], ys[index])
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
    trained = {k: v.detach().numpy().copy() for k, v in params.items()}
    # 4. Features of unit mean square on the training images: F6 divided by their root mean square, the
    # output layer multiplied by it (ReLU is positively homogeneous: the classifier is unchanged). The cubic
    # KID kernel (a.b / f + 1)^3 then sees a.b / f of order one, as on Inception features.
    rms = np.float32(np.sqrt(np.mean(FeatureNet(trained, tuple(x.shape[1:]), classes, "", 0.0).embed(x[fit]) ** 2)))
    trained.update({"f6.w": trained["f6.w"] / rms, "f6.b": trained["f6.b"] / rms, "out.w": trained["out.w"] * rms})
    # 5. Test accuracy.
    predicted = FeatureNet(trained, tuple(x.shape[1:]), classes, "", 0.0).classify(x[test])
    return trained, float((predicted == np.asarray(y)[test]).mean())


# ----------------------------------------------------------------------------------------------------------
# The cache: in this process by data key, on disk by data key, feature-pool digest, seed and version.

_NETS: dict[tuple[str, int], FeatureNet] = {}


def cache_dir() -> Path:
    """$MADLOOP_CACHE, else $XDG_CACHE_HOME/madloop, else ~/.cache/madloop."""
    if os.environ.get("MADLOOP_CACHE"):
        return Path(os.environ["MADLOOP_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "madloop"


def digest(x: np.ndarray, y: np.ndarray) -> str:
    """A short fingerprint of the feature pool, so that changed data never reuses a stale network."""
    h = hashlib.sha256(np.ascontiguousarray(x, dtype=np.float32).tobytes())
    h.update(np.ascontiguousarray(y, dtype=np.int64).tobytes())
    return h.hexdigest()[:12]


def identity(key: str, data_digest: str, seed: int = SEED) -> str:
    return f"lenet:{key}:{data_digest}:madloop-{__version__}:seed{seed}"


def cache_file(ident: str) -> Path:
    """The cache file of a network identity (characters unsafe in a file name become '_')."""
    return cache_dir() / f"{re.sub(r'[^A-Za-z0-9._-]', '_', ident)}.npz"


def network(data: Any, seed: int = SEED) -> FeatureNet:
    """The feature network of data source ``data`` (trained on ``data.feature_set()``, or read from the cache)."""
    if (data.key, seed) in _NETS:
        return _NETS[data.key, seed]
    x, y = data.feature_set()
    shape = tuple(int(s) for s in x.shape[1:])
    if len(shape) != 3 or min(shape[1:]) < 8:
        raise MadloopError(f"the feature network reads images of at least 8x8 pixels, got {data.key} with shape "
                           f"{x.shape[1:]}: choose a larger --data.size")
    if y is None or int(data.classes) < 2:
        raise MadloopError(f"the feature network is a classifier: {data.key} needs labels of at least two classes (an "
                           "npz with labels 'y', or a folder of PNG files in one subfolder per class)")
    ident = identity(data.key, digest(x, y), seed)
    path = cache_file(ident)
    net = load(path, ident, shape, int(data.classes))
    if net is None:
        params, accuracy = train(x, y, int(data.classes), seed)
        net = FeatureNet(params, shape, int(data.classes), ident, accuracy)
        save(net, path)
    _NETS[data.key, seed] = net
    return net


def load(path: Path, ident: str, shape: tuple[int, ...], classes: int) -> FeatureNet | None:
    """The cached network, or None when the file is missing, damaged, or not the one asked for."""
    expected = {}
    for name, (w_shape, _) in param_shapes(shape, classes).items():
        expected.update({f"{name}.w": w_shape, f"{name}.b": w_shape[:1]})
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
        params = {k: arrays[k] for k in expected}
        ok = (str(arrays["identity"]) == ident
              and all(v.shape == expected[k] and v.dtype == np.float32 and np.isfinite(v).all() for k, v in params.items()))
        accuracy = float(arrays["accuracy"])
    except (OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile):  # missing, damaged or incomplete: retrain
        return None
    return FeatureNet(params, shape, classes, ident, accuracy) if ok else None


def save(net: FeatureNet, path: Path) -> None:
    """Write the network atomically; a cache folder that cannot be written is not an error."""
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: np.savez would add '.npz' to a path
            np.savez(f, identity=np.array(net.identity), accuracy=np.array(net.accuracy), **net.params)

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, write)
    except OSError:
        pass
