"""E6 in 2D (SPEC section 4; issue 16): SIMS's distribution control on a two-component Gaussian mixture.

The base DDPM trains on D_r from an equal mixture of two well-separated components. Its auxiliary copy is
fine-tuned on S curated to the complement of the target mix (``--aux-proportions 0.3,0.7``: 30% component 0,
70% component 1, labelled by the most likely component of p_r); guidance away from it, (1 + omega) base -
omega aux, should move the output toward the target 70/30. Beside it, plain SIMS (S uncurated) at the same
omega separates the curation's effect from guidance's own. Per omega: the share of component 0 among the
samples and each group's exact W2 (POT) to its own component of p_r, over paired draws (the same noise for
every sampler), means over runs with 95% Student-t CIs, the real-data floor beside every W2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import madloop
from madloop.metrics.sample import w2_exact
from madloop.models.diffusion import DDPM
from madloop.plots import save
from madloop.rng import Role, Streams
from madloop.sims import SIMS
from madloop.studies import Study, register
from madloop.studies.common import columns_first, keeper, work_folder, write_table
from madloop.studies.sims_images import paired

NAME = "sims-shift"
SEED = 0
TARGET = (0.7, 0.3)
MEANS = ((-2.0, 0.0), (2.0, 0.0))
KINDS = {"shift": "SIMS, S curated to 30/70", "sims": "SIMS, S uncurated"}


def measure(x: np.ndarray, source, refs: list[np.ndarray]) -> list[dict]:
    """Per run: the share of component 0 and each group's W2 to its own component of p_r (NaN under 2 points)."""
    labels = source.label(x)
    rows = []
    for run, (points, lab) in enumerate(zip(x, labels)):
        row = dict(run=run, share_0=float((lab == 0).mean()))
        for g, ref in enumerate(refs):
            own = points[lab == g]
            row[f"w2_{g}"] = w2_exact(own, ref) if len(own) >= 2 else np.nan
        rows.append(row)
    return rows


def rows_of(p: Mapping[str, Any], work: Path | None = None) -> pd.DataFrame:
    """Every (kind, omega, draw, run) row; with a ``work`` folder the stages (the base, each auxiliary, each
    draw's rows) are kept there (``madloop.studies.common.stage``)."""
    source = madloop.DATA["mixture"](means=MEANS, std=p["std"])
    streams = Streams(SEED, range(p["runs"]), p["runs"])
    real = source.sample(p["n_real"], streams.at(0, Role.REAL))
    spec = DDPM(**p["ddpm"])
    train = streams.at(1, Role.TRAIN)
    kept = keeper(work, study=NAME, params=p)
    base = kept("base", lambda: spec.fit(real, train.child(Role.FIT)))
    # Each group's reference: n_ref points of its own component (shared by every run).
    ref_rng = np.random.default_rng(SEED)
    refs = [np.asarray(m) + p["std"] * ref_rng.standard_normal((p["n_ref"], 2)) for m in MEANS]
    aux = {kind: kept(f"aux {kind}", lambda: SIMS(n_aux=p["n_aux"], aux_epochs=p["aux_epochs"],  # noqa: B023
                                                  aux_proportions=shares).auxiliary(spec, base, real, train,
                                                                                     source=source))
           for kind, shares in (("shift", TARGET[::-1]), ("sims", None))}

    def one_draw(draw: int) -> list[dict]:
        samplers = [("floor", 0.0, lambda r: source.sample(p["n_eval"], streams.at(1 + draw, Role.FLOOR))),
                    ("base", 0.0, lambda r: base.sample(p["n_eval"], r))]
        samplers += [(kind, w, lambda r, m=model, w=w: spec.guided(base, m, w).sample(p["n_eval"], r))
                     for kind, model in aux.items() for w in p["omegas"]]
        rows = []
        for kind, omega, draw_samples in samplers:
            x = draw_samples(streams.at(1 + draw, Role.EVAL)).x  # a new stream object per sampler: the same noise
            # for every sampler of this draw (a stream advances with every draw from it)
            rows += [dict(kind=kind, omega=omega, draw=draw, **m) for m in measure(x, source, refs)]
        return rows

    return pd.DataFrame([row for draw in range(p["draws"]) for row in kept(f"draw {draw}", lambda: one_draw(draw))])


def plot(table: pd.DataFrame, p: Mapping[str, Any], out: Path) -> list[Path]:
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    titles = {"share_0": "share of component 0", "w2_0": "W2 of group 0 to component 0",
              "w2_1": "W2 of group 1 to component 1"}
    for ax, (metric, title) in zip(axes, titles.items()):
        rows = table[table.metric == metric]
        for kind, color in (("shift", "C4"), ("sims", "C3")):
            m = rows[rows.kind == kind]
            ax.plot(m.omega, m["mean"], "o-", color=color, label=KINDS[kind])
            ax.fill_between(m.omega, m.ci_low, m.ci_high, color=color, alpha=0.2)
        ax.axhline(rows[rows.kind == "base"]["mean"].item(), color="k", lw=1, label="base (omega = 0)")
        ax.axhline(rows[rows.kind == "floor"]["mean"].item(), color="k", ls=":", lw=1, label="real data")
        if metric == "share_0":
            ax.axhline(TARGET[0], color="k", ls="--", lw=1, label="target 0.7")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("omega")
    axes[0].legend(fontsize=7)
    n = int(table.n.max())
    fig.suptitle(f"E6 in 2D: DDPM on an equal two-component mixture, guidance away from S curated to 30/70 "
                 f"({n} runs x {p['draws']} paired draws of {p['n_eval']} points; mean, 95% CI)", fontsize=10)
    fig.tight_layout()
    return save(fig, out, NAME)


def make(params: Mapping[str, Any], out: Path, jobs: int) -> list[Path]:
    summary = paired(rows_of(params, work_folder()), keys=("kind", "omega"), metrics=("share_0", "w2_0", "w2_1"))
    table = columns_first(summary.assign(n_real=params["n_real"], n_aux=params["n_aux"]),
                          ["kind", "omega", "n_real", "n_aux", "metric"])
    return [write_table(table, out, NAME), *plot(table, params, out)]


register(Study(
    name=NAME,
    description="E6 in 2D: SIMS's distribution control on a two-component mixture: the share of component 0 and "
                "each group's W2 vs omega, S curated to 30/70 against uncurated S",
    scales={
        "ci": dict(runs=2, n_real=200, n_aux=200, aux_epochs=2, std=0.5, omegas=(0.5, 2.0), draws=2, n_eval=200,
                   n_ref=200, ddpm=dict(width=16, depth=2, epochs=3, batch=100)),
        "cpu": dict(runs=8, n_real=1000, n_aux=1000, aux_epochs=50, std=0.5, omegas=(0.25, 0.5, 1.0, 2.0, 3.0),
                    draws=5, n_eval=1000, n_ref=1000,
                    ddpm=dict(epochs=100, batch=128, standardize=True, time_embedding="sinusoidal")),
        "gpu": dict(runs=100, n_real=1000, n_aux=2000, aux_epochs=50, std=0.5, omegas=(0.25, 0.5, 1.0, 2.0, 3.0, 5.0),
                    draws=5, n_eval=2000, n_ref=2000,
                    ddpm=dict(epochs=100, batch=128, standardize=True, time_embedding="sinusoidal", device="auto")),
    },
    make=make,
))
