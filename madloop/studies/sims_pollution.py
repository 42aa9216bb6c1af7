"""E5 on images (SPEC section 4; issue 16): does SIMS protect a model whose training set is polluted with
synthetic images?

Per group of runs: a first model G^1 trains on the clean real set D_r (ST-I) and draws the pollution D_p, m of
its own images; a polluted model trains on D_r + D_p (ST-P, one per pollution size m). Each model gets its
SIMS auxiliary (the copy fine-tuned on n_aux of its own samples for B images) and samples with guidance
omega (SIMS-I, SIMS-P). Every sampler draws ``draws`` paired sets (the same noise and labels); FID per run and
draw against held-out real images, means over runs with 95% Student-t CIs, and the paired difference to
ST-I (the clean standard model) and to the standard model of the same pollution (SIMS-P - ST-P: ``diff_own``),
beside the real-data floor; ``sims-pollution-raw.csv`` keeps every (kind, m, omega, run, draw) value.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Mapping

import matplotlib.pyplot as plt
import pandas as pd

from madloop.plots import save
from madloop.rng import Role
from madloop.samples import Samples
from madloop.sims import SIMS
from madloop.studies import Study, register
from madloop.studies.common import by_groups, columns_first, keeper, write_table
from madloop.studies.sims_images import measure, paired, setting

NAME = "sims-pollution"
COLORS = {"ST": "k", "SIMS": "C3"}


def group_rows(p: Mapping[str, Any], runs: range, work: Path | None = None) -> list[dict]:
    """The rows of one group of runs; with a ``work`` folder its stages (each model, each auxiliary, each
    draw's rows) are kept there (``madloop.studies.common.stage``)."""
    src, net, psi, streams, real, spec = setting(p, runs)
    sims = SIMS(n_aux=p["n_aux"], aux_images=p["budget"])
    kept = keeper(work, study=NAME, params=p, runs=[runs.start, runs.stop])
    clean = kept("model 0", lambda: spec.fit(real, streams.at(1, Role.TRAIN).child(Role.FIT)))

    @functools.cache
    def pollution():  # D_p: images of the first model
        return clean.sample(max(p["sizes"]), streams.at(1, Role.SYNTH))

    def polluted_model(m: int, train):
        polluted = Samples.concat([real, Samples(pollution().x[:, :m], pollution().y[:, :m])])
        return spec.fit(polluted, train.child(Role.FIT))

    def one_draw(m: int, model, aux, draw: int) -> list[dict]:
        samplers = [("ST", 0.0, model)] + [("SIMS", w, spec.guided(model, aux, w)) for w in p["omegas"]]
        if m == 0:
            samplers.append(("floor", 0.0, None))
        rows = []
        for kind, omega, sampler in samplers:
            x = (src.sample(p["n_eval"], streams.at(1 + draw, "floor")) if sampler is None
                 else sampler.sample(p["n_eval"], streams.at(1 + draw, Role.EVAL))).x  # a new stream object each:
            # the same noise and labels for every sampler of this draw (a stream advances with every draw)
            fid, _ = measure(x, net, psi)
            rows += [dict(kind=kind, pollution=m, omega=omega, run=r, draw=draw, fid=f) for r, f in zip(runs, fid)]
        return rows

    rows = []
    for m in (0, *p["sizes"]):
        train = streams.at(2 + m, Role.TRAIN)
        model = clean if m == 0 else kept(f"model {m}", lambda: polluted_model(m, train))  # noqa: B023
        aux = kept(f"aux {m}", lambda: sims.auxiliary(spec, model, real, train))  # noqa: B023 (called at once)
        for draw in range(p["draws"]):
            rows += kept(f"draw {m} {draw}", lambda: one_draw(m, model, aux, draw))  # noqa: B023
    return rows


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
    raw = pd.DataFrame([row for rows in by_groups(group_rows, p, jobs) for row in rows])
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
        "cpu": dict(data="digits", runs=8, n_real=500, sizes=(250, 500, 1000), n_aux=500, budget=8192,
                    omegas=(0.5, 1.0), draws=5, n_eval=300, n_ref=400, unet=dict(images=16384)),
        "gpu": dict(data="mnist", runs=8, n_real=3000, sizes=(1000, 3000, 10000), n_aux=3000, budget=16384,
                    omegas=(0.5, 1.0, 2.0), draws=5, n_eval=1000, n_ref=1000,
                    unet=dict(images=262144, channels=32, device="auto", runs_per_pass=0)),
    },
    make=make,
))
