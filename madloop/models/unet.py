"""Model family ``unet``: EDM diffusion on images (Karras et al. 2022) with a compact U-Net, one per run.

Symbols: x an image mapped to [-1, 1] (x = 2 u - 1 for pixel values u in [0, 1]), sigma the noise level,
F the raw network, D(x; sigma) = c_skip x + c_out F(c_in x, c_noise) the preconditioned denoiser
(madloop.models.diffusion.edm_denoiser, sigma_data = 0.5), y a class label, w the classifier-free guidance
weight, lam the sampling bias (SPEC section 2), omega the SIMS guidance strength.

Network (after EDM's DDPM++ "SongUNet" and ADM's "DhariwalUNet", much smaller): a positional embedding of
c_noise (plus a learned embedding of y; the null label's embedding is zero) through two SiLU layers; a 3x3
input conv; per resolution level ``blocks`` residual blocks [GroupNorm, SiLU, conv, + embedding, GroupNorm,
SiLU, dropout, conv, skip, x sqrt(1/2)] (self-attention after each block at the ``attention`` resolutions),
2x2 average pooling between levels; a decoder that mirrors it with ``blocks + 1`` blocks per level, each
taking one skip connection, nearest-neighbour upsampling then a 3x3 conv between levels; GroupNorm, SiLU
and a 3x3 output conv. The last conv of every residual branch starts at zero, so each block starts as
identity and F as zero (D = c_skip x).

Monte-Carlo runs: the R runs' networks are one grouped network. Every activation has shape
(batch, R * channels, H, W) with run r's channels contiguous, convolutions use ``groups=R`` and
GroupNorm R times the groups, so run r's numbers never meet another run's. The loss is the sum over runs of
each run's mean loss and Adam and the EMA act elementwise, so every run trains as it would alone, with its
own data, initialisation, noise, label dropout, dropout masks and minibatch order, all drawn from its row of
the RunRNG on the host (dropout masks come from a counter-based hash of a host-drawn key), so a run's numbers
do not depend on the device or on the other runs in its chunk. ``runs_per_pass`` = 1 evaluates the same
weights one run at a time instead (a loop over runs; see the spec for which is faster).

Training budget: ``images`` training images seen per run and fit (EDM's kimg), not epochs: a fit then costs
the same whatever the size of the training set (which grows in accumulating loops), and the EMA half-life
and warm-up are in the same unit.

Sampling bias lam: a conditional model samples with classifier-free guidance of weight w = 1/lam - 1,
D = (1 + w) D(x | y) - w D(x | null) (lam = 1 / (1 + w), as in the MAD paper); an unconditional model has
nothing to guide with and samples at reduced temperature (initial noise scaled by sqrt(lam); the Heun
sampler adds no noise later). Generated labels are balanced (n // classes of each class, the remainder to the
first classes) and shuffled per run, so a generation's class histogram measures the model, not label
sampling noise.

torch is imported inside functions: registering the family and reading its options does not import it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from madloop.errors import MadloopError
from madloop.models.base import check_sampling, check_torch_options, same_sampler, torch_device
from madloop.models.diffusion import edm_denoiser, edm_loss, heun_sampler, karras_sigmas, positional_embedding
from madloop.registry import MODELS
from madloop.rng import Role, RunRNG, role_id
from madloop.samples import Samples
from madloop.threads import one_thread

if TYPE_CHECKING:
    import torch

    Tensor = torch.Tensor

# Images (runs x samples) per network pass when sampling. On a CPU thread, 256 rows keep the activations in
# cache: 1.2-1.6x the images/s of 2048 rows at 8x8 (8 runs) and 16x16 (3 runs), measured; a GPU wants big
# passes (not measured).
SAMPLE_ROWS = {"cpu": 256, "cuda": 16384}
SKIP = math.sqrt(0.5)  # residual sum scale (EDM's skip_scale)


# ----------------------------------------------------------------------------------------------------------
# Layers of the grouped network. h has shape (batch, R * channels, H, W); weights have the run on axis 0.


class Weights:
    """Stacked weights by name (each of shape (R, *shape)), handed to the layers as they ask for them.

    Built without ``tensors`` it records: the first request of a name creates a one-run placeholder and
    notes its shape and initialisation, so one forward pass lists the network's weights in order
    (``init_weights`` then draws them per run). ``init`` is ("uniform", fan_in), ("zero",) or ("one",).
    """

    def __init__(self, tensors: dict[str, Tensor] | None = None):
        self.recording = tensors is None
        self.tensors = {} if tensors is None else tensors
        self.inits: dict[str, tuple] = {}

    def __call__(self, name: str, shape: tuple[int, ...], init: tuple) -> Tensor:
        if self.recording and name not in self.tensors:
            import torch

            self.tensors[name] = torch.zeros(1, *shape)
            self.inits[name] = init
        return self.tensors[name]


def conv(w: Weights, name: str, h: Tensor, runs: int, out: int, k: int = 3, zero: bool = False) -> Tensor:
    import torch.nn.functional as F

    c = h.shape[1] // runs
    W = w(f"{name}.w", (out, c, k, k), ("zero",) if zero else ("uniform", c * k * k))
    b = w(f"{name}.b", (out,), ("zero",))
    return F.conv2d(h, W.reshape(runs * out, c, k, k), b.reshape(-1), padding=k // 2, groups=runs)


def norm(w: Weights, name: str, h: Tensor, runs: int) -> Tensor:
    """GroupNorm with groups of at least 4 channels (at most 32 groups) per run."""
    import torch.nn.functional as F

    c = h.shape[1] // runs
    groups = next(g for g in range(min(32, c // 4), 0, -1) if c % g == 0)
    scale, shift = w(f"{name}.scale", (c,), ("one",)), w(f"{name}.shift", (c,), ("zero",))
    return F.group_norm(h, runs * groups, scale.reshape(-1), shift.reshape(-1), eps=1e-5)


def linear(w: Weights, name: str, e: Tensor, out: int) -> Tensor:
    """e (R, batch, in) -> (R, batch, out)."""
    import torch

    W = w(f"{name}.w", (e.shape[2], out), ("uniform", e.shape[2]))
    return torch.baddbmm(w(f"{name}.b", (1, out), ("zero",)), e, W)


def join(a: Tensor, b: Tensor, runs: int) -> Tensor:
    """Concatenate channels run by run (a skip connection)."""
    import torch

    B, _, H, W = a.shape
    return torch.cat([a.reshape(B, runs, -1, H, W), b.reshape(B, runs, -1, H, W)], 2).reshape(B, -1, H, W)


def dropout(h: Tensor, p: float, key: Tensor, runs: int) -> Tensor:
    """Inverted dropout whose mask is a hash of (the run's key, the element's index within the run's tensor):
    run r's mask is the same in any chunk and on any device. ``key`` (R,) int64 in [0, 2^32)."""
    import torch

    B, RC, H, W = h.shape
    per_run = RC // runs * H * W
    index = torch.arange(B * per_run, device=h.device).reshape(B, 1, per_run)
    u = (hash32(hash32(key.reshape(1, runs, 1)) ^ (index & 0xFFFFFFFF)) >> 8).float() / 2**24
    return h * (u >= p).reshape(h.shape).to(h.dtype) / (1 - p)


def hash32(x: Tensor) -> Tensor:
    """A 32-bit integer hash (two xor-shift-multiply rounds) on int64 tensors holding values < 2^32."""
    for _ in range(2):
        x = (((x >> 16) ^ x) * 0x45D9F3B) & 0xFFFFFFFF
    return (x >> 16) ^ x


def block(w: Weights, name: str, h: Tensor, emb: Tensor, out: int, spec: UNet, key: Tensor | None) -> Tensor:
    """A residual block, then self-attention when its resolution is one of ``spec.attention``."""
    import torch.nn.functional as F

    runs, B = emb.shape[:2]
    x = F.silu(norm(w, f"{name}.norm0", h, runs))
    x = conv(w, f"{name}.conv0", x, runs, out)
    x = x + linear(w, f"{name}.emb", emb, out).transpose(0, 1).reshape(B, runs * out, 1, 1)
    x = F.silu(norm(w, f"{name}.norm1", x, runs))
    if key is not None:
        x = dropout(x, spec.dropout, key ^ role_id(name), runs)
    x = conv(w, f"{name}.conv1", x, runs, out, zero=True)
    skip = h if h.shape[1] == runs * out else conv(w, f"{name}.skip", h, runs, out, k=1)
    h = (x + skip) * SKIP
    if h.shape[-1] in spec.attention:
        h = attention(w, f"{name}.attn", h, runs)
    return h


def attention(w: Weights, name: str, h: Tensor, runs: int) -> Tensor:
    """Multi-head self-attention over the pixels (64 channels a head, at least one head)."""
    import torch.nn.functional as F

    B, RC, H, W = h.shape
    c = RC // runs
    heads = max(1, c // 64)
    qkv = conv(w, f"{name}.qkv", norm(w, f"{name}.norm", h, runs), runs, 3 * c, k=1)
    q, k, v = qkv.reshape(B * runs, 3, heads, c // heads, H * W).transpose(-1, -2).unbind(1)
    a = F.scaled_dot_product_attention(q, k, v).transpose(-1, -2).reshape(B, RC, H, W)
    return (h + conv(w, f"{name}.proj", a, runs, c, k=1, zero=True)) * SKIP


def encode(w: Weights, spec: UNet, x: Tensor, c_noise: Tensor, y: Tensor | None, keep: Tensor | None,
           key: Tensor | None = None) -> tuple[Tensor, list[Tensor], Tensor]:
    """The encoder half of F: the embedding of the noise level and label, and the encoder's features (its last
    output h and the skip connections), for x (R, B, C, H, W); see ``unet``."""
    import torch
    import torch.nn.functional as F

    runs, B, C, H, W = x.shape
    ch = spec.channels
    # Embedding of the noise level and the label.
    emb = positional_embedding(c_noise.expand(runs, B, 1, 1, 1).reshape(runs, B, 1).to(x.dtype), ch)
    if spec.conditional:
        table = w("label", (spec.classes, ch), ("uniform", 1))
        emb = emb + keep[..., None] * torch.take_along_dim(table, y[..., None], 1)
    emb = F.silu(linear(w, "map1", F.silu(linear(w, "map0", emb, 4 * ch)), 4 * ch))
    # Encoder.
    h = conv(w, "in", x.transpose(0, 1).reshape(B, runs * C, H, W), runs, ch * spec.mults[0])
    if spec.channels_last:
        h = h.contiguous(memory_format=torch.channels_last)
    skips = [h]
    for level, mult in enumerate(spec.mults):
        if level > 0:
            h = F.avg_pool2d(h, 2)
            skips.append(h)
        for i in range(spec.blocks):
            h = block(w, f"enc{level}.{i}", h, emb, ch * mult, spec, key)
            skips.append(h)
    return h, skips, emb


def decode(w: Weights, spec: UNet, h: Tensor, skips: list[Tensor], emb: Tensor, shape: tuple[int, ...],
           key: Tensor | None = None) -> Tensor:
    """The decoder half of F: the encoder's features -> (R, B, C, H, W) of ``shape``; ``skips`` is not changed."""
    import torch.nn.functional as F

    runs, B, C, H, W = shape
    skips = list(skips)
    # Decoder, one skip connection per block.
    for level, mult in reversed(list(enumerate(spec.mults))):
        for i in range(spec.blocks + 1):
            h = block(w, f"dec{level}.{i}", join(h, skips.pop(), runs), emb, spec.channels * mult, spec, key)
        if level > 0:
            h = F.interpolate(h, scale_factor=2.0, mode="nearest")
            h = conv(w, f"up{level}", h, runs, spec.channels * spec.mults[level - 1])
    h = conv(w, "out", F.silu(norm(w, "out", h, runs)), runs, C, zero=True)
    return h.reshape(B, runs, C, H, W).transpose(0, 1).float()


DECODER = ("dec", "up", "out")  # the weights of the decoder half start with these names (``decode``)


def is_decoder(name: str) -> bool:
    return name.split(".")[0].startswith(DECODER)


def unet(w: Weights, spec: UNet, x: Tensor, c_noise: Tensor, y: Tensor | None, keep: Tensor | None,
         key: Tensor | None = None) -> Tensor:
    """F(x, c_noise | y): x (R, B, C, H, W) -> (R, B, C, H, W). ``y`` (R, B) labels and ``keep`` (R, B) 1 for a
    label, 0 for the null label (conditional models); ``key`` (R,) the dropout keys (training with dropout)."""
    return decode(w, spec, *encode(w, spec, x, c_noise, y, keep, key), x.shape, key)


def init_weights(spec: UNet, shape: tuple[int, int, int], rng: RunRNG, device) -> dict[str, Tensor]:
    """Per-run initial weights: U(-sqrt(3 / fan_in), sqrt(3 / fan_in)) (variance 1 / fan_in), zero biases and
    zero last convs of residual branches, GroupNorm scales one. Run r's draws come from row r of ``rng``."""
    import torch

    recorder = Weights()
    one = torch.zeros(1, 1, *shape)
    unet(recorder, spec, one, torch.zeros(()), torch.zeros(1, 1, dtype=torch.long), torch.ones(1, 1))
    weights = {}
    for name, init in recorder.inits.items():
        size = recorder.tensors[name].shape[1:]
        if init[0] == "uniform":
            value = (2 * rng.random(*size) - 1) * math.sqrt(3 / init[1])
        else:
            value = np.full((rng.n_runs, *size), 1.0 if init[0] == "one" else 0.0)
        weights[name] = torch.as_tensor(value, dtype=torch.float32, device=device)
    return weights


# ----------------------------------------------------------------------------------------------------------
# Fitted models.


@dataclass(frozen=True)
class UNetModel:
    """One trained U-Net per run: ``weights`` (name -> (R, ...), the EMA weights when the spec keeps an EMA)
    for images of ``shape`` (C, H, W)."""

    spec: UNet
    weights: dict
    shape: tuple[int, int, int]

    @property
    def runs(self) -> int:
        return next(iter(self.weights.values())).shape[0]

    def denoise(self, x: Tensor, sigma, y: Tensor | None, w: float = 0.0) -> Tensor:
        """D(x; sigma | y) with classifier-free guidance weight w (conditional models; w = 0: unguided)."""
        import torch

        if not self.spec.conditional:
            return self.spec.denoiser(self.weights, x, sigma, None, None)
        keep = torch.ones(y.shape, device=x.device)
        if w == 0:
            return self.spec.denoiser(self.weights, x, sigma, y, keep)
        # Conditional and null-label denoisers in one pass.
        both = self.spec.denoiser(self.weights, torch.cat([x, x], 1), sigma, torch.cat([y, y], 1),
                                  torch.cat([keep, 0 * keep], 1))
        d_y, d_null = both.chunk(2, 1)
        return (1 + w) * d_y - w * d_null

    def sample(self, n: int, rng: RunRNG, lam: float = 1.0) -> Samples:
        return self.spec.generate(self, lambda x, sigma, y, w, step: self.denoise(x, sigma, y, w), n, rng, lam)


@dataclass(frozen=True)
class GuidedUNet:
    """SIMS sampling: (1 + omega) D_base - omega D_aux on the guided steps, D_base elsewhere (as
    madloop.models.diffusion.GuidedModel; lam's classifier-free guidance acts inside each D)."""

    base: UNetModel
    aux: UNetModel
    omega: float
    interval: tuple[float, float] = (0.0, 1.0)
    shared_encoder: bool = False  # the aux's encoder weights are the base's tensors: one encoder pass for both

    def denoise(self, x: Tensor, sigma, y, w: float, step: int) -> Tensor:
        lo, hi = self.interval
        if self.omega == 0 or not lo <= step / self.base.spec.steps < hi:
            return self.base.denoise(x, sigma, y, w)
        if self.shared_encoder:
            d, d_aux = self.pair(x, sigma, y, w)
        else:
            d, d_aux = self.base.denoise(x, sigma, y, w), self.aux.denoise(x, sigma, y, w)
        return (1 + self.omega) * d - self.omega * d_aux

    def pair(self, x: Tensor, sigma, y, w: float) -> tuple[Tensor, Tensor]:
        """D_base and D_aux (classifier-free guidance w inside each) from one encoder pass."""
        import torch

        spec = self.base.spec
        keep = None if not spec.conditional else torch.ones(y.shape, device=x.device)
        if spec.conditional and w != 0:  # conditional and null-label passes in one batch
            x, y, keep = torch.cat([x, x], 1), torch.cat([y, y], 1), torch.cat([keep, 0 * keep], 1)
        both = spec.denoiser_pair(self.base.weights, self.aux.weights, x, sigma, y if spec.conditional else None, keep)
        if spec.conditional and w != 0:
            d_y, d_null = both.chunk(2, 2)
            both = (1 + w) * d_y - w * d_null
        return both[0], both[1]

    def sample(self, n: int, rng: RunRNG, lam: float = 1.0) -> Samples:
        return self.base.spec.generate(self.base, self.denoise, n, rng, lam)


# ----------------------------------------------------------------------------------------------------------
# The spec.


def check_images(spec: UNet, data: Samples, rng: RunRNG) -> None:
    """What the unet family checks before a fit: images (C, H, W) in [0, 1] whose sides halve at every level,
    one stream row per run, and labels in 0..classes-1 when the model is conditional."""
    if len(data.item_shape) != 3:
        raise MadloopError(f"the unet model needs images of shape (C, H, W), got items of shape {data.item_shape}")
    if rng.n_runs != data.n_runs:
        raise MadloopError(f"the random stream has {rng.n_runs} runs but the data has {data.n_runs}")
    _, H, W = data.item_shape
    f = 2 ** (len(spec.mults) - 1)
    if H % f or W % f:
        raise MadloopError(f"the unet's {len(spec.mults)} levels need image sides divisible by {f}, got {H}x{W}: "
                           "use fewer mults or resize the images")
    if not (np.isfinite(data.x).all() and data.x.min() >= 0 and data.x.max() <= 1):
        raise MadloopError("the unet model needs pixel values in [0, 1]")
    if spec.conditional:
        if data.y is None:
            raise MadloopError("the conditional unet needs labelled images (or set conditional=false)")
        if data.y.min() < 0 or data.y.max() >= spec.classes:
            raise MadloopError(f"the unet has classes={spec.classes} but the labels run from {data.y.min()} to "
                               f"{data.y.max()}")


@MODELS.register("unet")
@dataclass(frozen=True)
class UNet:
    """EDM diffusion on images with a compact U-Net per run (see the module docstring).

    Network: ``channels`` base width, ``mults`` per-level width multipliers (len(mults) levels), ``blocks``
    residual blocks per level, self-attention at the ``attention`` resolutions (image sides), ``dropout``.
    Conditioning: ``conditional`` on ``classes`` labels, the null label used with probability
    ``label_dropout`` in training (classifier-free guidance).
    EDM: ``sigma_data`` (of pixels mapped to [-1, 1]), training noise ln sigma ~ N(p_mean, p_std^2), the
    Heun sampler on ``steps`` Karras levels from sigma_max to sigma_min with exponent rho (2 steps - 1
    network evaluations per sample).
    Training: Adam (lr, EDM's betas) on minibatches of ``batch`` images per run, ``images`` training images
    per run and fit; the learning rate ramps up linearly over the first ``warmup`` images; sampling uses an
    EMA of the weights with a half-life of ``ema`` images, ramped up as in EDM (the half-life is at most
    ``ema_rampup`` x the images seen so far); ema = 0 samples with the raw weights.
    ``runs_per_pass``: runs evaluated together as one grouped network (0: all the chunk's runs, 1: a loop over
    runs). The default 4 trained 8 runs of the digits default 1.1x faster than all 8 together and 1.7x faster
    than a loop over runs on one CPU thread (sampling: 1.2x slower than the loop); as chunks of runs are cut at
    its multiples, a table does not depend on the number of workers (with 0 it does, in the last bits: a
    grouped convolution rounds differently with the group count). On a GPU, 0 fills the device best.
    On a CPU the torch work runs on one thread (madloop.threads): parallelism comes from worker processes.
    ``device`` cpu|cuda|auto, ``dtype`` float32|bfloat16 (autocast; weights and Adam stay float32),
    ``channels_last`` memory format for the convolutions (GPU).
    """

    budget_unit: ClassVar[str] = "images"  # a fit's budget (madloop.sims)
    width_option: ClassVar[str] = "channels"
    capabilities: ClassVar[frozenset[str]] = frozenset({"finetune", "guided", "width", "decoder_only"})
    schedule_options: ClassVar[tuple[str, ...]] = ("warmup", "ema")  # in images: they scale with a shorter budget

    channels: int = 16
    mults: tuple[int, ...] = (1, 2)
    blocks: int = 1
    attention: tuple[int, ...] = ()
    dropout: float = 0.0
    conditional: bool = True
    classes: int = 10
    label_dropout: float = 0.1
    sigma_data: float = 0.5
    p_mean: float = -1.2
    p_std: float = 1.2
    steps: int = 10
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    rho: float = 7.0
    lr: float = 2e-3
    batch: int = 32
    images: int = 16384
    warmup: int = 2048
    ema: float = 2048.0
    ema_rampup: float = 0.1
    runs_per_pass: int = 4
    device: str = "cpu"
    dtype: str = "float32"
    channels_last: bool = False

    def __post_init__(self):
        for name in ("mults", "attention"):  # JSON gives lists
            object.__setattr__(self, name, tuple(getattr(self, name)))
        rules = {  # option: (holds, what it needs)
            "channels": (self.channels >= 4, ">= 4"),
            "mults": (min(self.mults, default=0) >= 1, "to be positive integers, one per level"),
            "attention": (all(r >= 1 for r in self.attention), "image sides >= 1"),
            "dropout": (0 <= self.dropout < 1, "in [0, 1)"),
            "label_dropout": (0 <= self.label_dropout < 1, "in [0, 1)"),
            "steps": (self.steps >= 2, ">= 2"),
            "sigma_min": (0 < self.sigma_min < self.sigma_max, "0 < sigma_min < sigma_max"),
            "images": (self.images >= self.batch, ">= batch (at least one Adam step)"),
        }
        for name in ("blocks", "classes", "batch", "sigma_data", "p_std", "rho", "lr"):
            rules[name] = (getattr(self, name) > 0, "> 0")
        for name in ("warmup", "ema", "ema_rampup", "runs_per_pass"):
            rules[name] = (getattr(self, name) >= 0, ">= 0")
        for name, (holds, needs) in rules.items():
            if not holds:  # NaN fails every comparison
                raise ValueError(f"unet needs {name} {needs}, got {name}={getattr(self, name)!r}")
        check_torch_options(self.device, self.dtype)

    def check_run(self, cfg, built) -> None:
        """Before a run starts (``built``: its components by kind): the data source's labels fit ``classes``, and
        every ``attention`` side is the width of a level (one that is not would silently add no attention)."""
        data = built["data"]
        classes = getattr(data, "classes", 0)
        if self.conditional and hasattr(data, "feature_set") and classes == 0:
            raise MadloopError(f"the conditional unet needs labelled images; data source '{cfg.data}' has none "
                               "(give labels, or pass --conditional false)")
        if self.conditional and classes > self.classes:
            raise MadloopError(f"the unet has classes={self.classes} but data source '{cfg.data}' has labels "
                               f"0..{classes - 1}: pass --classes {classes}")
        shape = getattr(data, "shape", None)
        if shape is not None and self.attention:
            sides = [shape[-1] // 2**level for level in range(len(self.mults))]
            for side in self.attention:
                if side not in sides:
                    raise MadloopError(f"attention at side {side} matches no level of the unet: on {shape[-2]}x{shape[-1]} "
                                       f"images its {len(sides)} levels are {', '.join(map(str, sides))} pixels wide")

    @property
    def torch_device(self) -> torch.device:
        return torch_device(self.device)

    # The network and the denoiser, for all runs at once or in passes of runs_per_pass runs.

    def network(self, weights: dict, x: Tensor, c_noise: Tensor, y, keep, key=None) -> Tensor:
        """F for all runs: one grouped pass, or passes of ``runs_per_pass`` runs."""
        import torch

        runs = x.shape[0]
        G = self.runs_per_pass or runs
        c_noise = c_noise.expand(runs, x.shape[1], 1, 1, 1)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.dtype == "bfloat16"):
            if G >= runs:
                return unet(Weights(weights), self, x, c_noise, y, keep, key)
            out = []
            for r in range(0, runs, G):
                part = [None if a is None else a[r : r + G] for a in (x, c_noise, y, keep, key)]
                out.append(unet(Weights({k: v[r : r + G] for k, v in weights.items()}), self, *part))
            return torch.cat(out)

    def denoiser(self, weights: dict, x: Tensor, sigma, y, keep, key=None) -> Tensor:
        """D(x; sigma | y) for x (R, B, C, H, W) and sigma a number or (R, B, 1, 1, 1)."""
        import torch

        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
        F = lambda x_in, c_noise: self.network(weights, x_in, c_noise, y, keep, key)
        return edm_denoiser(F, x, sigma, self.sigma_data)

    def network_pair(self, base: dict, aux: dict, x: Tensor, c_noise: Tensor, y, keep) -> Tensor:
        """F of two models that share their encoder weights (``base`` and ``aux``; a decoder-only fine-tune):
        one encoder pass, two decoder passes; (2, R, B, C, H, W), base first."""
        import torch

        runs = x.shape[0]
        G = self.runs_per_pass or runs
        c_noise = c_noise.expand(runs, x.shape[1], 1, 1, 1)
        out = []
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.dtype == "bfloat16"):
            for r in range(0, runs, G):
                part = [None if a is None else a[r : r + G] for a in (x, c_noise, y, keep)]
                wb, wa = (Weights({k: v[r : r + G] for k, v in m.items()}) for m in (base, aux))
                features = encode(wb, self, *part)
                out.append(torch.stack([decode(m, self, *features, part[0].shape) for m in (wb, wa)]))
        return torch.cat(out, 1)

    def denoiser_pair(self, base: dict, aux: dict, x: Tensor, sigma, y, keep) -> Tensor:
        """D(x; sigma | y) of two models sharing their encoder: (2, R, B, C, H, W), base first."""
        import torch

        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
        return edm_denoiser(lambda x_in, c_noise: self.network_pair(base, aux, x_in, c_noise, y, keep), x, sigma,
                            self.sigma_data)

    # Training.

    @property
    def run_group(self) -> int | None:
        """Runs computed together, counted from run 0 (``runs_per_pass``): the runner cuts chunks of runs at
        multiples of it, so a run's numbers do not depend on the number of workers (None: the chunk)."""
        return self.runs_per_pass or None

    def fit(self, data: Samples, rng: RunRNG) -> UNetModel:
        """Train one network per run from scratch on that run's images."""
        return self.fit_ladder(data, rng, (self.images,))[0]

    def fit_ladder(self, data: Samples, rng: RunRNG, at: Sequence[int]) -> list[UNetModel]:
        """The models ``dataclasses.replace(self, images=n).fit(data, rng)`` for each n of ``at``, bit for bit,
        from one training of max(at) images: the learning rate, the minibatch order and the EMA's half-life at a
        step depend on the images seen so far, never on where training stops, so a shorter fit is a prefix of
        a longer one (tested)."""
        check_images(self, data, rng)
        ladder = [replace(self, images=int(n)) for n in at]  # checks each n as a budget
        weights = init_weights(self, data.item_shape, rng.child(Role.INIT), self.torch_device)
        models = self._train(UNetModel(self, weights, data.item_shape), data, rng.child(Role.TRAIN), at)
        return [replace(model, spec=spec) for model, spec in zip(models, ladder)]

    def finetune(self, model: UNetModel, data: Samples, rng: RunRNG, images: int,
                 decoder_only: bool = False) -> UNetModel:
        """A copy of ``model`` trained on ``images`` more training images (fresh Adam, warm-up and EMA, which
        start from the model's weights); ``model`` is unchanged. ``decoder_only``: the encoder's weights stay
        the model's own (the same tensors), so a guided sampler runs the encoder once for both models."""
        check_images(self, data, rng)
        if data.item_shape != model.shape:
            raise MadloopError(f"cannot fine-tune a unet for images {model.shape} on images {data.item_shape}")
        trainable = {k for k in model.weights if is_decoder(k)} if decoder_only else None
        return self._train(model, data, rng.child(Role.TRAIN), (images,), trainable)[0]

    def guided(self, base: UNetModel, aux: UNetModel, omega: float, interval=(0.0, 1.0)) -> GuidedUNet:
        """The SIMS model: (1 + omega) D_base - omega D_aux on the guided sampler steps (see GuidedUNet)."""
        lo, hi = interval
        if not 0 <= lo < hi <= 1:
            raise ValueError(f"the guidance interval needs 0 <= lo < hi <= 1, got {interval}")
        if not math.isfinite(omega):
            raise ValueError(f"omega must be a finite number, got {omega}")
        if not same_sampler(aux.spec, base.spec) or aux.shape != base.shape:
            raise ValueError("guidance needs an auxiliary model of the same family, conditioning, EDM settings and "
                             "image shape as its base")
        shared = aux.spec == base.spec and all(aux.weights[k] is v for k, v in base.weights.items() if not is_decoder(k))
        return GuidedUNet(base, aux, float(omega), (float(lo), float(hi)), shared)

    def draw(self, rng: RunRNG, batch: int, d: int) -> list:
        """One step's per-run randomness, drawn on the host: noise levels ln sigma ~ N(p_mean, p_std^2)
        (runs, batch, 1), noise n (runs, batch, d), the label mask keep (runs, batch: 0 = null label; None when
        unconditional) and the dropout keys (runs,) (None without dropout)."""
        sigma = np.exp(self.p_mean + self.p_std * rng.standard_normal(batch, 1, dtype=np.float32))
        noise = rng.standard_normal(batch, d, dtype=np.float32)
        keep = (rng.random(batch) >= self.label_dropout).astype(np.float32) if self.conditional else None
        key = rng.integers(2**32, 1)[:, 0] if self.dropout > 0 else None
        return [sigma, noise, keep, key]

    def loss(self, weights: dict, shape: tuple, x: Tensor, y: Tensor | None, sigma: Tensor, noise: Tensor,
             keep: Tensor | None, key: Tensor | None) -> Tensor:
        """Each run's mean EDM loss (runs,) on images x (runs, batch, d) in [-1, 1] of ``shape``, labels y."""
        runs = x.shape[0]

        def D(x_noisy: Tensor, sigma: Tensor) -> Tensor:
            images = x_noisy.reshape(runs, -1, *shape)
            return self.denoiser(weights, images, sigma.reshape(runs, -1, 1, 1, 1), y, keep, key).reshape(x.shape)

        return edm_loss(D, x, sigma, noise, self.sigma_data)  # flat images: its mean over axes (1, 2) is per run

    def _train(self, model: UNetModel, data: Samples, rng: RunRNG, at: Sequence[int],
               trainable: set[str] | None = None) -> list[UNetModel]:
        """Adam on the sum over runs of each run's mean EDM loss, with an EMA of the weights, for max(at) training
        images; the model after each count of ``at`` images. Only the weights named in ``trainable`` change
        (None: all), the others are the model's own tensors."""
        with one_thread(self.torch_device.type == "cpu"):  # rounding independent of the process's threads
            return self._adam(model, data, rng, at, trainable)

    def _adam(self, model: UNetModel, data: Samples, rng: RunRNG, at: Sequence[int],
              trainable: set[str] | None) -> list[UNetModel]:
        import torch

        device, (runs, n), shape = self.torch_device, data.x.shape[:2], model.shape
        x = torch.as_tensor(data.x.reshape(runs, n, -1) * 2 - 1, dtype=torch.float32, device=device)
        y = torch.as_tensor(data.y, device=device) if self.conditional else None
        trainable = set(model.weights) if trainable is None else trainable
        params = {k: v.detach().clone().requires_grad_() if k in trainable else v for k, v in model.weights.items()}
        ema = {k: v.detach().clone() for k, v in model.weights.items() if k in trainable}
        opt = torch.optim.Adam([params[k] for k in ema], lr=self.lr, betas=(0.9, 0.999), eps=1e-8)

        def current() -> UNetModel:  # a copy: training goes on in place
            return UNetModel(self, {k: v if k not in ema else (ema[k] if self.ema > 0 else params[k]).detach().clone()
                                    for k, v in model.weights.items()}, shape)

        stops = [n // self.batch for n in at]  # each model's Adam steps
        models = {0: current()} if 0 in stops else {}
        order, used = np.zeros((runs, 0), dtype=np.int64), 0
        for step in range(max(stops)):
            # Each run's minibatch: the next images of its own stream of epoch permutations.
            while order.shape[1] - used < self.batch:
                order, used = np.concatenate([order[:, used:], rng.permutations(n)], axis=1), 0
            index = torch.as_tensor(order[:, used : used + self.batch], device=device)
            used += self.batch
            draws = [None if a is None else torch.as_tensor(a, device=device)
                     for a in self.draw(rng, self.batch, x.shape[2])]
            y_b = None if y is None else torch.take_along_dim(y, index, 1)
            loss = self.loss(params, shape, torch.take_along_dim(x, index[..., None], 1), y_b, *draws)
            opt.zero_grad(set_to_none=False)
            loss.sum().backward()
            # Learning-rate warm-up, the Adam step, then the EMA (its half-life ramped up as in EDM).
            seen = (step + 1) * self.batch
            for group in opt.param_groups:
                group["lr"] = self.lr * min(1.0, seen / self.warmup) if self.warmup else self.lr
            opt.step()
            if self.ema > 0:
                halflife = min(self.ema, seen * self.ema_rampup) if self.ema_rampup else self.ema
                beta = 0.5 ** (self.batch / max(halflife, 1e-8))
                with torch.no_grad():
                    for k, v in ema.items():
                        v.lerp_(params[k], 1 - beta)
            if step + 1 in stops:
                models[step + 1] = current()
        return [models[s] for s in stops]

    # Sampling.

    def generate(self, model: UNetModel, denoise: Callable, n: int, rng: RunRNG, lam: float) -> Samples:
        """n images per run with the Heun sampler on ``denoise(x, sigma, y, w, step)``, mapped to [0, 1]."""
        check_sampling(lam, rng, model.runs)
        import torch

        device, runs, shape = next(iter(model.weights.values())).device, model.runs, model.shape
        y = None
        if self.conditional:  # balanced labels, shuffled per run
            y = (np.arange(n) % self.classes)[rng.permutations(n)]
        z = rng.standard_normal(n, *shape, dtype=np.float32)
        if not self.conditional:
            z *= np.float32(math.sqrt(lam))  # reduced temperature
        w = 1 / lam - 1 if self.conditional else 0.0
        sigmas = karras_sigmas(self.steps, self.sigma_min, self.sigma_max, self.rho)
        out = np.empty((runs, n, *shape), dtype=np.float32)
        rows = SAMPLE_ROWS["cpu" if device.type == "cpu" else "cuda"]
        chunk = max(1, rows // min(self.runs_per_pass or runs, runs) // (2 if w else 1))
        with torch.no_grad(), one_thread(device.type == "cpu"):
            for i in range(0, n, chunk):
                y_i = None if y is None else torch.as_tensor(y[:, i : i + chunk], device=device)
                x = torch.as_tensor(z[:, i : i + chunk], device=device) * float(sigmas[0])
                x = heun_sampler(lambda x, sigma, step, y_i=y_i: denoise(x, sigma, y_i, w, step), x, sigmas)
                out[:, i : i + chunk] = ((x + 1) / 2).clamp(0, 1).cpu().numpy()
        return Samples(out, y)
