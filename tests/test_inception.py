"""The FID Inception-v3 network (madloop.inception) and metric fid_inception, with random weights (the real file is
not on a test machine): TensorFlow's bilinear resize, grey images fed as three equal channels, FID(a, a) = 0 and
growing with noise, a tiny run that records which network measured it, and one clear line for a bad file."""

import hashlib

import numpy as np
import pytest
import torch

import madloop
from madloop import inception, store
from madloop.errors import MadloopError
from madloop.images import DigitsData, pools

TINY = {"data": "digits", "runs": 1, "gens": 1, "n_real": 32, "n_synth": 32, "n_eval": 4, "n_ref": 4, "images": 64,
        "batch": 32, "channels": 8, "steps": 2, "warmup": 32, "ema": 32, "metrics": ("fid_inception",)}


def random_weights(seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict shaped as the FID Inception's: He-normal convs (activations of order one through 94 layers),
    batch normalisation with random statistics, and the unused classifier head the real file holds."""
    rng = np.random.default_rng(seed)
    state = {}
    for k, shape in inception.param_shapes().items():
        if k.endswith("conv.weight"):
            v = rng.normal(0, np.sqrt(2 / np.prod(shape[1:])), shape)
        elif k.endswith(("running_var", "bn.weight")):
            v = rng.uniform(0.5, 1.5, shape)
        else:
            v = rng.normal(0, 0.1, shape)
        state[k] = torch.from_numpy(v.astype(np.float32))
    return {**state, "fc.weight": torch.zeros(1008, 2048), "fc.bias": torch.zeros(1008)}


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("inception") / inception.FILE
    torch.save(random_weights(), path)
    return path


@pytest.fixture(scope="module")
def digits():
    return pools(DigitsData()).reference.x[:8]  # (8, 1, 8, 8) in [0, 1]


def test_the_resize_is_tensorflows_bilinear():
    # Source position i * n_in / n_out, no half-pixel offset, the last pixel repeated past the edge: exact
    # on a linear ramp.
    for n_in in (8, 28):
        ramp = np.arange(n_in, dtype=np.float64)
        s = np.arange(inception.SIZE) * n_in / inception.SIZE
        np.testing.assert_allclose(inception.resize_matrix(n_in, inception.SIZE) @ ramp, np.minimum(s, n_in - 1), atol=1e-4)
    np.testing.assert_array_equal(inception.resize_matrix(5, 5), np.eye(5))


def test_grey_images_are_read_as_three_equal_channels_and_uint8_as_floats(weights, digits):
    net = inception.load(weights)
    phi = net.embed(digits[:3])
    assert phi.shape == (3, inception.FEATURES) and phi.dtype == np.float64 and np.isfinite(phi).all()
    assert np.abs(phi).max() > 1e-3  # the random network passes a signal through
    np.testing.assert_array_equal(net.embed(np.repeat(digits[:3], 3, axis=1)), phi)
    as_bytes = np.round(digits[:3] * 255).astype(np.uint8)
    np.testing.assert_allclose(net.embed(as_bytes), net.embed(as_bytes / np.float32(255)), rtol=1e-5, atol=1e-6)


def test_fid_of_a_set_with_itself_is_zero_and_grows_with_noise(weights, digits):
    a = digits[:6]
    assert madloop.fid(a, a, features=f"inception:{weights}") == pytest.approx(0, abs=1e-6)
    net = inception.load(weights)
    assert inception.load(weights) is net  # read once per process; a network object works as features too
    noise = np.random.default_rng(1).standard_normal(a.shape)
    low, high = (madloop.fid(a, np.clip(a + s * noise, 0, 1).astype(np.float32), features=net) for s in (0.1, 0.5))
    assert 0 < low < high


def test_a_run_records_fid_inception_and_the_network_that_measured_it(tmp_path):
    weights = tmp_path / inception.FILE
    torch.save(random_weights(), weights)
    result = madloop.run(out=tmp_path / "run", inception=str(weights), **TINY)
    s = result.summary()
    fid = s[s.metric == "fid_inception"].set_index("gen")["mean"]
    assert set(fid.index) == {0, 1} and 0 <= fid[0] < fid[1]  # the real floor, then a barely trained U-Net
    meta = store.read_meta(result.path)
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    assert meta["inception"] == {"identity": f"inception-v3-fid:sha256-{digest[:12]}", "sha256": digest,
                                 "file": str(weights), "dim": 2048}
    assert "features" not in meta  # no metric in the domain network's space, so no domain network recorded
    assert meta["config"]["data_options"]["inception"] == str(weights)
    # Another file at that path would mix two networks' FIDs in one table: a resume refuses it.
    torch.save(random_weights(seed=1), weights)
    (result.path / store.PARTS).mkdir()  # the run looks interrupted again
    with pytest.raises(MadloopError, match="has changed since .* started"):
        madloop.resume(result.path)


def test_fid_inception_without_weights_fails_before_the_run_starts(tmp_path):
    with pytest.raises(MadloopError, match="pass --inception /path/to/pt_inception-2015-12-05-6726825d.pth"):
        madloop.run(out=tmp_path / "run", **TINY)
    assert not (tmp_path / "run").exists()
    with pytest.raises(MadloopError, match="does not exist; download pt_inception"):
        madloop.run(out=tmp_path / "run", inception=str(tmp_path / "nowhere.pth"), **TINY)
    assert not (tmp_path / "run").exists()


class Code:
    """An object torch.load(weights_only=True) refuses to unpickle."""


def test_a_bad_weights_file_is_one_clear_error(tmp_path, weights, digits):
    good = random_weights()
    n, n_7c = len(inception.param_shapes()), sum("Mixed_7c" in k for k in inception.param_shapes())
    files = {"text.pth": None, "code.pth": {"net": Code()}, "tensor.pth": torch.zeros(3),
             "short.pth": {k: v for k, v in good.items() if "Mixed_7c" not in k},
             "extra.pth": {**good, "AuxLogits.fc.weight": torch.zeros(1000, 768)},
             "shape.pth": {**good, "Mixed_5b.branch1x1.conv.weight": torch.zeros(64, 192, 3, 3)}}
    expected = {"text.pth": "is not a PyTorch state dict of plain tensors", "code.pth": "is not a PyTorch state dict of plain tensors",
                "tensor.pth": "holds a Tensor, not the state dict",
                "short.pth": f"lacks {n_7c} of its {n} tensors (such as Mixed_7c.branch1x1.conv.weight)",
                "extra.pth": "holds 1 tensors it does not have (such as AuxLogits.fc.weight)",
                "shape.pth": "Mixed_5b.branch1x1.conv.weight is (64, 192, 3, 3), expected a float tensor of shape (64, 192, 1, 1)"}
    for name, content in files.items():
        path = tmp_path / name
        if content is None:
            path.write_text("not weights")
        else:
            torch.save(content, path)
        with pytest.raises(MadloopError) as err:
            madloop.fid(digits, digits, features=f"inception:{path}")
        assert expected[name] in str(err.value) and "\n" not in str(err.value), name
    with pytest.raises(MadloopError, match=r"must be an array of images \(n, H, W\) or \(n, 1 or 3, H, W\)"):
        madloop.fid(np.zeros((4, 2, 8, 8)), digits, features=f"inception:{weights}")
