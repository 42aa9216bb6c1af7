"""Accumulate vs replace (SPEC section 1): keep every past synthetic set, or only the last one.

Three ways to use the synthetic data, on the same seeds and with the same n_s new synthetic points per
generation, in the fully synthetic and augmentation loops:
- replace: D^t uses S^(t-1) only;
- accumulate: D^t uses S^1 .. S^(t-1), so the training set grows by n_s every generation;
- accumulate, subsampled to n_s (``budget``): the pool S^1 .. S^(t-1) subsampled to n_s points, the same
  training-set size as replace.
In the augmentation loop the fixed real set D_r joins each of them. All of them run on the sample path (a budget is not a function of sufficient statistics), so the three share
their random streams. Distance: the Gaussian model's closed-form W2 to p_r, and exact W2 between samples for
the DDPM (when the ``ddpm`` family is registered; without it that family is skipped and the study says so).
The DDPM's accumulating training set grows by n_s a generation, and so does the cost of every epoch: its
cpu scale is 8 runs of 10 generations at E1's sizes (the whole study: 6.5 minutes on 2 CPU cores); the gpu
scale runs 50 runs of 50 generations.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import matplotlib.pyplot as plt
import pandas as pd

from madloop.registry import MODELS
from madloop.studies import Study, register
from madloop.plots import STUDY_LABELS, curves, floor_note, save, top_legend
from madloop.studies.common import LOOP_LABELS, columns_first, sweep, write_table

NAME = "accumulate"
FAMILIES = {
    "gaussian": dict(model="gaussian", data="gaussian", metrics=("true_w2",)),
    "ddpm": dict(model="ddpm", data="gaussian", metrics=("w2",)),
}
FAMILY_LABELS = {"gaussian": "Gaussian model, 2D Gaussian data", "ddpm": "DDPM (SPEC E1's toy MLP), 2D Gaussian data"}


def arms(n_synth: int) -> dict[str, dict[str, Any]]:
    return {"replace": dict(accumulate=False), "accumulate": dict(accumulate=True),
            f"accumulate, subsampled to {n_synth}": dict(accumulate=True, budget=n_synth)}


def plot(table: pd.DataFrame, family: str, out: Path) -> list[Path]:
    """Columns: the loops; top row: the distance, bottom row: the MAD ratio; one line per arm."""
    table = table[table.family == family]
    loops, metric = list(dict.fromkeys(table.loop)), table.metric.iloc[0]
    fig, axes = plt.subplots(2, len(loops), figsize=(4.8 * len(loops), 6.4), squeeze=False, sharex=True)
    for j, loop in enumerate(loops):
        rows = table[table.loop == loop]
        curves(axes[0, j], rows, "arm")
        curves(axes[1, j], rows, "arm", value="mad_ratio")
        axes[0, j].set_title(LOOP_LABELS[loop], fontsize=10)
        if rows["mean"].max() > 3 * rows["mean"].min():
            axes[0, j].set_yscale("log")
        axes[1, j].axhline(1.0, color="0.5", linewidth=0.8)
    for ax in axes[:-1].flat:
        ax.set_xlabel("")
    axes[0, 0].set_ylabel(f"{STUDY_LABELS.get(metric, metric)}\nmean over runs (95% CI)")
    axes[1, 0].set_ylabel("MAD ratio  E[d_t] / E[d_1] (95% CI)")
    first = table.iloc[0]
    fig.suptitle(f"{FAMILY_LABELS[family]}: n_r = {first.n_real}, n_s = {first.n_synth} new per generation, "
                 f"{int(first.n)} runs, same seeds{floor_note(table)}", fontsize=11)
    top_legend(fig, axes[0, 0], under_title=True)
    return save(fig, out, f"{NAME}-{family}")


def make(params: Mapping[str, Any], out: Path, jobs: int) -> list[Path]:
    tables = []
    for family, sizes in params["families"].items():
        if FAMILIES[family]["model"] not in MODELS:
            print(f"{NAME}: model family '{FAMILIES[family]['model']}' is not registered; skipping {family}")
            continue
        for arm, setting in arms(sizes["n_synth"]).items():
            settings = {**FAMILIES[family], **sizes, **setting, "path": "samples"}
            summary = sweep({"loop": params["loops"]}, jobs, **settings).summary()
            tables.append(summary.assign(family=family, arm=arm, n_real=sizes["n_real"], n_synth=sizes["n_synth"]))
    table = columns_first(pd.concat(tables, ignore_index=True), ["family", "loop", "arm", "n_real", "n_synth"])
    paths = [write_table(table, out, NAME)]
    for family in dict.fromkeys(table.family):
        paths += plot(table, family, out)
    return paths


LOOPS = ("fully_synthetic", "augmentation")
register(Study(
    name=NAME,
    description="Accumulating all past synthetic data vs replacing it (and accumulating within a fixed budget): "
                "distance vs generation",
    scales={
        "ci": dict(loops=LOOPS, families={
            "gaussian": dict(runs=20, n_real=20, n_synth=20, gens=4),
            "ddpm": dict(runs=2, n_real=30, n_synth=30, n_eval=30, n_ref=30, gens=2, epochs=1)}),
        "cpu": dict(loops=LOOPS, families={
            "gaussian": dict(runs=1000, n_real=100, n_synth=100, gens=100, every=2),
            "ddpm": dict(runs=8, n_real=1000, n_synth=1000, n_eval=1000, n_ref=1000, gens=10)}),
        "gpu": dict(loops=LOOPS, families={
            "gaussian": dict(runs=10000, n_real=100, n_synth=100, gens=200, every=2),
            "ddpm": dict(runs=50, n_real=1000, n_synth=1000, n_eval=1000, n_ref=1000, gens=50, every=2,
                         device="auto")}),
    },
    make=make,
))
