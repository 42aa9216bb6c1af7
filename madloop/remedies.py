"""Remedies for MADness that act on the training data (SPEC section 4b); the loop (madloop/loop.py) applies them.

- Real-data weighting (He, Xu, Cheng 2025), ``weigh``: in a generation that trains on real and synthetic
  data, the real set carries the share w (``real_weight``) of the training objective and the synthetic set
  1 - w, whatever their sizes: each real point weighs w / n_real, each synthetic point (1 - w) / |S|.
  Without it every point weighs the same, so the real share is n_real / (n_real + |S|). Generation 1 trains
  on real data alone and the fully synthetic loop on synthetic data alone: neither has anything to weigh.
- Curation (Ferbach et al. 2024; Feng et al. 2024), ``curate``: S^t keeps only samples that a verifier
  accepts. ``oracle``: x is accepted with probability (r(x) / M)^s, r = p_r / p_model, the density ratio of
  the truth to the distribution S^t was drawn from (G^t with the sampling bias lam), M its bound. At s = 1
  this is rejection sampling from p_r; in between the kept samples follow p_model^(1-s) p_r^s (up to
  normalisation), and s = 0 keeps everything. ``quantile``: the score log p_r(x) must reach the per-run
  q-quantile of the candidates' scores (strength q): the best n_synth of n_synth / (1 - q) candidates.
- Self-correction (Gillman et al. 2024), ``correct``: every sample of S^t takes ``steps`` Metropolis-adjusted
  Langevin steps on log p_r of size eps = strength / steps (the strength is the Langevin time: deviations
  from p_r along an eigendirection of a Gaussian p_r's covariance with eigenvalue sigma^2 shrink by about
  exp(-strength / sigma^2)). The Metropolis step makes p_r itself invariant, so a correction moves samples
  toward p_r and never past it. eps should stay below the smallest variance of p_r's components.

Curation and correction act on S^t as it is drawn, before any training set takes it in (with
``accumulate`` each S^t is curated once, when it joins the kept sets); curation first (the verifier
judges G^t's own samples), then correction. Both need points; neither applies at strength 0.

Cost: curation draws candidates until n_synth are accepted (at most MAX_DRAWS x n_synth per run) and
reports ``accepted``, per run the accepted share of the candidates a sequential sampler would have drawn.
Correction costs 2 evaluations of log p_r and its score per sample and step.
"""

from __future__ import annotations

import numpy as np

from madloop.rng import Role, Streams
from madloop.samples import Samples

MAX_DRAWS = 20  # curation draws at most this many times n_synth candidates per run
CURATORS = ("oracle", "quantile")
DEFAULT_STRENGTH = {"oracle": 1.0, "quantile": 0.5}
STRENGTH_RANGE = {"oracle": (0.0, 1.0), "quantile": (0.0, 1.0 - 1.0 / MAX_DRAWS)}


def weigh(data, share: float | None):
    """A training set (Samples or sufficient statistics) carrying ``share`` of the objective; None: as it is."""
    return data if share is None else data.weighted(share)


def active(cfg) -> bool:
    """Whether curation or correction changes S^t (a strength of 0 changes nothing)."""
    return (cfg.curate is not None and cfg.curate_strength > 0) or (cfg.correct is not None and cfg.correct > 0)


def apply(cfg, data, model, synth: Samples, streams: Streams, t: int) -> tuple[Samples, dict[str, np.ndarray]]:
    """S^t after the configured curation and correction, and their per-run costs (``accepted``)."""
    cost = {}
    if cfg.curate is not None:
        synth, cost["accepted"] = curate(cfg.curate, cfg.curate_strength, data, model, synth, cfg.lam,
                                         streams.at(t, Role.CANDIDATES), streams.at(t, Role.CURATE))
    if cfg.correct is not None:
        synth = correct(cfg.correct, cfg.correct_steps, data, synth, streams.at(t, Role.CORRECT))
    return synth, cost


def curate(kind: str, strength: float, data, model, synth: Samples, lam: float, candidates, accept):
    """The n_synth samples per run that the verifier ``kind`` keeps, and the accepted share (runs,).

    ``synth``: S^t as G^t drew it (the first candidates); ``candidates``: the stream of further draws from
    G^t; ``accept``: the verifier's own draws.
    """
    if strength == 0:
        return synth, np.ones(synth.n_runs)
    if kind == "quantile":
        return best_scores(strength, data, model, synth, lam, candidates)
    return oracle(strength, data, model, synth, lam, candidates, accept)


def best_scores(q: float, data, model, synth: Samples, lam: float, candidates):
    """The n highest scores log p_r(x) of n / (1 - q) candidates per run, in the order they were drawn."""
    n = synth.n
    total = int(np.ceil(n / (1 - q) - 1e-9))
    pool = synth if total == n else Samples.concat([synth, model.sample(total - n, candidates, lam)])
    keep = np.sort(np.argsort(-data.log_prob(pool.x), axis=1, kind="stable")[:, :n], axis=1)
    return pool.take(keep), np.full(synth.n_runs, n / total)


def oracle(s: float, data, model, synth: Samples, lam: float, candidates, accept):
    """Rejection sampling toward p_r: accept x with probability (r(x) / M)^s, r = p_r(x) / p_model(x).

    M is estimated per run as the largest r among S^t's own n samples (the first candidates); a later
    candidate above it is accepted for sure, so where r exceeds M the kept samples follow p_model instead
    of p_r (rare once n is large; the model's tails are where it happens). Candidates come in rounds of n
    until every run holds n accepted ones or MAX_DRAWS rounds are drawn; a run still short then fills up
    with the rejected candidates of highest acceptance probability.
    """
    n = synth.n

    def log_ratio(x):
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.nan_to_num(data.log_prob(x) - model.log_prob(x, lam), nan=-np.inf)

    first = log_ratio(synth.x)
    bound = first.max(1, keepdims=True)
    pool, log_r = [synth], [first]
    ok, prob = [], []
    while True:
        with np.errstate(invalid="ignore", over="ignore"):
            p = np.exp(np.minimum(s * (log_r[-1] - bound), 0.0))
        prob.append(np.nan_to_num(p, nan=0.0))
        ok.append(accept.random(n) < prob[-1])
        if (sum(a.sum(1) for a in ok) >= n).all() or len(pool) == MAX_DRAWS:
            break
        pool.append(model.sample(n, candidates, lam))
        log_r.append(log_ratio(pool[-1].x))
    index, accepted = first_accepted(np.concatenate(ok, axis=1), np.concatenate(prob, axis=1), n)
    return Samples.concat(pool).take(index), accepted


def first_accepted(ok: np.ndarray, prob: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per run, the indices of the first n accepted candidates (``ok``, (runs, N), in draw order), filled up
    with the rejected ones of highest ``prob`` where fewer than n were accepted; and the accepted share of
    the candidates a sequential sampler draws: n over the position of the n-th acceptance, or all
    acceptances over N."""
    runs, total = ok.shape
    rank_rejected = np.argsort(np.argsort(-prob, axis=1, kind="stable"), axis=1, kind="stable")
    key = np.where(ok, np.arange(total), total + rank_rejected)
    index = np.argsort(key, axis=1, kind="stable")[:, :n]
    count = np.cumsum(ok, axis=1)
    enough = count[:, -1] >= n
    drawn = np.where(enough, np.argmax(count >= n, axis=1) + 1, total)
    return index, np.minimum(count[:, -1], n) / drawn


def correct(strength: float, steps: int, data, synth: Samples, rng) -> Samples:
    """S^t after ``steps`` Metropolis-adjusted Langevin steps on log p_r (MALA) of size strength / steps.

    Each step proposes y = x + eps grad log p_r(x) + sqrt(2 eps) z and accepts it with probability
    min(1, p_r(y) q(x | y) / (p_r(x) q(y | x))), q the proposal's Gaussian density.
    """
    if strength == 0:
        return synth
    eps = strength / steps
    x = synth.x
    log_p, score = data.log_prob(x), data.score(x)
    for _ in range(steps):
        # Langevin proposal: drift up log p_r, plus noise.
        y = x + eps * score + np.sqrt(2 * eps) * rng.standard_normal(*x.shape[1:])
        log_p_y, score_y = data.log_prob(y), data.score(y)
        # Metropolis-Hastings: keep p_r invariant.
        forward = ((y - x - eps * score) ** 2).sum(-1) / (4 * eps)
        backward = ((x - y - eps * score_y) ** 2).sum(-1) / (4 * eps)
        with np.errstate(invalid="ignore", over="ignore"):
            move = np.log(rng.random(x.shape[1])) < log_p_y - log_p - backward + forward
        x = np.where(move[..., None], y, x)
        log_p, score = np.where(move, log_p_y, log_p), np.where(move[..., None], score_y, score)
    return Samples(x, synth.y, synth.w)
