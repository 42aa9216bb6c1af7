"""Model metrics: quantities of each run's fitted model G^t, read from the model itself; no sample is drawn.

``model_*`` describe G^t alone (its covariance's trace and log-determinant). ``true_*`` are closed-form
distances between G^t = N(mu_t, Sigma_t) (the model's mean and covariance) and the truth p_r = N(mu, Sigma)
(the Evaluation's ``truth``): exact, and fast enough for a million runs per generation.

With M = Sigma^-1 Sigma_t (the fit relative to the truth) and the mean gap u = mu_t - mu:

    KL(p_r || G^t) = (tr M^-1 + u^T Sigma_t^-1 u - d + log det M) / 2
    KL(G^t || p_r) = (tr M + u^T Sigma^-1 u - d - log det M) / 2

A singular Sigma_t gives inf in both directions: p_r has mass off G^t's support, and G^t puts all its
mass on a set to which p_r gives none. Singular here means to working precision: a relative eigenvalue
(or, at d = 2, a determinant relative to a c) below a few float64 epsilons, which rounding of Sigma_t
cannot tell from zero.

At d = 2 these invariants, and the Bures term of W2, are closed 2 x 2 formulas in the entries of Sigma_t
(det, adjugate, and tr sqrt(Sigma^1/2 Sigma_t Sigma^1/2) = sqrt(tr(Sigma Sigma_t) + 2 sqrt(det Sigma
det Sigma_t))): elementwise arithmetic over runs, with no batched linear algebra. Other dimensions whiten
by the truth and use batched eigendecompositions, several times slower.
"""

from __future__ import annotations

import numpy as np

from madloop.gaussian import gaussian_w2, logdet
from madloop.metrics.base import Evaluation, register

def model_mean_cov(ev: Evaluation) -> tuple[np.ndarray, np.ndarray]:
    """The fitted model's mean (runs, d) and covariance (runs, d, d)."""
    if not hasattr(ev.model, "moments"):
        raise ValueError(f"this metric needs a model with moments(); {type(ev.model).__name__} has none")
    return ev.model.moments()


@register("accepted", batched=True, model=True, distance=False)
def accepted(ev: Evaluation) -> np.ndarray:
    """Curation's cost: the share of the candidates drawn from G^t that the verifier accepted (madloop/remedies.py)."""
    if not ev.cost or "accepted" not in ev.cost:
        raise ValueError("metric 'accepted' reads curation's cost, which this generation did not record "
                         "(it needs curate, and a runner that passes the loop's costs to the measurement)")
    return ev.cost["accepted"]


@register("model_trace", batched=True, model=True, distance=False)
def model_trace(ev: Evaluation) -> np.ndarray:
    """Trace of the fitted model's covariance."""
    return np.einsum("...ii->...", model_mean_cov(ev)[1])


@register("model_logdet", batched=True, model=True, distance=False)
def model_logdet(ev: Evaluation) -> np.ndarray:
    """Log-determinant of the fitted model's covariance (the model's own, exact even deep in a collapse, if it has one)."""
    if hasattr(ev.model, "logdet"):
        return np.asarray(ev.model.logdet(), dtype=float)
    return logdet(model_mean_cov(ev)[1])


TINY = 4 * np.finfo(float).eps  # relative size below which an eigenvalue is lost in rounding


def fit_and_truth(ev: Evaluation) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """mu_t (runs, d), Sigma_t (runs, d, d), mu (d,), Sigma (d, d)."""
    if ev.truth is None:
        raise ValueError("true_* metrics compare the fitted model with p_r, but this evaluation has no truth: "
                         "the data source must know its distribution (Gaussian data)")
    mean_t, cov_t = model_mean_cov(ev)
    mu, Sigma = (np.asarray(a, dtype=float) for a in ev.truth)
    return mean_t, cov_t, mu, Sigma


def entries(cov: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(a, b, c) of a stack of symmetric 2 x 2 matrices [[a, b], [b, c]]."""
    return cov[..., 0, 0], cov[..., 0, 1], cov[..., 1, 1]


def pair(S: np.ndarray, a, b, c):
    """tr(S X) for a symmetric 2 x 2 S and the symmetric X = [[a, b], [b, c]] (also x^T S x with X = x x^T)."""
    return S[0, 0] * a + 2 * S[0, 1] * b + S[1, 1] * c


def invariants(ev: Evaluation) -> tuple[np.ndarray, ...]:
    """Per run: Sigma_t positive definite?, tr M, log det M, tr M^-1, u^T Sigma^-1 u, u^T Sigma_t^-1 u.

    M = Sigma^-1 Sigma_t and u = mu_t - mu; the terms with an inverse of Sigma_t are finite only where it is
    positive definite (the caller replaces them there).
    """
    mean_t, cov_t, mu, Sigma = fit_and_truth(ev)
    u, P = mean_t - mu, np.linalg.inv(Sigma)
    if len(mu) == 2:
        a, b, c = entries(cov_t)
        det = a * c - b**2
        pd = (a > 0) & (det > TINY * a * c)
        det = np.where(pd, det, 1.0)
        uu = (u[:, 0] ** 2, u[:, 0] * u[:, 1], u[:, 1] ** 2)
        trace_inv, quad_inv = pair(Sigma, c, -b, a) / det, (c * uu[0] - 2 * b * uu[1] + a * uu[2]) / det
        return pd, pair(P, a, b, c), np.log(det / np.linalg.det(Sigma)), trace_inv, pair(P, *uu), quad_inv
    # Whiten by the truth, W Sigma W^T = I: M ~ W Sigma_t W^T, and diagonalise that.
    W = np.linalg.inv(np.linalg.cholesky(Sigma))
    ell, V = np.linalg.eigh(W @ cov_t @ W.T)
    pd = ell[:, 0] > TINY * len(mu) * np.abs(ell[:, -1])
    ell = np.where(pd[:, None], ell, 1.0)
    w = (u @ W.T)[:, None, :] @ V
    return pd, ell.sum(-1), np.log(ell).sum(-1), (1 / ell).sum(-1), (u @ P * u).sum(-1), (w[:, 0] ** 2 / ell).sum(-1)


@register("true_kl", batched=True, model=True)
def true_kl(ev: Evaluation) -> np.ndarray:
    """KL(p_r || G^t) in nats; inf where Sigma_t is singular."""
    pd, _, logdet, trace_inv, _, quad_inv = invariants(ev)
    return np.where(pd, (trace_inv + quad_inv - ev.truth[0].shape[0] + logdet) / 2, np.inf)


@register("true_kl_rev", batched=True, model=True)
def true_kl_rev(ev: Evaluation) -> np.ndarray:
    """KL(G^t || p_r) in nats; inf where Sigma_t is singular."""
    pd, trace, logdet, _, quad, _ = invariants(ev)
    return np.where(pd, (trace + quad - ev.truth[0].shape[0] - logdet) / 2, np.inf)


@register("true_w2", batched=True, model=True)
def true_w2(ev: Evaluation) -> np.ndarray:
    """Closed-form (Bures) W2 between N(mu_t, Sigma_t) and p_r."""
    mean_t, cov_t, mu, Sigma = fit_and_truth(ev)
    if len(mu) != 2:
        return gaussian_w2(mean_t, cov_t, mu, Sigma)
    a, b, c = entries(cov_t)
    cross = np.sqrt(np.clip(pair(Sigma, a, b, c) + 2 * np.sqrt(np.clip(a * c - b**2, 0.0, None) * np.linalg.det(Sigma)), 0.0, None))
    bures = a + c + np.trace(Sigma) - 2 * cross
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
