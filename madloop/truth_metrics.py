"""Closed-form distances between each run's fitted model G^t = N(mu_t, Sigma_t) and the truth p_r = N(mu, Sigma).

They read the model's ``moments()`` and the Evaluation's ``truth`` (p_r's mean and covariance), so no
sample is drawn: exact, and fast enough for a million runs per generation.

KL divergences go through the fit relative to the truth, M = W Sigma_t W^T and v = W (mu_t - mu) with
W Sigma W^T = I (the eigenvalues of M are those of Sigma^-1 Sigma_t):

    KL(p_r || G^t) = (tr M^-1 + v^T M^-1 v - d + log det M) / 2
    KL(G^t || p_r) = (tr M + |v|^2 - d - log det M) / 2

A singular Sigma_t (M not positive definite, to working precision) gives inf in both directions: p_r has
mass off G^t's support, and G^t puts all its mass on a set that p_r gives none.

At d = 2 the invariants of M, and the Bures term of W2, use closed 2 x 2 formulas (det, adjugate, and
tr sqrt(Sigma^1/2 Sigma_t Sigma^1/2) = sqrt(tr(Sigma Sigma_t) + 2 sqrt(det Sigma det Sigma_t))); other
dimensions use batched eigendecompositions, a few times slower.
"""

from __future__ import annotations

import numpy as np

from madloop.metrics import Evaluation, _model_moments, gaussian_w2, register


def fit_and_truth(ev: Evaluation) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """mu_t (runs, d), Sigma_t (runs, d, d), mu (d,), Sigma (d, d)."""
    if ev.truth is None:
        raise ValueError("true_* metrics compare the fitted model with p_r, but this evaluation has no truth: "
                         "the data source must know its distribution (Gaussian data)")
    mean_t, cov_t = _model_moments(ev)
    mu, Sigma = (np.asarray(a, dtype=float) for a in ev.truth)
    return mean_t, cov_t, mu, Sigma


def relative_fit(ev: Evaluation) -> tuple[np.ndarray, np.ndarray]:
    """M = W Sigma_t W^T (runs, d, d) and v = W (mu_t - mu) (runs, d), with W = chol(Sigma)^-1."""
    mean_t, cov_t, mu, Sigma = fit_and_truth(ev)
    W = np.linalg.inv(np.linalg.cholesky(Sigma))
    d = len(mu)
    # vec(W C W^T) = (W kron W) vec(C): one (runs, d^2) x (d^2, d^2) product.
    M = (cov_t.reshape(-1, d * d) @ np.kron(W, W).T).reshape(-1, d, d)
    return M, (mean_t - mu) @ W.T


def invariants(M: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per run: positive definite?, tr M, log det M, tr M^-1, v^T M^-1 v (the last two finite where PD)."""
    if M.shape[-1] == 2:
        det = M[:, 0, 0] * M[:, 1, 1] - M[:, 0, 1] ** 2
        pd = (det > 0) & (M[:, 0, 0] > 0)
        det = np.where(pd, det, 1.0)
        trace = M[:, 0, 0] + M[:, 1, 1]
        quad = M[:, 1, 1] * v[:, 0] ** 2 - 2 * M[:, 0, 1] * v[:, 0] * v[:, 1] + M[:, 0, 0] * v[:, 1] ** 2
        return pd, trace, np.log(det), trace / det, quad / det
    ell, V = np.linalg.eigh(M)
    pd = ell[:, 0] > 0
    ell = np.where(pd[:, None], ell, 1.0)
    return pd, ell.sum(-1), np.log(ell).sum(-1), (1 / ell).sum(-1), ((v[:, None, :] @ V)[:, 0] ** 2 / ell).sum(-1)


@register("true_kl", batched=True, model=True)
def true_kl(ev: Evaluation) -> np.ndarray:
    """KL(p_r || G^t) in nats; inf where Sigma_t is singular."""
    M, v = relative_fit(ev)
    pd, _, logdet, trace_inv, quad_inv = invariants(M, v)
    return np.where(pd, (trace_inv + quad_inv - M.shape[-1] + logdet) / 2, np.inf)


@register("true_kl_rev", batched=True, model=True)
def true_kl_rev(ev: Evaluation) -> np.ndarray:
    """KL(G^t || p_r) in nats; inf where Sigma_t is singular."""
    M, v = relative_fit(ev)
    pd, trace, logdet, _, _ = invariants(M, v)
    return np.where(pd, (trace + (v**2).sum(-1) - M.shape[-1] - logdet) / 2, np.inf)


@register("true_w2", batched=True, model=True)
def true_w2(ev: Evaluation) -> np.ndarray:
    """Closed-form (Bures) W2 between N(mu_t, Sigma_t) and p_r."""
    mean_t, cov_t, mu, Sigma = fit_and_truth(ev)
    if len(mu) != 2:
        return gaussian_w2(mean_t, cov_t, mu, Sigma)
    det_t = np.clip(cov_t[:, 0, 0] * cov_t[:, 1, 1] - cov_t[:, 0, 1] ** 2, 0.0, None)
    cross = np.sqrt(np.clip(np.einsum("rij,ji->r", cov_t, Sigma) + 2 * np.sqrt(det_t * np.linalg.det(Sigma)), 0.0, None))
    bures = np.trace(cov_t, axis1=-2, axis2=-1) + np.trace(Sigma) - 2 * cross
    return np.sqrt(np.clip(((mean_t - mu) ** 2).sum(-1) + bures, 0.0, None))


@register("true_mean_err", batched=True, model=True)
def true_mean_err(ev: Evaluation) -> np.ndarray:
    """||mu_t - mu||."""
    mean_t, _, mu, _ = fit_and_truth(ev)
    return np.sqrt(((mean_t - mu) ** 2).sum(-1))


@register("true_cov_err", batched=True, model=True)
def true_cov_err(ev: Evaluation) -> np.ndarray:
    """||Sigma_t - Sigma|| (Frobenius)."""
    _, cov_t, _, Sigma = fit_and_truth(ev)
    return np.sqrt(((cov_t - Sigma) ** 2).sum((-2, -1)))
