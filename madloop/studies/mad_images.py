"""E2 on images (SPEC section 4; issue 15): MAD of an EDM U-Net on real digit images, with and without bias.

The fully synthetic, synthetic augmentation and fresh data loops at lam = 1, 0.7, 0.5, where lam acts through
classifier-free guidance (w = 1 / lam - 1) of the class-conditional U-Net. Per generation: FID and KID in the
feature space of the data set's own classifier (madloop.features), precision and recall (k = 3) in that
space, and the effective number of classes exp(H) of the generated images' class histogram under that
classifier; means over runs with 95% CIs, the real-data floor at generation 0. Figures: the metrics vs
generation, the class shares vs generation, and run 0's sample grids (the same noise and labels at every
generation) for each loop and lam.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import matplotlib.pyplot as plt
import pandas as pd

import madloop
from madloop import grids
from madloop.plots import loops_by_metric, save
from madloop.studies import Study, register
from madloop.studies.common import LOOP_LABELS, columns_first, swept, write_table

NAME = "mad-images"
LOOPS = ("fully_synthetic", "augmentation", "fresh")
LAMS = (1.0, 0.7, 0.5)
METRICS = ("fid", "kid", "precision", "recall", "classes")
SHOWN = ("fid", "precision", "recall", "classes")  # KID is in the table; it tells the same story as FID


def run_points(data: str, settings: Mapping[str, Any], loops, lams, jobs: int) -> tuple[pd.DataFrame, dict]:
    """The sweep's summary and run 0's grids per (loop, lam) and generation, read before a scratch folder goes."""
    axes = {"loop": list(loops), "lam": list(lams)}
    with swept(axes, jobs, data=data, model="unet", metrics=METRICS, **settings) as result:
        pictures = {}
        for point, run in zip(result.points, result.results):
            for gen in grids.stored(run.path, 0):
                pictures[point["loop"], point["lam"], gen] = grids.read(run.path, gen, 0)
        return result.summary(), pictures


def plot_metrics(table: pd.DataFrame, data: str, out: Path) -> list[Path]:
    """Rows: the loops; columns: the metrics; one line per lam."""
    first = table.iloc[0]
    title = (f"EDM U-Net on {data} ({first['size']}): n_r = {first.n_real}, n_s = {first.n_synth}, {int(first.n)} runs "
             "(mean, 95% CI)")
    return loops_by_metric(table, SHOWN, lambda v: f"λ = {v:g} (CFG w = {1 / v - 1:.2g})", title, out, f"{NAME}-{data}",
                           cell=(4.2, 3.3))


def plot_classes(table: pd.DataFrame, data: str, out: Path) -> list[Path]:
    """Mean share of each class (under the feature network's classifier) vs generation: rows loops, columns lam."""
    parts = table[table.metric.str.startswith("classes_")]
    loops, lams = list(dict.fromkeys(parts.loop)), list(dict.fromkeys(parts.lam))
    fig, axes = plt.subplots(len(loops), len(lams), figsize=(3.6 * len(lams), 2.8 * len(loops)), squeeze=False,
                             sharex=True, sharey=True)
    for i, loop in enumerate(loops):
        for j, lam in enumerate(lams):
            rows = parts[(parts.loop == loop) & (parts.lam == lam)]
            shares = rows.pivot_table(index="metric", columns="gen", values="mean")
            shares = shares.loc[sorted(shares.index, key=lambda m: int(m.rpartition("_")[2]))]
            image = axes[i, j].imshow(shares.to_numpy(), aspect="auto", cmap="viridis", vmin=0, vmax=0.3,
                                      extent=(shares.columns.min() - 0.5, shares.columns.max() + 0.5, len(shares) - 0.5, -0.5))
            axes[i, j].set_title(f"{LOOP_LABELS[loop]}, λ = {lam:g}", fontsize=9)
            axes[i, j].set_yticks(range(len(shares)))
            if j == 0:
                axes[i, j].set_ylabel("class")
            if i == len(loops) - 1:
                axes[i, j].set_xlabel("generation t (0: real)")
    fig.colorbar(image, ax=axes, shrink=0.6, label="mean share of generated images")
    fig.suptitle(f"Class histogram of generated {data} images under the feature network's classifier", fontsize=11)
    return save(fig, out, f"{NAME}-{data}-classes")


def plot_grids(pictures: dict, data: str, out: Path) -> list[Path]:
    """Run 0's grids: a row per (loop, lam), a column per stored generation (0: real images)."""
    keys = sorted({(loop, lam) for loop, lam, _ in pictures}, key=lambda k: (LOOPS.index(k[0]), -k[1]))
    gens = sorted({g for *_, g in pictures})
    h, w = next(iter(pictures.values())).shape[:2]
    fig, axes = plt.subplots(len(keys), len(gens), figsize=(0.6 + 2.4 * len(gens), 0.5 + (2.4 * h / w + 0.25) * len(keys)),
                             squeeze=False)
    for i, (loop, lam) in enumerate(keys):
        for j, gen in enumerate(gens):
            ax = axes[i, j]
            ax.imshow(pictures[loop, lam, gen], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title("real" if gen == 0 else f"t = {gen}", fontsize=9)
            if j == 0:
                ax.set_ylabel(f"{loop.replace('_', ' ')}\nλ = {lam:g}", fontsize=8)
    fig.suptitle(f"Run 0 of each loop on {data}: the same noise and labels at every generation", fontsize=10)
    fig.tight_layout()
    return save(fig, out, f"{NAME}-{data}-grids")


def make(params: Mapping[str, Any], out: Path, jobs: int) -> list[Path]:
    paths = []
    tables = []
    for data, settings in params["data"].items():
        summary, pictures = run_points(data, {**settings, "gens": params["gens"]}, params["loops"], params["lams"], jobs)
        size = "x".join(map(str, madloop.DATA[data]().shape[1:]))  # the source's default size
        table = summary.assign(data=data, size=size, n_real=settings["n_real"], n_synth=settings["n_synth"])
        tables.append(table)
        paths += plot_metrics(table, data, out) + plot_classes(table, data, out) + plot_grids(pictures, data, out)
    table = columns_first(pd.concat(tables, ignore_index=True), ["data", "size", "loop", "lam", "n_real", "n_synth"])
    return [write_table(table, out, NAME), *paths]


register(Study(
    name=NAME,
    description="E2 on images: fully synthetic, augmentation and fresh loops at lam = 1, 0.7, 0.5 (CFG) with an EDM "
                "U-Net on digits and MNIST: FID, KID, precision, recall, class histogram, sample grids",
    scales={
        "ci": dict(loops=("fully_synthetic", "augmentation"), lams=(1.0, 0.5), gens=2, data={
            "digits": dict(runs=2, n_real=64, n_synth=64, n_eval=64, n_ref=64, images=256, batch=32, channels=8,
                           steps=4, warmup=64, ema=64)}),
        "cpu": dict(loops=LOOPS, lams=LAMS, gens=4, data={
            "digits": dict(runs=8, n_real=500, n_synth=500, n_eval=500, n_ref=400, images=8192),
            # 16x16 MNIST (the mnist source's default size) with the default U-Net and budget: ~4x digits' cost per
            # image, so 3 runs (the issue's minimum) fit the hour with digits' part
            "mnist": dict(runs=3, n_real=500, n_synth=500, n_eval=500, n_ref=500, images=8192)}),
        "gpu": dict(loops=LOOPS, lams=LAMS, gens=20, data={
            "mnist": dict(runs=8, n_real=3000, n_synth=3000, n_eval=1000, n_ref=1000, device="auto"),
            "fashion-mnist": dict(runs=4, n_real=10000, n_synth=10000, n_eval=5000, n_ref=5000, device="auto")}),
    },
    make=make,
))
