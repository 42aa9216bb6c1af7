"""Batched ensembles of small MLPs: one network per Monte-Carlo run, trained as one network.

Layer l of run r maps h[r] (batch, in) to h[r] @ W[r] + b[r]; over all runs that is one torch.bmm
with W of shape (runs, in, out) and b of shape (runs, 1, out). The loss is the sum over runs of each
run's own mean loss and Adam acts elementwise, so one Adam over the stacked weights moves every run
exactly as if it were trained alone, with its own data, initialisation, minibatch order and noise
(each drawn from its own row of a RunRNG).

Speed: a width-64 layer does little arithmetic per byte, so a pass over all runs at once runs at the
speed of memory. Runs therefore go through the network in blocks of about ROWS rows (runs x points),
small enough for a pass's activations to stay in cache (on 2 CPU cores at 1000 runs: sampling about
2.5x faster, training about 10%).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from madloop.rng import RunRNG

Params = tuple[torch.Tensor, ...]  # (W_0, b_0, W_1, b_1, ...), each with the run on axis 0
ROWS = 16384  # rows (runs x points) per pass through the network


def init_mlp(sizes: list[int], rng: RunRNG, device: torch.device) -> Params:
    """torch.nn.Linear's default initialisation per run: weights and biases ~ U(-1/sqrt(in), 1/sqrt(in))."""
    params = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        u = rng.random(fan_in + 1, fan_out)  # rows 0..in-1: weight, last row: bias
        w = torch.as_tensor((2 * u - 1) / np.sqrt(fan_in), dtype=torch.float32, device=device)
        params += [w[:, :fan_in].contiguous(), w[:, fan_in:].contiguous()]
    return tuple(params)


def mlp(params: Params, h: torch.Tensor) -> torch.Tensor:
    """Linear, (len(params)/2 - 2) x [Linear, ReLU], Linear (SPEC E1's layer list) on h of shape (runs, batch, in).

    Without autograd (sampling) the runs go through in blocks of about ROWS rows.
    """
    if torch.is_grad_enabled():
        return layers(params, h)
    G = max(1, ROWS // h.shape[1])
    return torch.cat([layers(tuple(p[r : r + G] for p in params), h[r : r + G]) for r in range(0, len(h), G)])


def layers(params: Params, h: torch.Tensor) -> torch.Tensor:
    W, b = params[0::2], params[1::2]
    # bmm then an in-place bias add beats the fused baddbmm on CPU; bmm keeps no output for backward.
    h = torch.bmm(h, W[0]).add_(b[0])
    for l in range(1, len(W) - 1):
        h = torch.bmm(h, W[l]).add_(b[l]).relu_()
    return torch.bmm(h, W[-1]).add_(b[-1])


def train(
    params: Params,
    loss: Callable[..., torch.Tensor],
    x: np.ndarray,
    draw: Callable[[RunRNG, int, int], tuple[np.ndarray, ...]],
    rng: RunRNG,
    epochs: int,
    batch: int,
    lr: float,
) -> Params:
    """Minibatch Adam on all runs at once; returns new weights (``params`` is left unchanged).

    Each epoch visits every run's points x (runs, n, d) in that run's own random order, with the per-point
    noise ``draw(rng, n, d)`` (arrays of shape (runs, n, ...)); ``loss(params, x0, *noise)`` gives one loss per
    run. Adam state starts fresh.
    """
    params = tuple(p.detach().clone() for p in params)
    device, (runs, n, d) = params[0].device, x.shape
    x = torch.as_tensor(x, dtype=torch.float32, device=device)
    # One leaf per block of G runs, a view into the stacked weights: one Adam updates the stack in place.
    G = max(1, ROWS // batch)
    blocks = [(slice(r, r + G), tuple(p[r : r + G].requires_grad_() for p in params)) for r in range(0, runs, G)]
    opt = torch.optim.Adam([p for _, leaves in blocks for p in leaves], lr=lr, fused=True)
    for _ in range(epochs):
        # One epoch's data and noise, drawn on the host in one go per stream.
        order = torch.as_tensor(rng.permutations(n), device=device)
        epoch = [torch.take_along_dim(x, order[..., None], 1)]
        epoch += [torch.as_tensor(a, dtype=torch.float32, device=device) for a in draw(rng, n, d)]
        for i in range(0, n, batch):
            opt.zero_grad(set_to_none=True)
            for rows, leaves in blocks:
                loss(leaves, *(a[rows, i : i + batch] for a in epoch)).sum().backward()
            opt.step()
    return params
