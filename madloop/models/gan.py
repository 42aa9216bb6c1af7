"""GAN family: a generator and a discriminator MLP per Monte-Carlo run on points of shape (d,), all runs in one
batched network (weights with the run on axis 0, as in madloop.models.ensemble).

Training: the non-saturating GAN loss (Goodfellow et al. 2014) with Adam (betas 0.5, 0.999) for the
generator and the discriminator, one step of each per minibatch of ``batch`` points; every run's loss is its own
mean and Adam acts elementwise, so a run trains as if alone. The generator works in the standardised space of
the run's training data (its mean and standard deviation per coordinate) and its samples are mapped back.
Hidden layers use LeakyReLU (slope 0.2).

Sampling bias (SPEC section 2: "GAN truncation psi: lambda = psi"): the latent z ~ N(0, I) is pulled toward
its mean, z -> psi z with psi = lam (the truncation trick of StyleGAN, whose average latent is 0 here), so lam
= 1 samples the generator as trained and lam < 1 trades diversity for typical samples. A GAN has no density
and no guidance. Training and sampling run on one torch thread on a CPU, so the numbers do not depend on the
thread count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from madloop.models.base import check_points, check_sampling, check_training_options, standardisation, torch_device
from madloop.registry import MODELS
from madloop.rng import Role, RunRNG
from madloop.samples import Samples
from madloop.threads import one_thread


def network(params: tuple, h):
    """[Linear, LeakyReLU(0.2)] x (len(params)/2 - 1), Linear on h (runs, batch, in)."""
    import torch

    W, b = params[0::2], params[1::2]
    for l in range(len(W) - 1):  # noqa: E741
        h = torch.nn.functional.leaky_relu(torch.baddbmm(b[l], h, W[l]), 0.2)
    return torch.baddbmm(b[-1], h, W[-1])


@dataclass(frozen=True)
class GANModel:
    spec: "GAN"
    generator: tuple  # (W_0, b_0, ...), each with the run on axis 0
    shift: np.ndarray  # (runs, 1, d): the standardisation of the training data
    scale: np.ndarray  # (runs, 1, d)

    def sample(self, n: int, rng: RunRNG, lam: float = 1.0) -> Samples:
        check_sampling(lam, rng, self.shift.shape[0])
        import torch

        z = lam * rng.standard_normal(n, self.spec.latent)  # truncation psi = lam
        with torch.no_grad(), one_thread(self.spec.torch_device.type == "cpu"):
            y = network(self.generator, torch.as_tensor(z, dtype=torch.float32, device=self.spec.torch_device))
        return Samples(y.cpu().double().numpy() * self.scale + self.shift)


@MODELS.register("gan")
@dataclass(frozen=True)
class GAN:
    """Generator latent -> ``width`` x ``depth`` -> d and discriminator d -> ``width`` x ``depth`` -> 1, trained
    ``epochs`` epochs on minibatches of ``batch`` points with Adam at ``lr``."""

    latent: int = 8
    width: int = 64
    depth: int = 2
    epochs: int = 400
    batch: int = 128
    lr: float = 2e-4  # on E1's Gaussian (1000 points) 1e-3 oscillated: W2 1.5-2.5x the floor against 1.2-1.6x
    device: str = "cpu"
    min_points = 2  # the fewest training points per run with a standard deviation
    capabilities: ClassVar[frozenset[str]] = frozenset()  # no density, no weights, no fine-tuning

    def __post_init__(self):
        check_training_options(self, ("latent", "width", "depth", "epochs", "batch"))

    @property
    def torch_device(self):
        return torch_device(self.device)

    def fit(self, data: Samples, rng: RunRNG) -> GANModel:
        """Train one generator and discriminator per run from scratch on that run's points."""
        from madloop.models.ensemble import init_mlp

        check_points("gan", data, rng)
        x = data.x
        d = x.shape[2]
        shift, scale = standardisation(x, "GAN")
        init = rng.child(Role.INIT)
        hidden = [self.width] * self.depth
        generator = init_mlp([self.latent, *hidden, d], init.child(Role.GENERATOR), self.torch_device)
        critic = init_mlp([d, *hidden, 1], init.child(Role.DISCRIMINATOR), self.torch_device)
        with one_thread(self.torch_device.type == "cpu"):
            generator = self._train(generator, critic, (x - shift) / scale, rng.child(Role.TRAIN))
        return GANModel(self, generator, shift, scale)

    def _train(self, generator: tuple, critic: tuple, y: np.ndarray, rng: RunRNG) -> tuple:
        import torch
        from torch.nn.functional import softplus

        g = [p.clone().requires_grad_(True) for p in generator]
        c = [p.clone().requires_grad_(True) for p in critic]
        opt_g = torch.optim.Adam(g, lr=self.lr, betas=(0.5, 0.999))
        opt_c = torch.optim.Adam(c, lr=self.lr, betas=(0.5, 0.999))
        device = self.torch_device
        y = torch.as_tensor(y, dtype=torch.float32, device=device)
        n = y.shape[1]
        for _ in range(self.epochs):
            order = torch.as_tensor(rng.permutations(n), device=device)
            epoch = torch.take_along_dim(y, order[..., None], 1)
            noise = torch.as_tensor(rng.standard_normal(n, self.latent), dtype=torch.float32, device=device)
            for i in range(0, n, self.batch):
                real, z = epoch[:, i : i + self.batch], noise[:, i : i + self.batch]
                fake = network(g, z)
                # the discriminator: real -> 1, generated -> 0 (logistic loss), each run's own mean
                loss_c = softplus(-network(c, real)).mean((1, 2)) + softplus(network(c, fake.detach())).mean((1, 2))
                opt_c.zero_grad(set_to_none=False)
                loss_c.sum().backward()
                opt_c.step()
                # the generator, non-saturating: make the discriminator call its points real
                loss_g = softplus(-network(c, fake)).mean((1, 2))
                opt_g.zero_grad(set_to_none=False)
                loss_g.sum().backward()
                opt_g.step()
        return tuple(p.detach() for p in g)
