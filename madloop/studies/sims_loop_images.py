"""SIMS inside the image loop (issue 16): the augmentation loop on digits, standard training against SIMS at
the omega and budget B that study sims-images found best, per generation: FID, precision and recall with 95%
Student-t CIs over runs, and the paired difference SIMS - standard run by run (madloop.compare: the two arms
share the seed, so D_r and each run's generation-1 base are the same).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import matplotlib.pyplot as plt
import pandas as pd

import madloop
from madloop.plots import save
from madloop.studies import Study, register
from madloop.studies.common import columns_first, sweep, write_table

NAME = "sims-loop-images"
METRICS = ("fid", "precision", "recall")


def make(params: Mapping[str, Any], out: Path, jobs: int) -> list[Path]:
    p = dict(params)
    arms = [dict(algo="standard"), dict(algo="sims", omega=p["omega"], aux_images=p["budget"], n_aux=p["n_aux"])]
    result = sweep(arms, jobs, loop=p["loop"], data=p["data"], model="unet", metrics=METRICS, **p["settings"])
    standard, sims = result.results
    summary = result.summary()
    summary = summary[summary.metric.isin(METRICS)]
    diffs = pd.concat([madloop.compare(standard, sims, m).assign(metric=m) for m in METRICS], ignore_index=True)
    paired = diffs.rename(columns={"diff": "mean", "lo": "ci_low", "hi": "ci_high", "a": "standard", "b": "sims"})
    table = pd.concat([summary.assign(kind=summary.algo), paired.assign(kind="sims - standard (paired)")],
                      ignore_index=True)
    table = columns_first(table.drop(columns=["algo"], errors="ignore").assign(loop=p["loop"], omega=p["omega"],
                                                                               budget=p["budget"]),
                          ["kind", "loop", "omega", "budget", "metric", "gen"])
    fig, axes = plt.subplots(2, len(METRICS), figsize=(4.2 * len(METRICS), 6.4), sharex=True, squeeze=False)
    for j, metric in enumerate(METRICS):
        for arm, color in (("standard", "k"), ("sims", "C3")):
            rows = summary[(summary.algo == arm) & (summary.metric == metric)]
            label = "standard" if arm == "standard" else f"SIMS, omega = {p['omega']:g}, B = {p['budget']}"
            axes[0, j].plot(rows.gen, rows["mean"], "o-", color=color, label=label)
            axes[0, j].fill_between(rows.gen, rows.ci_low, rows.ci_high, color=color, alpha=0.15)
        d = diffs[(diffs.metric == metric) & (diffs.gen > 0)]
        axes[1, j].plot(d.gen, d["diff"], "o-", color="C3")
        axes[1, j].fill_between(d.gen, d.lo, d.hi, color="C3", alpha=0.2)
        axes[1, j].axhline(0, color="k", lw=1)
        axes[0, j].set_title(metric, fontsize=10)
        axes[1, j].set_xlabel("generation t (0: real)")
    axes[0, 0].legend(fontsize=7)
    axes[1, 0].set_ylabel("SIMS - standard (paired; 95% CI)")
    s = p["settings"]
    fig.suptitle(f"SIMS in the {p['loop'].replace('_', ' ')} loop on {p['data']}: n_r = {s['n_real']}, "
                 f"n_s = {s['n_synth']}, {s['runs']} runs (mean, 95% CI)", fontsize=10)
    fig.tight_layout()
    return [write_table(table, out, NAME), *save(fig, out, NAME)]


register(Study(
    name=NAME,
    description="SIMS inside the image loop: augmentation loop on digits, standard vs SIMS at sims-images' best "
                "omega and B, FID/precision/recall per generation and the paired difference",
    scales={
        "ci": dict(loop="augmentation", data="digits", omega=0.5, budget=64, n_aux=64, settings=dict(
            runs=2, gens=2, n_real=64, n_synth=64, n_eval=64, n_ref=64, images=256, batch=32, channels=8, steps=4,
            warmup=64, ema=64, runs_per_pass=2)),
        "cpu": dict(loop="augmentation", data="digits", omega=0.5, budget=2048, n_aux=500, settings=dict(
            runs=8, gens=4, n_real=500, n_synth=500, n_eval=500, n_ref=400, images=8192)),
        "gpu": dict(loop="augmentation", data="mnist", omega=0.5, budget=16384, n_aux=3000, settings=dict(
            runs=8, gens=20, n_real=3000, n_synth=3000, n_eval=1000, n_ref=1000, images=262144, channels=32,
            device="auto")),
    },
    make=make,
))
