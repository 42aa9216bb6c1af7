"""Diffusion model families for vector data (``ddpm``, ``edm``), one network per Monte-Carlo run.

The R runs of a chunk are one batched MLP (madloop.models.ensemble): run r has its own data,
initialisation, minibatch order and noise, and trains exactly as it would alone.

Symbols: x_0 a data point, t the integer step, T the number of steps, alpha_bar_t the signal level,
beta_t = 1 - alpha_bar_t / alpha_bar_(t-1), eps the noise (DDPM); sigma the noise level, D the denoiser,
F the raw network (EDM); omega the SIMS guidance strength; lam the sampling bias (SPEC section 2).

Randomness: every draw is a NumPy array from the caller's RunRNG (row r belongs to run r; normal noise
is drawn in float32), moved to the device. Host draws cost a few percent of the time and make a run's numbers independent of
the other runs in its chunk and of the device.

Sample weights (real-data weighting, ``weighted``): a run's training objective is the weighted mean of its
points' losses, each point's loss times its weight over the run's mean weight (madloop.models.ensemble
``relative_weights``); minibatches are drawn as without weights, so equal weights give the same numbers.

Threads: sampling runs torch on one CPU thread (madloop.threads), so samples do not depend on the process's
thread count; training is thread-invariant by construction (madloop.models.ensemble).

Sampling bias lam (reduced-temperature sampling; an unconditional model has no guidance to trade): the
initial noise x_(T-1) (DDPM) or x_0 = sigma_max z (EDM) and every noise the sampler adds along the way
(DDPM's ancestral noise; EDM's Heun sampler adds none) are scaled by sqrt(lam).

torch (and the ensemble, which needs it) is imported inside the functions that run a network: registering
these families, reading their options and `madloop --help` do not pay torch's seconds of start-up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from madloop.models.base import check_points, check_sampling, check_torch_options, same_sampler, torch_device
from madloop.registry import MODELS
from madloop.rng import Role, RunRNG
from madloop.samples import Samples
from madloop.threads import one_thread

if TYPE_CHECKING:
    import torch

    from madloop.models.ensemble import Net, Params

EMBED_CHANNELS = 16  # sinusoidal time embedding: 8 frequencies, cos and sin


def positional_embedding(tau: torch.Tensor, channels: int = EMBED_CHANNELS) -> torch.Tensor:
    """[cos(tau f_k), sin(tau f_k)] with f_k = 10000^(-k / (channels/2)) (Vaswani et al.; EDM's DDPM++)."""
    import torch

    f = 10000.0 ** (-torch.arange(channels // 2, dtype=tau.dtype, device=tau.device) / (channels // 2))
    return torch.cat([torch.cos(tau * f), torch.sin(tau * f)], dim=-1)


# ----------------------------------------------------------------------------------------------------------
# DDPM (Ho et al. 2020) with the cosine schedule (Nichol & Dhariwal 2021).


def cosine_alpha_bar(T: int, s: float = 0.008) -> np.ndarray:
    """alpha_bar_t = f(t) / f(0) with f(t) = cos^2((t/T + s) / (1 + s) pi/2) for t = 0..T-1.

    alpha_bar_0 = 1 (beta_0 = 0: step 0 is the clean data); beta_t is clipped at 0.999 as in Nichol & Dhariwal.
    """
    f = np.cos((np.arange(T) / T + s) / (1 + s) * np.pi / 2) ** 2
    beta = np.clip(1 - f[1:] / f[:-1], 0.0, 0.999)
    return np.cumprod(np.concatenate([[1.0], 1 - beta]))


def ddpm_loss(eps_hat, x_0, t, alpha_bar, eps, v=None) -> torch.Tensor:
    """L_simple: || eps - eps_hat(sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps, t) ||^2, mean per run;
    with point weights v (runs, batch, 1) the v-weighted mean."""
    x_t = alpha_bar.sqrt() * x_0 + (1 - alpha_bar).sqrt() * eps
    err = (eps_hat(x_t, t) - eps) ** 2
    return (err if v is None else v * err).mean((1, 2))


def ddpm_sampler(eps_hat, x, noise, alpha_bar: np.ndarray, lam: float) -> torch.Tensor:
    """Ancestral sampling from t = T-1 down to 1 (Ho et al. 2020, Algorithm 2), sigma_t^2 = beta_t.

    ``eps_hat(x, t, i)`` predicts the noise at step i (0 = first); the last step (t = 1) adds no noise.
    """
    T, alpha_bar = len(alpha_bar), alpha_bar.tolist()
    for i, t in enumerate(range(T - 1, 0, -1)):
        beta = 1 - alpha_bar[t] / alpha_bar[t - 1]
        x = (x - beta / math.sqrt(1 - alpha_bar[t]) * eps_hat(x, t, i)) / math.sqrt(1 - beta)
        if t > 1:
            x = x + math.sqrt(lam * beta) * noise()
    return x


# ----------------------------------------------------------------------------------------------------------
# EDM (Karras et al. 2022): preconditioned denoiser, log-normal training noise, Heun sampler.


def edm_denoiser(F, x, sigma, sigma_data: float) -> torch.Tensor:
    """D(x; sigma) = c_skip x + c_out F(c_in x, c_noise) (Karras et al. 2022, Table 1)."""
    c_skip = sigma_data**2 / (sigma**2 + sigma_data**2)
    c_out = sigma * sigma_data / (sigma**2 + sigma_data**2).sqrt()
    c_in = 1 / (sigma**2 + sigma_data**2).sqrt()
    c_noise = sigma.log() / 4
    return c_skip * x + c_out * F(c_in * x, c_noise)


def edm_loss(D, y, sigma, n, sigma_data: float, v=None) -> torch.Tensor:
    """lambda(sigma) || D(y + sigma n; sigma) - y ||^2 with lambda = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2,
    mean per run; with point weights v (runs, batch, 1) the v-weighted mean."""
    weight = (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2
    err = weight * (D(y + sigma * n, sigma) - y) ** 2
    return (err if v is None else v * err).mean((1, 2))


def karras_sigmas(N: int, sigma_min: float, sigma_max: float, rho: float) -> np.ndarray:
    """sigma_i = (sigma_max^(1/rho) + i/(N-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho, then sigma_N = 0."""
    i = np.arange(N)
    sigma = (sigma_max ** (1 / rho) + i / (N - 1) * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    return np.append(sigma, 0.0)


def heun_sampler(D, x, sigmas: np.ndarray) -> torch.Tensor:
    """Deterministic Heun sampler (Karras et al. 2022, Algorithm 1, S_churn = 0); ``D(x, sigma, i)`` at step i."""
    import torch

    for i, (sigma, sigma_next) in enumerate(zip(sigmas[:-1].tolist(), sigmas[1:].tolist())):
        s = torch.tensor(sigma, dtype=x.dtype, device=x.device)
        # Euler step.
        d = (x - D(x, s, i)) / sigma
        x_next = x + (sigma_next - sigma) * d
        # Second-order correction (not at sigma = 0).
        if sigma_next > 0:
            s_next = torch.tensor(sigma_next, dtype=x.dtype, device=x.device)
            d_next = (x_next - D(x_next, s_next, i)) / sigma_next
            x_next = x + (sigma_next - sigma) * (d + d_next) / 2
        x = x_next
    return x


# ----------------------------------------------------------------------------------------------------------
# Fitted models.


@dataclass(frozen=True)
class DiffusionModel:
    """One trained network per run. Data are standardised as (x - shift) / scale (shift 0, scale 1 unless
    the spec standardises); ``predict`` is the family's network output (DDPM: eps, EDM: D)."""

    spec: "Diffusion"
    params: Params
    shift: np.ndarray  # (runs, 1, d)
    scale: np.ndarray  # (runs, 1, d)

    def predict(self, x: torch.Tensor, level, step: int) -> torch.Tensor:
        from madloop.models.ensemble import mlp

        return self.spec.predict(partial(mlp, self.params, dtype=self.spec.torch_dtype), x, level)

    def sample(self, n: int, rng: RunRNG, lam: float = 1.0) -> Samples:
        return self.spec.generate(self, self.predict, n, rng, lam)


@dataclass(frozen=True)
class GuidedModel:
    """SIMS sampling: (1 + omega) pred_base - omega pred_aux on the guided steps, pred_base elsewhere.

    The combination has weights summing to 1, so it is the same in eps, D and score space (SPEC 3).
    Step i of the sampler's N steps (i = 0 is the noisiest) is guided when lo <= i / N < hi.
    """

    base: DiffusionModel
    aux: DiffusionModel
    omega: float
    interval: tuple[float, float] = (0.0, 1.0)

    def predict(self, x: torch.Tensor, level, step: int) -> torch.Tensor:
        lo, hi = self.interval
        pred = self.base.predict(x, level, step)
        if self.omega == 0 or not lo <= step / self.base.spec.sampler_steps < hi:
            return pred  # omega = 0: the combination is pred exactly
        return (1 + self.omega) * pred - self.omega * self.aux.predict(x, level, step)

    def sample(self, n: int, rng: RunRNG, lam: float = 1.0) -> Samples:
        return self.base.spec.generate(self.base, self.predict, n, rng, lam)


# ----------------------------------------------------------------------------------------------------------
# Specs.


@dataclass(frozen=True)
class Diffusion:
    """Hyperparameters shared by the diffusion families; defaults are SPEC E1's toy DDPM.

    Network: Linear(d + k, width), depth x [Linear(width, width), ReLU], Linear(width, d), where the time
    input is the raw value (k = 1: DDPM's integer t, EDM's c_noise) or its sinusoidal embedding (k = 16).
    Training: Adam (lr), ``epochs`` passes over each run's data in minibatches of ``batch``; the source
    notebook does not state its batch size: 128 (8 steps per epoch on 1000 points) is our choice.
    ``steps``: the family's number of noise levels (DDPM's T, EDM's sampler steps).
    ``standardize`` trains on per-run, per-coordinate standardised data (unweighted moments: a change of
    coordinates, not part of the objective) and maps samples back.
    Per-sample weights ``Samples.w`` weigh each point's loss in fit and finetune (``weighted``).
    ``device``: "cpu", "cuda" or "auto" (cuda when available); ``dtype`` "bfloat16" runs the network
    under torch.autocast (weights, Adam and losses stay float32).
    The methods ``net``, ``predict`` and ``loss`` take the MLP as a function ``network`` of its input
    (madloop.models.ensemble): the fitted weights for sampling, the training pass for training.
    """

    budget_unit: ClassVar[str] = "epochs"  # a fit's budget (madloop.sims)
    width_option: ClassVar[str] = "width"
    # fit and finetune read per-sample weights (Samples.w): a weighted mean loss.
    capabilities: ClassVar[frozenset[str]] = frozenset({"finetune", "guided", "width", "weighted"})

    width: int = 64
    depth: int = 4
    epochs: int = 100
    batch: int = 128
    lr: float = 1e-3
    standardize: bool = False
    time_embedding: str = "raw"
    device: str = "cpu"
    dtype: str = "float32"
    steps: int = 40

    def __post_init__(self):
        if min(self.width, self.depth, self.epochs, self.batch) < 1 or self.steps < 2:
            raise ValueError(f"{self.family} needs width, depth, epochs, batch >= 1 and steps >= 2, got {self}")
        if not self.lr > 0:
            raise ValueError(f"{self.family} needs a positive learning rate, got lr={self.lr}")
        if self.time_embedding not in ("raw", "sinusoidal"):
            raise ValueError(f"time_embedding must be 'raw' or 'sinusoidal', got {self.time_embedding!r}")
        check_torch_options(self.device, self.dtype)

    @property
    def family(self) -> str:
        return type(self).__name__.lower()

    @property
    def torch_device(self) -> torch.device:
        return torch_device(self.device)

    @property
    def torch_dtype(self) -> torch.dtype:
        import torch

        return getattr(torch, self.dtype)

    def net(self, network: Net, x: torch.Tensor, tau) -> torch.Tensor:
        """F(x, tau): the MLP on x (runs, batch, d) joined with the time input tau (broadcast to (runs, batch, 1))."""
        import torch

        tau = torch.as_tensor(tau, dtype=x.dtype, device=x.device).expand(*x.shape[:-1], 1)
        if self.time_embedding == "sinusoidal":
            tau = positional_embedding(tau)
        return network(torch.cat([x, tau], dim=-1))

    def fit(self, data: Samples, rng: RunRNG) -> DiffusionModel:
        """Train one network per run from scratch on that run's data."""
        from madloop.models.ensemble import init_mlp

        x = self._points(data, rng)
        runs, _, d = x.shape
        shift, scale = np.zeros((runs, 1, d)), np.ones((runs, 1, d))
        if self.standardize:
            shift, scale = x.mean(1, keepdims=True), x.std(1, keepdims=True)
            if not scale.all():
                raise ValueError("cannot standardise data with a constant coordinate (standard deviation 0)")
        k = EMBED_CHANNELS if self.time_embedding == "sinusoidal" else 1
        params = init_mlp([d + k] + [self.width] * (self.depth + 1) + [d], rng.child(Role.INIT), self.torch_device)
        return self._train(DiffusionModel(self, params, shift, scale), x, data.w, rng, self.epochs)

    def finetune(self, model: DiffusionModel, data: Samples, rng: RunRNG, epochs: int) -> DiffusionModel:
        """A copy of ``model`` trained ``epochs`` more epochs on ``data`` (fresh Adam, same settings and
        standardisation); ``model`` is unchanged."""
        return self._train(model, self._points(data, rng), data.w, rng, epochs)

    def guided(self, base: DiffusionModel, aux: DiffusionModel, omega: float, interval=(0.0, 1.0)) -> GuidedModel:
        """The SIMS model: (1 + omega) base - omega aux on the guided sampler steps (see GuidedModel)."""
        lo, hi = interval
        if not 0 <= lo < hi <= 1:
            raise ValueError(f"the guidance interval needs 0 <= lo < hi <= 1, got {interval}")
        if not math.isfinite(omega):
            raise ValueError(f"omega must be a finite number, got {omega}")
        if not same_sampler(aux.spec, base.spec) or not (np.array_equal(aux.shift, base.shift)
                                                         and np.array_equal(aux.scale, base.scale)):
            raise ValueError("guidance needs an auxiliary model of the same family, noise levels and standardisation "
                             "as its base")
        return GuidedModel(base, aux, float(omega), (float(lo), float(hi)))

    def generate(self, model: DiffusionModel, pred, n: int, rng: RunRNG, lam: float) -> Samples:
        """n samples per run with the prediction ``pred(x, level, step)``, mapped back to data space."""
        check_sampling(lam, rng, model.shift.shape[0])
        import torch

        def noise() -> torch.Tensor:
            z = rng.standard_normal(n, model.shift.shape[2], dtype=np.float32)
            return torch.as_tensor(z, device=model.params[0].device)

        with torch.no_grad(), one_thread(model.params[0].device.type == "cpu"):  # samples independent of the threads
            x = self.sampler(pred, math.sqrt(lam) * noise(), noise, lam)
        return Samples(x.cpu().double().numpy() * model.scale + model.shift)

    def _train(self, model: DiffusionModel, x: np.ndarray, w: np.ndarray | None, rng: RunRNG,
               epochs: int) -> DiffusionModel:
        from madloop.models.ensemble import train

        x = (x - model.shift) / model.scale
        params = train(model.params, self.loss, x, self.draw, rng.child(Role.TRAIN), epochs, self.batch, self.lr,
                       self.torch_dtype, w)
        return DiffusionModel(self, params, model.shift, model.scale)

    def _points(self, data: Samples, rng: RunRNG) -> np.ndarray:
        check_points(self.family, data, rng)
        return data.x


@MODELS.register("ddpm")
@dataclass(frozen=True)
class DDPM(Diffusion):
    """SPEC E1's toy DDPM: T = ``steps`` (40) cosine-schedule steps, eps prediction with MSE, t uniform in
    0..T-1 fed to the network as a raw number, ancestral sampling from t = T-1 to 1 (T - 1 sampler steps)."""

    @property
    def sampler_steps(self) -> int:
        return self.steps - 1

    def predict(self, network: Net, x: torch.Tensor, t) -> torch.Tensor:
        return self.net(network, x, t)

    def draw(self, rng: RunRNG, n: int, d: int) -> tuple[np.ndarray, ...]:
        t = rng.integers(self.steps, n)[..., None]
        return t, cosine_alpha_bar(self.steps)[t], rng.standard_normal(n, d, dtype=np.float32)

    def loss(self, network: Net, x_0, t, alpha_bar, eps, v=None) -> torch.Tensor:
        return ddpm_loss(partial(self.predict, network), x_0, t, alpha_bar, eps, v)

    def sampler(self, pred, x, noise, lam: float) -> torch.Tensor:
        return ddpm_sampler(pred, x, noise, cosine_alpha_bar(self.steps), lam)


@MODELS.register("edm")
@dataclass(frozen=True)
class EDM(Diffusion):
    """The same MLP as F inside EDM's preconditioned denoiser (Karras et al. 2022): training noise
    ln sigma ~ N(p_mean, p_std^2), loss weight lambda(sigma), deterministic Heun sampler on ``steps``
    Karras noise levels (sigma_max .. sigma_min, rho). ``sigma_data`` is the data's standard deviation
    (1 suits standardised data). SIMS guidance combines the denoisers D."""

    steps: int = 18
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    rho: float = 7.0
    sigma_data: float = 1.0
    p_mean: float = -1.2
    p_std: float = 1.2

    def __post_init__(self):
        super().__post_init__()
        if not 0 < self.sigma_min < self.sigma_max or min(self.rho, self.sigma_data, self.p_std) <= 0:
            raise ValueError(f"edm needs 0 < sigma_min < sigma_max and positive rho, sigma_data, p_std, got {self}")

    @property
    def sampler_steps(self) -> int:
        return self.steps

    def predict(self, network: Net, x: torch.Tensor, sigma) -> torch.Tensor:
        return edm_denoiser(partial(self.net, network), x, sigma, self.sigma_data)

    def draw(self, rng: RunRNG, n: int, d: int) -> tuple[np.ndarray, ...]:
        sigma = np.exp(self.p_mean + self.p_std * rng.standard_normal(n, 1))
        return sigma, rng.standard_normal(n, d, dtype=np.float32)

    def loss(self, network: Net, y, sigma, n, v=None) -> torch.Tensor:
        return edm_loss(partial(self.predict, network), y, sigma, n, self.sigma_data, v)

    def sampler(self, pred, x, noise, lam: float) -> torch.Tensor:
        sigmas = karras_sigmas(self.steps, self.sigma_min, self.sigma_max, self.rho)
        return heun_sampler(pred, sigmas[0] * x, sigmas)
