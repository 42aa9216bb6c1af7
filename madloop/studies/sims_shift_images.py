"""E6 on images (SPEC section 4; issue 28 item 4): can guidance away from a curated S move the class mix of an
image model toward a target, as SIMS's distribution control claims?

The samples must be free to change class, so the U-Net here is unconditional (``conditional = False``: trained
and sampled without labels); the class of an image is what the data set's feature-network classifier says.
One ``madloop.evaluate``: per run the base trains on D_r once; ``shift`` guides it away from an auxiliary copy
fine-tuned on S curated to 30/70 (classes 0-4 / 5-9, the complement of the 70/30 target), ``sims`` away from
a copy fine-tuned on plain S (what curation adds beyond SIMS itself), at omega from -1 (the auxiliary model
alone: the paper's 32%) to 3, every sampler from the same noise in each paired draw. Table: per (kind, B,
omega) the share of classes 0-4 and the FID with 95% Student-t CIs over runs and the paired difference to the
base; the reading says at which omega the share reaches 70%, or that it does not.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import matplotlib.pyplot as plt
import pandas as pd

from madloop.plots import save
from madloop.studies import Study, register
from madloop.studies.common import columns_first, evaluated, write_table
from madloop.studies.sims_images import SEED, TARGET, paired

NAME = "sims-shift-images"
KINDS = {"shift": "guidance away from S curated to 30/70", "sims": "guidance away from plain S (SIMS)"}
COLORS = {"shift": "C4", "sims": "C3"}


def samplers(p: Mapping[str, Any]) -> dict[str, tuple[dict, tuple]]:
    """name -> (settings, (kind, B, omega)): the base, then both kinds at every budget and omega."""
    out = {"base": ({}, ("base", 0, 0.0))}
    for b in p["budgets"]:
        for kind in KINDS:
            curated = {"aux_proportions": TARGET[::-1]} if kind == "shift" else {}
            for omega in p["omegas"]:
                out[f"{kind} B={b} omega={omega:g}"] = (
                    {"algo": "sims", "n_aux": p["n_aux"], "aux_images": b, "omega": omega, **curated}, (kind, b, omega))
    return out


def rows(p: Mapping[str, Any], jobs: int) -> pd.DataFrame:
    """The raw (kind, budget, omega, run, draw, fid, share_low) rows of the evaluation."""
    cells = samplers(p)
    with evaluated({name: given for name, (given, _) in cells.items()}, jobs, draws=p["draws"], data=p["data"],
                   runs=p["runs"], n_real=p["n_real"], n_eval=p["n_eval"], n_ref=p["n_ref"], seed=SEED, model="unet",
                   model_options={**p["unet"], "conditional": False}, metrics=("fid", "classes")) as ev:
        table = ev.table
    cells = {"floor": ("floor", 0, 0.0), **{name: cell for name, (_, cell) in cells.items()}}
    wide = table.pivot_table(index=["sampler", "run", "draw"], columns="metric", values="value")
    low = [f"classes_{k}" for k in range(sum(m.startswith("classes_") for m in wide.columns) // 2)]
    return pd.DataFrame([dict(zip(("kind", "budget", "omega"), cells[name]), run=run, draw=draw, fid=row.fid,
                              share_low=row[low].sum()) for (name, run, draw), row in wide.iterrows()])


def reading(table: pd.DataFrame) -> pd.DataFrame:
    """Per (kind, B): the base's share, the largest share reached and at which omega, and the smallest omega whose
    mean share reaches the target (NaN: not reached in the grid)."""
    share = table[table.metric == "share_low"]
    base = share[share.kind == "base"]["mean"].item()
    out = []
    for (kind, b), g in share[share.kind.isin(list(KINDS))].groupby(["kind", "budget"], sort=False):
        best = g.loc[g["mean"].idxmax()]
        reached = g[g["mean"] >= TARGET[0]].omega
        out.append(dict(kind=kind, budget=b, target=TARGET[0], base_share=base, best_share=best["mean"],
                        best_lo=best.ci_low, best_hi=best.ci_high, best_omega=best.omega,
                        omega_reaching_target=reached.min() if len(reached) else float("nan")))
    return pd.DataFrame(out)


def plot(table: pd.DataFrame, p: Mapping[str, Any], out: Path) -> list[Path]:
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.8))
    for (kind, b), g in table[table.kind.isin(list(KINDS))].groupby(["kind", "budget"], sort=False):
        style = "o-" if b == max(p["budgets"]) else "o--"
        for ax, metric in zip(axes, ("share_low", "fid")):
            m = g[g.metric == metric]
            ax.plot(m.omega, m["mean"], style, color=COLORS[kind], label=f"{KINDS[kind]}, B = {b}")
            ax.fill_between(m.omega, m.ci_low, m.ci_high, color=COLORS[kind], alpha=0.15)
    base = table[table.kind == "base"].set_index("metric")["mean"]
    floor = table[table.kind == "floor"].set_index("metric")["mean"]
    axes[0].axhline(TARGET[0], color="k", ls="--", lw=1, label=f"target {TARGET[0]:g}")
    axes[0].axhline(base["share_low"], color="k", lw=1, label="base (omega = 0)")
    axes[0].axhline(floor["share_low"], color="k", ls=":", lw=1, label="real images")
    axes[1].axhline(base["fid"], color="k", lw=1)
    axes[1].axhline(floor["fid"], color="k", ls=":", lw=1, label="real-data floor")
    axes[0].set_ylabel("share of classes 0-4 (classifier; 95% CI)")
    axes[1].set_ylabel("FID (feature network; log scale)")
    axes[1].set_yscale("log")
    for ax in axes:
        ax.set_xscale("symlog", linthresh=0.1)
        ax.set_xlabel("omega (-1: the auxiliary model alone)")
    axes[0].legend(fontsize=6)
    first = table.iloc[0]
    fig.suptitle(f"E6 on {p['data']}, unconditional U-Net: {int(first.n)} runs x {int(first.draws)} paired draws of "
                 f"{p['n_eval']} images", fontsize=10)
    fig.tight_layout()
    return save(fig, out, f"{NAME}-{p['data']}")


def make(params: Mapping[str, Any], out: Path, jobs: int) -> list[Path]:
    p = dict(params)
    raw = rows(p, jobs)
    table = columns_first(paired(raw, metrics=("share_low", "fid")).assign(data=p["data"], n_real=p["n_real"],
                                                                          n_aux=p["n_aux"]),
                          ["data", "kind", "budget", "omega", "n_real", "n_aux", "metric"])
    return [write_table(table, out, NAME), write_table(reading(table).assign(data=p["data"]), out, f"{NAME}-reading"),
            write_table(raw.assign(data=p["data"]), out, f"{NAME}-raw"), *plot(table, p, out)]


register(Study(
    name=NAME,
    description="E6 on images: an unconditional U-Net guided away from S curated to 30/70; the share of classes 0-4 "
                "vs omega (target 70%) and FID, with paired draws (digits at cpu scale)",
    scales={
        "ci": dict(data="digits", runs=2, n_real=64, n_aux=64, budgets=(64,), omegas=(-1.0, 1.0), draws=2, n_eval=64,
                   n_ref=64, unet=dict(images=256, batch=32, channels=8, steps=4, warmup=64, ema=64, runs_per_pass=2)),
        "cpu": dict(data="digits", runs=8, n_real=500, n_aux=500, budgets=(4096, 16384),
                    omegas=(-1.0, 0.5, 1.0, 1.5, 2.0, 3.0), draws=3, n_eval=300, n_ref=400,
                    unet=dict(images=131072)),  # the conditional base's plateau budget (images-convergence)
        "gpu": dict(data="mnist", runs=8, n_real=3000, n_aux=3000, budgets=(16384, 65536),
                    omegas=(-1.0, 0.5, 1.0, 1.5, 2.0, 3.0), draws=5, n_eval=1000, n_ref=1000,
                    unet=dict(images=262144, channels=32, device="auto", runs_per_pass=0)),
    },
    make=make,
))
