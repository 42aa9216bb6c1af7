"""The FID Inception-v3 network (Szegedy et al. 2016, as frozen in TensorFlow's 2015-12-05 graph), read from a
local weights file, for the standard FID of Heusel et al. 2017 (metric ``fid_inception``).

The weights are the file that pytorch-fid, torch-fidelity and torchmetrics use,
``pt_inception-2015-12-05-6726825d.pth``: a state dict of plain tensors, which the user downloads once and
passes by path. Nothing is downloaded here, and the file is read with ``torch.load(weights_only=True)``, which
refuses pickled code. The network is written here as a pure function of that state dict (read from the
reference implementations, not copied), so madloop needs neither torchvision nor torch-fidelity.

    input  x: images (n, C, H, W) in [0, 1] (or uint8), C = 1 (replicated to 3 channels, as grey images are
              fed to the reference implementations) or 3
    v = 255 x, resized to 299 x 299 by TensorFlow 1.x's bilinear resize (source pixel i * in / out, no half-pixel
              offset: what the graph did and torch-fidelity reproduces), then mapped to (v - 128) / 128
    stem: 3x3 convs 32 (stride 2), 32, 64, max-pool; 1x1 conv 80, 3x3 conv 192, max-pool      -> 35 x 35 x 192
    Mixed_5b..5d (block A), 6a (B), 6b..6e (C), 7a (D), 7b, 7c (E)                           -> 8 x 8 x 2048
    global average pool                                                                       -> phi(x), 2048

Every conv is followed by frozen batch normalisation (eps 0.001) and a ReLU. Where the TF graph differs from
torchvision's Inception-v3, this follows the graph, as the FID implementations do: the average-pool branches
average over the pixels inside the image only (``count_include_pad=False``), and Mixed_7c pools its pool
branch with a 3x3 max-pool. uint8 images give torch-fidelity's input exactly; float images skip its rounding
to 8 bits.

torch is imported inside the functions that run the network, so importing this module costs nothing.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from madloop.errors import MadloopError
from madloop.threads import one_thread

if TYPE_CHECKING:
    import torch

FILE = "pt_inception-2015-12-05-6726825d.pth"  # its name in pytorch-fid's releases
SIZE = 299  # the side the network reads
FEATURES = 2048  # the pool3 features of the standard FID
EPS = 1e-3  # batch normalisation epsilon of the TF graph
FORWARD_BATCH = 16  # images per forward pass (a 299 x 299 batch of 16 needs about 0.5 GB)
OPTIONAL = ("fc.weight", "fc.bias")  # the classifier head: in the file, unused by FID

# ----------------------------------------------------------------------------------------------------------
# The architecture as data: every conv's (in, out, kernel height, kernel width, stride, padded). A padded conv
# keeps its input's size (padding kernel // 2); the others pad nothing.


def _block_a(cin: int, pool: int) -> dict[str, tuple]:
    return {"branch1x1": (cin, 64, 1, 1, 1, True), "branch5x5_1": (cin, 48, 1, 1, 1, True),
            "branch5x5_2": (48, 64, 5, 5, 1, True), "branch3x3dbl_1": (cin, 64, 1, 1, 1, True),
            "branch3x3dbl_2": (64, 96, 3, 3, 1, True), "branch3x3dbl_3": (96, 96, 3, 3, 1, True),
            "branch_pool": (cin, pool, 1, 1, 1, True)}


def _block_b(cin: int) -> dict[str, tuple]:
    return {"branch3x3": (cin, 384, 3, 3, 2, False), "branch3x3dbl_1": (cin, 64, 1, 1, 1, True),
            "branch3x3dbl_2": (64, 96, 3, 3, 1, True), "branch3x3dbl_3": (96, 96, 3, 3, 2, False)}


def _block_c(cin: int, c7: int) -> dict[str, tuple]:
    return {"branch1x1": (cin, 192, 1, 1, 1, True), "branch7x7_1": (cin, c7, 1, 1, 1, True),
            "branch7x7_2": (c7, c7, 1, 7, 1, True), "branch7x7_3": (c7, 192, 7, 1, 1, True),
            "branch7x7dbl_1": (cin, c7, 1, 1, 1, True), "branch7x7dbl_2": (c7, c7, 7, 1, 1, True),
            "branch7x7dbl_3": (c7, c7, 1, 7, 1, True), "branch7x7dbl_4": (c7, c7, 7, 1, 1, True),
            "branch7x7dbl_5": (c7, 192, 1, 7, 1, True), "branch_pool": (cin, 192, 1, 1, 1, True)}


def _block_d(cin: int) -> dict[str, tuple]:
    return {"branch3x3_1": (cin, 192, 1, 1, 1, True), "branch3x3_2": (192, 320, 3, 3, 2, False),
            "branch7x7x3_1": (cin, 192, 1, 1, 1, True), "branch7x7x3_2": (192, 192, 1, 7, 1, True),
            "branch7x7x3_3": (192, 192, 7, 1, 1, True), "branch7x7x3_4": (192, 192, 3, 3, 2, False)}


def _block_e(cin: int) -> dict[str, tuple]:
    return {"branch1x1": (cin, 320, 1, 1, 1, True), "branch3x3_1": (cin, 384, 1, 1, 1, True),
            "branch3x3_2a": (384, 384, 1, 3, 1, True), "branch3x3_2b": (384, 384, 3, 1, 1, True),
            "branch3x3dbl_1": (cin, 448, 1, 1, 1, True), "branch3x3dbl_2": (448, 384, 3, 3, 1, True),
            "branch3x3dbl_3a": (384, 384, 1, 3, 1, True), "branch3x3dbl_3b": (384, 384, 3, 1, 1, True),
            "branch_pool": (cin, 192, 1, 1, 1, True)}


STEM = {"Conv2d_1a_3x3": (3, 32, 3, 3, 2, False), "Conv2d_2a_3x3": (32, 32, 3, 3, 1, False),
        "Conv2d_2b_3x3": (32, 64, 3, 3, 1, True), "Conv2d_3b_1x1": (64, 80, 1, 1, 1, True),
        "Conv2d_4a_3x3": (80, 192, 3, 3, 1, False)}
BLOCKS = {"Mixed_5b": _block_a(192, 32), "Mixed_5c": _block_a(256, 64), "Mixed_5d": _block_a(288, 64),
          "Mixed_6a": _block_b(288), "Mixed_6b": _block_c(768, 128), "Mixed_6c": _block_c(768, 160),
          "Mixed_6d": _block_c(768, 160), "Mixed_6e": _block_c(768, 192), "Mixed_7a": _block_d(768),
          "Mixed_7b": _block_e(1280), "Mixed_7c": _block_e(2048)}
CONVS = {**STEM, **{f"{block}.{name}": conv for block, convs in BLOCKS.items() for name, conv in convs.items()}}


def param_shapes() -> dict[str, tuple[int, ...]]:
    """Every tensor FID needs from the state dict, with its shape: per conv its weight (no bias) and its batch
    normalisation's weight, bias, running mean and running variance."""
    shapes = {}
    for name, (cin, cout, kh, kw, _, _) in CONVS.items():
        shapes[f"{name}.conv.weight"] = (cout, cin, kh, kw)
        shapes.update({f"{name}.bn.{k}": (cout,) for k in ("weight", "bias", "running_mean", "running_var")})
    return shapes


# ----------------------------------------------------------------------------------------------------------
# The network, as a pure function of its parameters.


def resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """TensorFlow 1.x's bilinear resize along one axis (align_corners=False) as an (n_out, n_in) matrix:
    output pixel i reads source position s = i * n_in / n_out between pixels floor(s) and floor(s) + 1 (the
    last pixel repeated past the edge)."""
    s = np.arange(n_out) * (n_in / n_out)
    lo = np.floor(s).astype(int)
    hi = np.minimum(lo + 1, n_in - 1)
    m = np.zeros((n_out, n_in))
    np.add.at(m, (np.arange(n_out), lo), 1 - (s - lo))
    np.add.at(m, (np.arange(n_out), hi), s - lo)
    return m.astype(np.float32)


def preprocess(x: torch.Tensor) -> torch.Tensor:
    """Images (n, 1 or 3, H, W) in [0, 1] -> the network's input (n, 3, 299, 299) in [-1, 1]."""
    import torch

    v = 255 * x.expand(-1, 3, -1, -1)
    rows = torch.from_numpy(resize_matrix(x.shape[2], SIZE))
    cols = torch.from_numpy(resize_matrix(x.shape[3], SIZE))
    v = rows @ v @ cols.T
    return (v - 128) / 128


def inception(p: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """phi(x) (n, 2048): the pool3 features of images x (n, 1 or 3, H, W) in [0, 1]."""
    import torch
    import torch.nn.functional as F

    def conv(name: str, h: torch.Tensor) -> torch.Tensor:
        _, _, kh, kw, stride, padded = CONVS[name]
        h = F.conv2d(h, p[f"{name}.conv.weight"], stride=stride, padding=(kh // 2, kw // 2) if padded else 0)
        h = F.batch_norm(h, p[f"{name}.bn.running_mean"], p[f"{name}.bn.running_var"], p[f"{name}.bn.weight"],
                         p[f"{name}.bn.bias"], training=False, eps=EPS)
        return F.relu(h)

    def chain(block: str, names: tuple[str, ...], h: torch.Tensor) -> torch.Tensor:
        for name in names:
            h = conv(f"{block}.{name}" if block else name, h)
        return h

    def avg_pool(h: torch.Tensor) -> torch.Tensor:  # the graph averages over pixels inside the image only
        return F.avg_pool2d(h, 3, stride=1, padding=1, count_include_pad=False)

    # Stem: 299 -> 35.
    h = F.max_pool2d(chain("", ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3"), preprocess(x)), 3, stride=2)
    h = F.max_pool2d(conv("Conv2d_4a_3x3", conv("Conv2d_3b_1x1", h)), 3, stride=2)
    # Blocks A at 35 x 35.
    for b in ("Mixed_5b", "Mixed_5c", "Mixed_5d"):
        h = torch.cat([conv(f"{b}.branch1x1", h), chain(b, ("branch5x5_1", "branch5x5_2"), h),
                       chain(b, ("branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"), h),
                       conv(f"{b}.branch_pool", avg_pool(h))], 1)
    # Block B: 35 -> 17.
    b = "Mixed_6a"
    h = torch.cat([conv(f"{b}.branch3x3", h), chain(b, ("branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"), h),
                   F.max_pool2d(h, 3, stride=2)], 1)
    # Blocks C at 17 x 17 (factorised 7x7 convolutions).
    for b in ("Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"):
        h = torch.cat([conv(f"{b}.branch1x1", h), chain(b, ("branch7x7_1", "branch7x7_2", "branch7x7_3"), h),
                       chain(b, tuple(f"branch7x7dbl_{i}" for i in range(1, 6)), h),
                       conv(f"{b}.branch_pool", avg_pool(h))], 1)
    # Block D: 17 -> 8.
    b = "Mixed_7a"
    h = torch.cat([chain(b, ("branch3x3_1", "branch3x3_2"), h), chain(b, tuple(f"branch7x7x3_{i}" for i in range(1, 5)), h),
                   F.max_pool2d(h, 3, stride=2)], 1)
    # Blocks E at 8 x 8; the graph's Mixed_7c max-pools its pool branch.
    for b, pool in (("Mixed_7b", avg_pool), ("Mixed_7c", lambda h: F.max_pool2d(h, 3, stride=1, padding=1))):
        wide, deep = conv(f"{b}.branch3x3_1", h), chain(b, ("branch3x3dbl_1", "branch3x3dbl_2"), h)
        h = torch.cat([conv(f"{b}.branch1x1", h), conv(f"{b}.branch3x3_2a", wide), conv(f"{b}.branch3x3_2b", wide),
                       conv(f"{b}.branch3x3dbl_3a", deep), conv(f"{b}.branch3x3dbl_3b", deep),
                       conv(f"{b}.branch_pool", pool(h))], 1)
    # Global average pool: the 2048 features.
    return h.mean((2, 3))


# ----------------------------------------------------------------------------------------------------------
# The network read from a file.


@dataclass(frozen=True, eq=False)
class InceptionNet:
    """The FID Inception-v3 network read from ``path``; ``identity`` (with the file's SHA-256) labels every FID
    measured in its feature space."""

    params: dict[str, np.ndarray]
    path: str
    identity: str
    sha256: str

    dim = FEATURES
    shape = None  # reads any image size: every image is resized to 299 x 299

    def embed(self, x: np.ndarray) -> np.ndarray:
        """phi(x) (n, 2048) float64 of images x (n, C, H, W), C = 1 or 3, floats in [0, 1] or uint8.

        Batches of FORWARD_BATCH images from the start of x, on one thread, so an image's features depend on
        x alone (see features.FeatureNet.forward)."""
        import torch

        x = self.check(x)
        p = {k: torch.from_numpy(v) for k, v in self.params.items()}
        phi = [np.zeros((0, FEATURES))]
        with torch.no_grad(), one_thread():
            for i in range(0, len(x), FORWARD_BATCH):
                phi.append(inception(p, torch.from_numpy(x[i : i + FORWARD_BATCH])).double().numpy())
        return np.concatenate(phi)

    def check(self, x: np.ndarray) -> np.ndarray:
        """x as float32 (n, C, H, W) in [0, 1] with C = 1 or 3; uint8 images are divided by 255."""
        x = np.asarray(x)
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise MadloopError(f"the Inception network reads images (n, 1 or 3, H, W), got {x.shape}")
        if x.dtype == np.uint8:
            return (x / np.float32(255)).astype(np.float32)
        return np.array(x, dtype=np.float32)  # a copy: torch reads only writable arrays without a warning


_NETS: dict[tuple[str, int, int], InceptionNet] = {}


def load(path: str | os.PathLike) -> InceptionNet:
    """The network in weights file ``path`` (read once per process while the file is unchanged).

    Raises MadloopError, in one line, when the file is missing, is not a state dict of plain tensors, or
    lacks a tensor FID needs or holds it in another shape."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise MadloopError(f"the Inception weights file {path} does not exist; download {FILE} (pytorch-fid's "
                           "release 'fid_weights') and pass its path")
    stat = p.stat()
    key = (str(p.resolve()), stat.st_mtime_ns, stat.st_size)
    if key not in _NETS:
        _NETS[key] = read(p)
    return _NETS[key]


def read(path: Path) -> InceptionNet:
    import pickle

    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise MadloopError(f"{path} is not a PyTorch state dict of plain tensors (as {FILE} is): {reason}") from None
    if not isinstance(state, dict):
        raise MadloopError(f"{path} holds a {type(state).__name__}, not the state dict of {FILE}")
    expected = param_shapes()
    missing = [k for k in expected if k not in state]
    unknown = [k for k in state if k not in expected and k not in OPTIONAL and not k.endswith(".num_batches_tracked")]
    if missing or unknown:
        what = (f"lacks {len(missing)} of its {len(expected)} tensors (such as {missing[0]})" if missing
                else f"holds {len(unknown)} tensors it does not have (such as {unknown[0]})")
        raise MadloopError(f"{path} is not the FID Inception-v3 state dict ({FILE}): it {what}")
    params = {}
    for k, shape in expected.items():
        v = state[k]
        if not isinstance(v, torch.Tensor) or tuple(v.shape) != shape or not v.is_floating_point():
            got = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
            raise MadloopError(f"{path} is not the FID Inception-v3 state dict ({FILE}): {k} is {got}, expected a "
                               f"float tensor of shape {shape}")
        params[k] = v.detach().to(torch.float32).numpy().copy()
        if not np.isfinite(params[k]).all():
            raise MadloopError(f"{path}: {k} holds NaN or inf values")
    digest = sha256(path)
    return InceptionNet(params, str(path), f"inception-v3-fid:sha256-{digest[:12]}", digest)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
