"""E2 (SPEC section 4): MAD in the fully synthetic and synthetic augmentation loops, with and without sampling bias.

For each model family, both loops at lam = 1, 0.7, 0.5: distance to p_r (exact W2), precision and recall
(k-NN manifolds, k = 3) vs generation, means over runs with 95% CIs, and one run's synthetic sets S^t across
generations as scatter plots. Expected (SPEC E2): the distance grows; lam < 1 keeps precision but loses recall
faster.

Families: the Gaussian model on SPEC E1's 2D Gaussian, an 8-component Gaussian mixture on a ring of eight
Gaussians, and SPEC E1's toy DDPM on the 2D Gaussian when the ``ddpm`` family is registered (madloop.models.
diffusion); without it that family is skipped and the study says so. The cpu scale runs the DDPM at E1's
sizes (100 epochs, 1000 points) with only 8 runs: its six loops of 50 generations took most of the study's
47 minutes on 2 CPU cores (shared with another study); the gpu scale runs 50.

``mad-bias-flow-gan`` runs the same for the MAD paper's other two families on the same Gaussian: a RealNVP flow
(lam: temperature, z ~ N(0, lam I)) and a GAN (lam: truncation, z -> lam z); the cpu scale uses 500 points and
20 generations, since each family trains one network per run per generation (madloop.models.flow, .gan).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import madloop
from madloop.config import build_data
from madloop.registry import MODELS
from madloop.rng import Role, RunRNG
from madloop.runner import build
from madloop.studies import Study, register
from madloop.plots import loops_by_metric, save
from madloop.studies.common import columns_first, sweep, write_table

NAME = "mad-bias"
FAMILIES = {
    "gaussian": dict(model="gaussian", data="gaussian"),  # p_r = N([0, 0], [[2, 1], [1, 2]]), the data default
    "gmm": dict(model="gmm", data="mixture", data_options={"layout": "ring", "k": 8}, model_options={"k": 8}),
    "ddpm": dict(model="ddpm", data="gaussian"),
    "flow": dict(model="flow", data="gaussian"),
    "gan": dict(model="gan", data="gaussian"),
}
FAMILY_LABELS = {"gaussian": "Gaussian model, 2D Gaussian data",
                 "gmm": "Gaussian mixture (EM, k = 8), ring of 8 Gaussians",
                 "ddpm": "DDPM (SPEC E1's toy MLP), 2D Gaussian data",
                 "flow": "RealNVP flow (λ: temperature), 2D Gaussian data",
                 "gan": "GAN (MLPs, non-saturating; λ: truncation), 2D Gaussian data"}
COMMON = dict(loops=("fully_synthetic", "augmentation"), lams=(1.0, 0.7, 0.5), metrics=("w2", "precision", "recall"))


def snapshots(settings: Mapping[str, Any], lams, gens) -> pd.DataFrame:
    """Run 0's synthetic sets S^t (t in ``gens``) in the fully synthetic loop for each lam, on the sample path.

    Generation 0 rows hold n_ref real points, from a stream of the study's own.
    """
    frames = []
    for lam in lams:
        cfg = madloop.resolve({**settings, "loop": "fully_synthetic", "lam": lam, "runs": 1, "gens": max(gens),
                               "path": "samples"})
        for g in madloop.generations(cfg, build(cfg), range(0, 1)):
            if g.gen in gens:
                frames.append(pd.DataFrame(g.synth.x[0], columns=["x", "y"]).assign(lam=lam, gen=g.gen))
    real = build_data(cfg).sample(cfg.n_ref, RunRNG(cfg.seed, range(0, 1), 0, Role.STUDY_REAL)).x[0]
    return pd.concat([pd.DataFrame(real, columns=["x", "y"]).assign(lam=np.nan, gen=0), *frames], ignore_index=True)


def plot_metrics(table: pd.DataFrame, family: str, out: Path, name: str = NAME) -> list[Path]:
    """Rows: the loops; columns: the metrics; one line per lam."""
    table = table[table.family == family]
    order = list(COMMON["metrics"])
    metrics = sorted(set(table.metric), key=lambda m: order.index(m) if m in order else len(order))
    first = table.iloc[0]
    title = f"{FAMILY_LABELS[family]}: n_r = {first.n_real}, n_s = {first.n_synth}, {int(first.n)} runs (mean, 95% CI)"
    return loops_by_metric(table, metrics, lambda v: f"λ = {v:g}", title, out, f"{name}-{family}")


def plot_samples(samples: pd.DataFrame, family: str, out: Path, name: str = NAME) -> list[Path]:
    """Rows: lam; columns: a real sample, then S^t of one run at the snapshot generations (real data in grey)."""
    samples = samples[samples.family == family]
    real = samples[samples.gen == 0]
    lams, gens = list(dict.fromkeys(samples.lam.dropna())), sorted(set(samples.gen) - {0})
    lo, hi = real[["x", "y"]].min().min(), real[["x", "y"]].max().max()
    pad = 0.15 * (hi - lo)
    fig, axes = plt.subplots(len(lams), len(gens) + 1, figsize=(2.6 * (len(gens) + 1), 2.6 * len(lams)), squeeze=False,
                             sharex=True, sharey=True)
    for i, lam in enumerate(lams):
        for j, gen in enumerate([0, *gens]):
            ax = axes[i, j]
            ax.scatter(real.x, real.y, s=3, color="0.8", label="real data")
            if gen:
                s = samples[(samples.lam == lam) & (samples.gen == gen)]
                ax.scatter(s.x, s.y, s=3, color=f"C{i}", label="synthetic S^t")
            ax.set_title("real data" if not gen else f"λ = {lam:g}, generation {gen}", fontsize=9)
            ax.set_xlim(lo - pad, hi + pad)
            ax.set_ylim(lo - pad, hi + pad)
            ax.set_aspect("equal")
    fig.suptitle(f"{FAMILY_LABELS[family]}: one run of the fully synthetic loop (grey: a real sample)", fontsize=11)
    fig.tight_layout()
    return save(fig, out, f"{name}-samples-{family}")


def make(params: Mapping[str, Any], out: Path, jobs: int, name: str = NAME) -> list[Path]:
    """Each family of ``params["families"]`` (sizes per family) in both loops at each lam; the tables and
    figures are named after the study ``name``."""
    tables, samples = [], []
    for family, sizes in params["families"].items():
        if FAMILIES[family]["model"] not in MODELS:
            print(f"{name}: model family '{FAMILIES[family]['model']}' is not registered; skipping {family}")
            continue
        settings = {**FAMILIES[family], **{k: params[k] for k in ("gens", "every", "metrics")}, **sizes}
        summary = sweep({"loop": params["loops"], "lam": params["lams"]}, jobs, **settings).summary()
        tables.append(summary.assign(family=family, n_real=sizes["n_real"], n_synth=sizes["n_synth"]))
        samples.append(snapshots(settings, params["lams"], params["snapshots"]).assign(family=family))
    table = columns_first(pd.concat(tables, ignore_index=True), ["family", "loop", "lam", "n_real", "n_synth"])
    samples = pd.concat(samples, ignore_index=True)[["family", "lam", "gen", "x", "y"]]
    paths = [write_table(table, out, name), write_table(samples, out, f"{name}-samples")]
    for family in dict.fromkeys(table.family):
        paths += plot_metrics(table, family, out, name) + plot_samples(samples, family, out, name)
    return paths


register(Study(
    name=NAME,
    description="E2: fully synthetic and augmentation loops at lam = 1, 0.7, 0.5 (Gaussian, GMM, DDPM): "
                "W2, precision, recall",
    scales={
        "ci": dict(COMMON, lams=(1.0, 0.5), gens=3, every=1, snapshots=(1, 3), families={
            "gaussian": dict(runs=3, n_real=30, n_synth=30, n_eval=30, n_ref=30),
            "gmm": dict(runs=2, n_real=30, n_synth=30, n_eval=30, n_ref=30, iters=2),
            "ddpm": dict(runs=2, n_real=30, n_synth=30, n_eval=30, n_ref=30, epochs=1)}),
        "cpu": dict(COMMON, gens=50, every=5, snapshots=(1, 5, 20, 50), families={
            "gaussian": dict(runs=100, n_real=100, n_synth=100, n_eval=500, n_ref=500),
            "gmm": dict(runs=12, n_real=250, n_synth=250, n_eval=500, n_ref=500),
            "ddpm": dict(runs=8, n_real=1000, n_synth=1000, n_eval=1000, n_ref=1000)}),
        "gpu": dict(COMMON, gens=100, every=5, snapshots=(1, 5, 20, 50, 100), families={
            "gaussian": dict(runs=1000, n_real=100, n_synth=100, n_eval=1000, n_ref=1000),
            "gmm": dict(runs=100, n_real=1000, n_synth=1000, n_eval=1000, n_ref=1000),
            "ddpm": dict(runs=50, n_real=1000, n_synth=1000, n_eval=1000, n_ref=1000, device="auto")}),
    },
    make=make,
))


register(Study(
    name="mad-bias-flow-gan",
    description="E2 for the MAD paper's other two families: a RealNVP flow and a GAN, fully synthetic and "
                "augmentation loops at lam = 1, 0.7, 0.5: W2, precision, recall",
    scales={
        "ci": dict(COMMON, lams=(1.0, 0.5), gens=2, every=1, snapshots=(1, 2), families={
            "flow": dict(runs=2, n_real=40, n_synth=40, n_eval=40, n_ref=40, epochs=2, layers=2, width=8),
            "gan": dict(runs=2, n_real=40, n_synth=40, n_eval=40, n_ref=40, epochs=2, width=8)}),
        "cpu": dict(COMMON, gens=20, every=2, snapshots=(1, 5, 10, 20), families={
            "flow": dict(runs=8, n_real=500, n_synth=500, n_eval=500, n_ref=500),
            "gan": dict(runs=8, n_real=500, n_synth=500, n_eval=500, n_ref=500)}),
        "gpu": dict(COMMON, gens=100, every=5, snapshots=(1, 5, 20, 50, 100), families={
            "flow": dict(runs=50, n_real=1000, n_synth=1000, n_eval=1000, n_ref=1000, device="auto"),
            "gan": dict(runs=50, n_real=1000, n_synth=1000, n_eval=1000, n_ref=1000, device="auto")}),
    },
    make=functools.partial(make, name="mad-bias-flow-gan"),
))
