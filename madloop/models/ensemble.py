"""Batched ensembles of small MLPs: one network per Monte-Carlo run, trained as one network.

Layer l of run r maps h[r] (batch, in) to h[r] @ W[r] + b[r]; over all runs that is one torch.bmm
with W of shape (runs, in, out) and b of shape (runs, 1, out). The loss is the sum over runs of each
run's own mean loss and Adam acts elementwise, so one Adam over the stacked weights moves every run
exactly as if it were trained alone, with its own data, initialisation, minibatch order and noise
(each drawn from its own row of a RunRNG).

A network is handed to a loss as a function ``net(h)`` of its input h (runs, batch, in) that returns the
output (runs, batch, out) in float32. ``mlp`` is that function for inference and for autograd. ``train``
passes its own: a forward pass that keeps its activations for a hand-written backward pass.

Speed: a width-64 layer does little arithmetic per byte, so a pass over all runs at once runs at the
speed of memory. Runs therefore go through the network in blocks of about PASS_ROWS rows (runs x points).
Training computes what autograd would, but autograd allocates every activation and gradient afresh at
every step, and on a CPU memory freed and asked for again in megabyte pieces comes back as page faults.
The hand-written pass (a test checks its gradients against autograd's) reuses one block's buffers for
every step and writes each block's gradients straight into its rows of one gradient tensor per stacked
weight; all weights are views of one flat tensor, so Adam is one fused update. On a CPU its products go
through NumPy's BLAS (``bmm``), one thread per block of runs, blocks shared among torch's threads.
bfloat16 training stays with autograd under torch.autocast: the hand-written pass in bfloat16 measured
slower than autocast at 100 runs.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Callable

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from madloop.rng import RunRNG

Params = tuple[torch.Tensor, ...]  # (W_0, b_0, W_1, b_1, ...), each with the run on axis 0
Net = Callable[[torch.Tensor], torch.Tensor]
PASS_ROWS = 16384  # rows (runs x points) per pass through the network


def init_mlp(sizes: list[int], rng: RunRNG, device: torch.device) -> Params:
    """torch.nn.Linear's default initialisation per run: weights and biases ~ U(-1/sqrt(in), 1/sqrt(in))."""
    params = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        u = rng.random(fan_in + 1, fan_out)  # rows 0..in-1: weight, last row: bias
        w = torch.as_tensor((2 * u - 1) / np.sqrt(fan_in), dtype=torch.float32, device=device)
        params += [w[:, :fan_in].contiguous(), w[:, fan_in:].contiguous()]
    return tuple(params)


def mlp(params: Params, h: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Linear, (len(params)/2 - 2) x [Linear, ReLU], Linear (SPEC E1's layer list) on h of shape (runs, batch, in).

    ``dtype`` bfloat16 runs the layers under torch.autocast (the weights stay float32); the output is
    float32. Without autograd (sampling) the runs go through in blocks of about PASS_ROWS rows.
    """
    with torch.autocast(h.device.type, dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        if torch.is_grad_enabled():
            return layers(params, h).float()
        G = max(1, PASS_ROWS // h.shape[1])
        out = [layers(tuple(p[r : r + G] for p in params), h[r : r + G]) for r in range(0, len(h), G)]
        return torch.cat(out).float()


def layers(params: Params, h: torch.Tensor) -> torch.Tensor:
    W, b = params[0::2], params[1::2]
    # bmm then an in-place bias add beats the fused baddbmm on CPU; bmm keeps no output for backward.
    h = torch.bmm(h, W[0]).add_(b[0])
    for l in range(1, len(W) - 1):
        h = torch.bmm(h, W[l]).add_(b[l]).relu_()
    return torch.bmm(h, W[-1]).add_(b[-1])


def bmm(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """out = a @ b per run. On a CPU through NumPy's BLAS, which the caller limits to one thread: on the
    2-core machine of benchmarks/RESULTS_ensemble.md, OpenBLAS (in NumPy's wheels) multiplied these small
    per-run matrices (128 x 64 by 64 x 64) 1.3-1.7x faster than torch.bmm (MKL), and the narrow first and
    last layers (3 inputs, 2 outputs) up to 10x faster."""
    if a.device.type == "cpu":
        np.matmul(a.numpy(), b.numpy(), out=out.numpy())
    else:
        torch.bmm(a, b, out=out)
    return out


class TrainingPass:
    """The float32 MLP of a block of runs for training: ``pass_.net(rows)`` is the block's network as a
    function of its input, which runs ``layers``' forward pass into reused buffers; ``backward(g)`` then
    takes the gradient of the loss with respect to that output and writes the weights' gradients into
    their rows of ``grads``. Buffers hold one block of ``runs`` x ``batch`` rows.
    """

    def __init__(self, params: Params, grads: Params, runs: int, batch: int):
        self.params, self.grads = params, grads
        W = params[0::2]
        self.sizes = [W[0].shape[1]] + [w.shape[2] for w in W]
        new = lambda *shape: torch.empty(math.prod(shape), device=W[0].device)  # noqa: E731
        self.acts = [new(runs, batch, s) for s in self.sizes]  # acts[l]: the input of layer l
        self.delta = [new(runs, batch, max(self.sizes[1:-1])) for _ in range(2)]  # gradients wrt activations
        self.w_t = new(runs, max(a * b for a, b in zip(self.sizes[:-1], self.sizes[1:])))  # one layer's W^T

    def gradients(self, loss: Callable[..., torch.Tensor], rows: slice, data: list[torch.Tensor]) -> None:
        """Write the gradients of the summed ``loss(net, *data)`` for the block of runs ``rows``."""
        with torch.enable_grad():
            total = loss(self.net(rows), *data).sum()
            (g,) = torch.autograd.grad(total, self.out)
        self.backward(g)

    def net(self, rows: slice) -> Net:
        """The network of runs ``rows`` (a block of at most ``runs``), to be called once before backward."""
        self.rows, self.out = rows, None
        return self._forward

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        k, m, _ = x.shape
        W, b = [w[self.rows] for w in self.params[0::2]], [c[self.rows] for c in self.params[1::2]]
        with torch.no_grad():
            h = self._act(0, k, m).copy_(x)
            for l in range(len(W)):
                h = bmm(h, W[l], self._act(l + 1, k, m)).add_(b[l])
                if 0 < l < len(W) - 1:
                    h.relu_()
        self.out = h.detach().requires_grad_()
        return self.out

    def backward(self, g: torch.Tensor) -> None:
        """Write the gradients of the block's weights given g, the loss's gradient wrt the block's output."""
        k, m, _ = g.shape
        W, grads = [w[self.rows] for w in self.params[0::2]], [grad[self.rows] for grad in self.grads]
        with torch.no_grad():
            for l in reversed(range(len(W))):
                h = self._act(l, k, m)
                bmm(h.transpose(1, 2), g, grads[2 * l])
                torch.sum(g, 1, keepdim=True, out=grads[2 * l + 1])
                if l == 0:
                    break  # the input needs no gradient
                # g W^T with W^T copied first: BLAS reads a transposed W^T view at two thirds of the speed.
                W_T = self._view(self.w_t, k, self.sizes[l + 1], self.sizes[l]).copy_(W[l].transpose(1, 2))
                g = bmm(g, W_T, self._view(self.delta[l % 2], k, m, self.sizes[l]))
                if l > 1:  # layer l-1 ends in a ReLU: pass the gradient where its output is positive
                    g = torch.ops.aten.threshold_backward.grad_input(g, h, 0, grad_input=g)

    def _act(self, l: int, k: int, m: int) -> torch.Tensor:
        return self._view(self.acts[l], k, m, self.sizes[l])

    @staticmethod
    def _view(flat: torch.Tensor, *shape: int) -> torch.Tensor:
        return flat[: math.prod(shape)].view(shape)


def autocast_gradients(params: Params, grads: Params, dtype: torch.dtype, loss: Callable[..., torch.Tensor],
                       rows: slice, data: list[torch.Tensor]) -> None:
    """``TrainingPass.gradients`` by autograd through ``mlp`` under torch.autocast (bfloat16 training)."""
    leaves = tuple(p[rows].detach().requires_grad_() for p in params)
    with torch.enable_grad():
        loss(partial(mlp, leaves, dtype=dtype), *data).sum().backward()
    for grad, leaf in zip(grads, leaves):
        grad[rows] = leaf.grad


def train(
    params: Params,
    loss: Callable[..., torch.Tensor],
    x: np.ndarray,
    draw: Callable[[RunRNG, int, int], tuple[np.ndarray, ...]],
    rng: RunRNG,
    epochs: int,
    batch: int,
    lr: float,
    dtype: torch.dtype = torch.float32,
    w: np.ndarray | None = None,
) -> Params:
    """Minibatch Adam on all runs at once; returns new weights (``params`` is left unchanged).

    Each epoch visits every run's points x (runs, n, d) in that run's own random order, with the per-point
    noise ``draw(rng, n, d)`` (arrays of shape (runs, n, ...)); ``loss(net, x0, *noise)`` gives one loss per
    run of the network ``net`` (a function of the network's input, called once). Adam state starts fresh.
    With point weights ``w`` (runs, n) that are not equal within every run, the loss is called as
    ``loss(net, x0, *noise, v)`` with v (runs, batch, 1) the minibatch's ``relative_weights``: a minibatch's
    v-weighted mean loss estimates the run's w-weighted mean loss without bias. The draws do not change.
    """
    # All weights are views of one flat tensor, and so are their gradients: Adam is one fused update.
    flat = torch.cat([p.detach().reshape(-1) for p in params])
    flat.grad = torch.zeros_like(flat)
    params, grads = _views(flat, params), _views(flat.grad, params)
    device, (runs, n, d) = params[0].device, x.shape
    x = torch.as_tensor(x, dtype=torch.float32, device=device)
    v = relative_weights(w)
    v = None if v is None else torch.as_tensor(v[..., None], dtype=torch.float32, device=device)
    # Blocks of about PASS_ROWS runs x points, shared among torch's threads on a CPU (each thread with one BLAS
    # thread and its own buffers); a block of fewer than PASS_ROWS / 4 rows costs more in overhead than it gains.
    threads = torch.get_num_threads() if device.type == "cpu" and dtype == torch.float32 else 1
    G = max(1, min(PASS_ROWS // batch, max(-(-runs // threads), PASS_ROWS // 4 // batch)))
    blocks = [slice(r, r + G) for r in range(0, runs, G)]
    if dtype == torch.float32:
        passes = [TrainingPass(params, grads, min(G, runs), min(batch, n)).gradients for _ in blocks[:threads]]
    else:
        passes = [partial(autocast_gradients, params, grads, dtype)]
    opt = torch.optim.Adam([flat], lr=lr, fused=True)

    def share(j: int, i: int) -> None:
        """Thread j's blocks of minibatch i."""
        for rows in blocks[j :: len(passes)]:
            passes[j](loss, rows, [a[rows, i : i + batch] for a in epoch])

    with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(len(passes)) as pool:
        for _ in range(epochs):
            # One epoch's data and noise, drawn on the host in one go per stream.
            order = torch.as_tensor(rng.permutations(n), device=device)
            epoch = [torch.take_along_dim(x, order[..., None], 1)]
            epoch += [torch.as_tensor(a, dtype=torch.float32, device=device) for a in draw(rng, n, d)]
            if v is not None:
                epoch.append(torch.take_along_dim(v, order[..., None], 1))
            for i in range(0, n, batch):
                if len(passes) == 1:
                    share(0, i)
                else:
                    list(pool.map(share, range(len(passes)), [i] * len(passes)))
                opt.step()
    return tuple(p.clone() for p in params)


def relative_weights(w: np.ndarray | None) -> np.ndarray | None:
    """Each point's weight over its run's mean weight (runs, n), or None for the unweighted objective: when
    ``w`` is None or equal within every run. A run with equal weights gets exactly 1, so it trains as unweighted."""
    if w is None:
        return None
    total = w.sum(1, keepdims=True)
    if not (total > 0).all():
        raise ValueError("weighted training needs a positive total weight in every run")
    equal = (w == w[:, :1]).all(1, keepdims=True)
    return None if equal.all() else np.where(equal, 1.0, w * (w.shape[1] / total))


def _views(flat: torch.Tensor, like: Params) -> Params:
    """Consecutive pieces of ``flat`` shaped like ``like``."""
    return tuple(piece.view(p.shape) for piece, p in zip(flat.split([p.numel() for p in like]), like))
