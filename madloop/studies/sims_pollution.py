"""E5 on images (SPEC section 4; issues 16 and 28): does SIMS protect a model whose training set is polluted with
synthetic images?

For each pollution size m (0: clean), one ``madloop.evaluate`` of the same seed: its base is the standard model
ST of the augmentation loop's generation T (T = 1, the clean model ST-I trained on D_r; T = 2 with n_synth = m,
the polluted model ST-P trained on D_r + D_p, D_p being m images of ST-I), sampled plain and with SIMS guidance
omega (SIMS-I, SIMS-P: the model's auxiliary copy fine-tuned on n_aux of its own samples for B images). Every
evaluation of the seed draws from the same noise and labels in draw d, so every model pairs with every other run
by run and draw by draw: FID per run and draw against held-out real images, means over runs with 95% Student-t
CIs, the paired difference to ST-I (``diff``) and to the standard model of the same pollution (SIMS-P - ST-P:
``diff_own``), beside the real-data floor; ``sims-pollution-raw.csv`` keeps every (kind, m, omega, run, draw) value.
The paper's claim (SIMS-P at least as good as ST-I) is for small pollution, |D_p| below 20-60% of |D_r|.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import matplotlib.pyplot as plt
import pandas as pd

from madloop.plots import save
from madloop.studies import Study, register
from madloop.studies.common import columns_first, evaluated, write_table
from madloop.studies.sims_images import SEED, paired

NAME = "sims-pollution"
COLORS = {"ST": "k", "SIMS": "C3"}


def pollution_rows(p: Mapping[str, Any], m: int, jobs: int) -> pd.DataFrame:
    """The raw (kind, pollution, omega, run, draw, fid) rows of the models trained on D_r + m images of ST-I."""
    samplers = {"ST": {}, **{f"SIMS {w:g}": {"algo": "sims", "n_aux": p["n_aux"], "aux_images": p["budget"], "omega": w}
                             for w in p["omegas"]}}
    loop = dict(gens=1) if m == 0 else dict(gens=2, loop="augmentation", n_synth=m)
    with evaluated(samplers, jobs, draws=p["draws"], data=p["data"], runs=p["runs"], n_real=p["n_real"],
                   n_eval=p["n_eval"], n_ref=p["n_ref"], seed=SEED, model="unet", model_options=p["unet"],
                   metrics=("fid",), **loop) as ev:
        table = ev.table
    kinds = {"floor": ("floor", 0.0), "ST": ("ST", 0.0), **{f"SIMS {w:g}": ("SIMS", w) for w in p["omegas"]}}
    rows = table[table.sampler != "floor"] if m else table  # the floor once, with the clean model
    return pd.DataFrame([dict(kind=kinds[r.sampler][0], pollution=m, omega=kinds[r.sampler][1], run=r.run, draw=r.draw,
                              fid=r.value) for r in rows.itertuples()])


def plot(table: pd.DataFrame, p: Mapping[str, Any], out: Path) -> list[Path]:
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    floor = table[table.kind == "floor"]["mean"].item()
    for (kind, omega), rows in table[table.kind != "floor"].groupby(["kind", "omega"], sort=False):
        label = "standard (ST)" if kind == "ST" else f"SIMS, omega = {omega:g}"
        style = dict(color=COLORS[kind], alpha=1.0 if kind == "ST" or omega == max(p["omegas"]) else 0.55)
        for ax, (y, lo, hi) in zip(axes, (("mean", "ci_low", "ci_high"), ("diff", "diff_lo", "diff_hi"))):
            ax.plot(rows.pollution, rows[y], "o-", label=label, **style)
            ax.fill_between(rows.pollution, rows[lo], rows[hi], alpha=0.15, color=style["color"])
    for omega, rows in table[table.kind == "SIMS"].groupby("omega", sort=False):
        style = dict(color=COLORS["SIMS"], alpha=1.0 if omega == max(p["omegas"]) else 0.55)
        axes[2].plot(rows.pollution, rows.diff_own, "o-", label=f"SIMS, omega = {omega:g}", **style)
        axes[2].fill_between(rows.pollution, rows.diff_own_lo, rows.diff_own_hi, alpha=0.15, color=style["color"])
    axes[0].axhline(floor, color="k", ls=":", lw=1, label="real-data floor")
    for ax in axes[1:]:
        ax.axhline(0, color="k", lw=1)
    axes[0].set_ylabel("FID (feature network; 95% CI)")
    axes[1].set_ylabel("FID - clean standard FID (paired)")
    axes[2].set_ylabel("SIMS FID - standard FID of the same model\n(paired; below 0: SIMS helps it)")
    for ax in axes:
        ax.set_xlabel("|D_p|: synthetic images mixed into the real set")
    axes[0].legend(fontsize=7)
    first = table.iloc[0]
    fig.suptitle(f"E5 on {p['data']}: |D_r| = {p['n_real']}, SIMS B = {p['budget']} images, {int(first.n)} runs x "
                 f"{int(first.draws)} paired draws of {p['n_eval']} images", fontsize=10)
    fig.tight_layout()
    return save(fig, out, f"{NAME}-{p['data']}")


def make(params: Mapping[str, Any], out: Path, jobs: int) -> list[Path]:
    p = dict(params)
    raw = pd.concat([pollution_rows(p, m, jobs) for m in (0, *p["sizes"])], ignore_index=True)
    table = columns_first(summarise(raw).assign(data=p["data"], n_real=p["n_real"], budget=p["budget"]),
                          ["data", "kind", "pollution", "omega", "n_real", "budget", "metric"])
    return [write_table(table, out, NAME), write_table(raw.assign(data=p["data"]), out, f"{NAME}-raw"),
            *plot(table, p, out)]


def summarise(raw: pd.DataFrame) -> pd.DataFrame:
    """``paired``'s table against ST-I (``diff``), with the paired difference to the standard model of the same
    pollution size beside it (``diff_own``: SIMS-P - ST-P, the same model, run and draw; does SIMS help the
    polluted model itself?)."""
    keys = ("kind", "pollution", "omega")
    table = paired(raw, keys=keys, metrics=("fid",), base="kind == 'ST' and pollution == 0")
    own = pd.concat([paired(g, keys=keys, metrics=("fid",), base="kind == 'ST'")
                     for m, g in raw[raw.kind != "floor"].groupby("pollution")])
    own = own[[*keys, "diff", "diff_lo", "diff_hi"]].rename(columns=lambda c: c.replace("diff", "diff_own"))
    return table.merge(own, on=list(keys), how="left")


register(Study(
    name=NAME,
    description="E5 on images: standard and SIMS models trained on clean and on polluted real sets (D_r + m of the "
                "first model's images): FID vs m with paired draws (digits at cpu scale)",
    scales={
        "ci": dict(data="digits", runs=2, n_real=64, sizes=(32,), n_aux=64, budget=64, omegas=(0.5,), draws=2,
                   n_eval=64, n_ref=64, unet=dict(images=256, batch=32, channels=8, steps=4, warmup=64, ema=64,
                                                  runs_per_pass=2)),
        # |D_p| at 5, 10, 20, 30, 50 and 100% of |D_r| (issue 28: the paper's claim is for small pollution)
        "cpu": dict(data="digits", runs=8, n_real=500, sizes=(25, 50, 100, 150, 250, 500), n_aux=500, budget=8192,
                    omegas=(0.5, 1.0), draws=5, n_eval=300, n_ref=400, unet=dict(images=16384)),
        "gpu": dict(data="mnist", runs=8, n_real=3000, sizes=(1000, 3000, 10000), n_aux=3000, budget=16384,
                    omegas=(0.5, 1.0, 2.0), draws=5, n_eval=1000, n_ref=1000,
                    unet=dict(images=262144, channels=32, device="auto", runs_per_pass=0)),
    },
    make=make,
))
