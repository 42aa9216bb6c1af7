"""Normalizing-flow family: RealNVP affine couplings (Dinh et al. 2017) on points of shape (d,), d >= 2.

One flow per Monte-Carlo run, all runs in one batched network (madloop.models.ensemble's stacked MLPs), fitted
by maximum likelihood with minibatch Adam; each run's loss is its own mean negative log-likelihood and Adam acts
elementwise, so a run trains as if alone. The flow maps a data point x to z = f(x) in three steps: the fixed
standardisation of the run's training data (its mean and standard deviation per coordinate), then ``layers``
couplings. Coupling k keeps the coordinates of mask m_k (alternate coordinates, shifting by one each layer) and
maps the others to y exp(s) + t, with s (bounded by tanh) and t computed by an MLP of the kept ones; its log
determinant is the sum of s. The last layer of each MLP starts at zero, so a new flow is the identity.

Density and bias: log p(x) = log N(f(x); 0, I) + log |det df/dx|, exactly. The sampling bias lam (SPEC
section 2) is a temperature: z ~ N(0, lam I), then x = f^-1(z); for an affine flow that is N(mu, lam Sigma),
the Gaussian family's bias, and ``log_prob(x, lam)`` is the exact density of what a model samples with lam
(oracle curation works on flows).

Training and sampling run on one torch thread on a CPU, so the numbers do not depend on the thread count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from madloop.models.base import check_points, check_sampling, check_training_options, standardisation, torch_device
from madloop.registry import MODELS
from madloop.rng import Role, RunRNG
from madloop.samples import Samples
from madloop.threads import one_thread


@dataclass(frozen=True)
class FlowModel:
    spec: "Flow"
    params: tuple  # per coupling, its MLP's (W_0, b_0, ...), each with the run on axis 0
    shift: np.ndarray  # (runs, 1, d): the standardisation of the training data
    scale: np.ndarray  # (runs, 1, d)

    def sample(self, n: int, rng: RunRNG, lam: float = 1.0) -> Samples:
        check_sampling(lam, rng, self.shift.shape[0])
        import torch

        z = math.sqrt(lam) * rng.standard_normal(n, self.shift.shape[2])
        with torch.no_grad(), one_thread(self.spec.torch_device.type == "cpu"):
            y = self.spec.inverse(self.params, torch.as_tensor(z, dtype=torch.float32, device=self.spec.torch_device))
        return Samples(y.cpu().double().numpy() * self.scale + self.shift)

    def log_prob(self, x: np.ndarray, lam: float = 1.0) -> np.ndarray:
        """log density (runs, n) of points x (runs, n, d) under what the model samples with bias lam."""
        import torch

        d = self.shift.shape[2]
        y = torch.as_tensor((x - self.shift) / self.scale, dtype=torch.float32, device=self.spec.torch_device)
        with torch.no_grad(), one_thread(self.spec.torch_device.type == "cpu"):
            z, logdet = self.spec.forward(self.params, y)
        z, logdet = z.cpu().double().numpy(), logdet.cpu().double().numpy()
        gauss = -0.5 * (z**2).sum(-1) / lam - 0.5 * d * math.log(2 * math.pi * lam)
        return gauss + logdet - np.log(self.scale).sum(-1)


@MODELS.register("flow")
@dataclass(frozen=True)
class Flow:
    """RealNVP: ``layers`` affine couplings, each an MLP of ``depth`` hidden ReLU layers of ``width``; Adam at
    ``lr`` on minibatches of ``batch`` points for ``epochs`` epochs."""

    layers: int = 6
    width: int = 64
    depth: int = 2
    epochs: int = 100
    batch: int = 128
    lr: float = 1e-3
    device: str = "cpu"
    min_points = 2  # the fewest training points per run with a standard deviation
    capabilities: ClassVar[frozenset[str]] = frozenset({"density"})  # fitted models give log_prob

    def __post_init__(self):
        check_training_options(self, ("layers", "width", "depth", "epochs", "batch"))

    @property
    def torch_device(self):
        return torch_device(self.device)

    def fit(self, data: Samples, rng: RunRNG) -> FlowModel:
        """Train one flow per run from the identity on that run's points."""
        from madloop.models.ensemble import init_mlp

        check_points("flow", data, rng)
        x = data.x
        runs, n, d = x.shape
        if d < 2:
            raise ValueError("the flow couples coordinates: it needs points of at least 2 dimensions")
        shift, scale = standardisation(x, "flow")
        init = rng.child(Role.INIT)
        params = []
        for k in range(self.layers):
            mlp = init_mlp([d] + [self.width] * self.depth + [2 * d], init.child(Role.coupling(k)), self.torch_device)
            params.append((*mlp[:-2], mlp[-2] * 0, mlp[-1] * 0))  # the last layer at zero: the identity
        with one_thread(self.torch_device.type == "cpu"):
            params = self._train(tuple(params), (x - shift) / scale, rng.child(Role.TRAIN))
        return FlowModel(self, params, shift, scale)

    def masks(self, d: int):
        """Coupling k's mask: 1 on the coordinates it keeps (j + k even), 0 on those it transforms."""
        import torch

        return [torch.tensor([float((j + k) % 2 == 0) for j in range(d)], device=self.torch_device)
                for k in range(self.layers)]

    def coupling(self, mlp, m, y):
        """s (bounded) and t of the coordinates that coupling with mask m transforms, from those it keeps."""
        from madloop.models.ensemble import mlp as network

        s, t = network(mlp, y * m).chunk(2, dim=-1)
        return (1 - m) * s.tanh(), (1 - m) * t

    def forward(self, params: tuple, y):
        """z = f(y) and log |det df/dy| (runs, n) for standardised points y (runs, n, d)."""
        logdet = y.new_zeros(y.shape[:2])
        for mlp, m in zip(params, self.masks(y.shape[2])):
            s, t = self.coupling(mlp, m, y)
            y = y * s.exp() + t  # the kept coordinates: s = t = 0
            logdet = logdet + s.sum(-1)
        return y, logdet

    def inverse(self, params: tuple, z):
        """y = f^-1(z): the couplings undone in reverse order."""
        for mlp, m in reversed(list(zip(params, self.masks(z.shape[2])))):
            s, t = self.coupling(mlp, m, z)  # the kept coordinates are unchanged, so s and t are f's own
            z = (z - t) * (-s).exp()
        return z

    def _train(self, params: tuple, y: np.ndarray, rng: RunRNG) -> tuple:
        import torch

        leaves = [[p.clone().requires_grad_(True) for p in mlp] for mlp in params]
        opt = torch.optim.Adam([p for mlp in leaves for p in mlp], lr=self.lr)
        y = torch.as_tensor(y, dtype=torch.float32, device=self.torch_device)
        n = y.shape[1]
        for _ in range(self.epochs):
            order = torch.as_tensor(rng.permutations(n), device=self.torch_device)
            epoch = torch.take_along_dim(y, order[..., None], 1)
            for i in range(0, n, self.batch):
                z, logdet = self.forward(leaves, epoch[:, i : i + self.batch])
                nll = 0.5 * (z**2).sum(-1) - logdet  # up to a constant
                opt.zero_grad(set_to_none=False)
                nll.mean(1).sum().backward()  # each run's own mean: the runs do not interact
                opt.step()
        return tuple(tuple(p.detach() for p in mlp) for mlp in leaves)
