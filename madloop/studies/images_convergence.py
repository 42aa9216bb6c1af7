"""Converged bases (issue 28, item 1): how many training images does the EDM U-Net base need to reach its FID
plateau on each image data set?

Per data set (a part, as in sims-images) and group of runs: each run's D_r of n_real images (the same D_r and
training stream as sims-images' base for the same parameters), one U-Net per run trained once for the
largest budget of a geometric ladder, with the EMA weights kept at every budget (``UNet.fit_ladder``: the
learning rate is constant after its warm-up, the minibatch order comes from a keyed stream and the EMA's
half-life at a step depends only on the images seen so far, so the model at N images is exactly the model a
fit of N images gives). Each budget's model draws ``draws`` sets of n_eval images per run, every budget from
the same noise and labels; FID, KID, precision and recall (k = 3) in the data set's feature network's space
against n_ref held-out reference images. The real-data floor: n_eval real images of the training pool against
the same reference.

Table: per (kind, images, metric) the mean over runs of each run's mean over draws with its 95% Student-t CI,
and the paired difference (same run and draw) to the plateau budget. The plateau is the budget with the
lowest mean FID; the study reports the smallest budget whose mean FID is within 10% of it, and whether the
curve has flattened (``reading``), in ``images-convergence-plateau.csv`` with the feature network's
held-out accuracy (on its own test share and on the reference images).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import madloop
from madloop import features, grids
from madloop.metrics.image import frechet_distance, kernel_distance
from madloop.metrics.knn import coverage, knn_radius2
from madloop.plots import save
from madloop.rng import Role, RunRNG
from madloop.studies import STUDIES, Study, register
from madloop.studies.common import by_groups, columns_first, keeper, write_table
from madloop.studies.sims_images import SEED, paired, parts, setting

NAME = "images-convergence"
METRICS = {"fid": "FID", "kid": "KID", "precision": "precision", "recall": "recall"}
WITHIN = 0.10  # "converged": mean FID within 10% of the plateau's


def scores(phi: np.ndarray, psi: np.ndarray) -> dict[str, np.ndarray]:
    """Per run: FID, KID, precision and recall of features phi (runs, n, f) against reference features psi (m, f)."""
    return dict(fid=frechet_distance(phi, psi), kid=kernel_distance(phi, psi),
                precision=coverage(phi, psi[None], knn_radius2(psi)[None]),
                recall=np.array([coverage(psi, x, knn_radius2(x)) for x in phi]))


def group_rows(p: Mapping[str, Any], runs: range, work: Path | None = None) -> tuple[list[dict], dict]:
    """The rows of one group of runs (one grouped U-Net), and run 0's first images at each budget when the group
    holds it. With a ``work`` folder its stages (the models of the whole ladder, each draw's rows) are kept there."""
    src, net, psi, streams, real, spec = setting(p, runs)
    kept = keeper(work, study=NAME, params=p, runs=[runs.start, runs.stop])
    budgets = sorted(p["budgets"])
    ladder = kept("ladder", lambda: spec.fit_ladder(real, streams.at(1, Role.TRAIN).child(Role.FIT), budgets))

    def one_draw(draw: int) -> tuple[list[dict], list]:
        rows, pictures = [], []

        def record(kind: str, images: int, x: np.ndarray):
            values = scores(net.embed(x.reshape(-1, *x.shape[2:])).reshape(*x.shape[:2], -1), psi)
            rows.extend(dict(kind=kind, images=images, run=r, draw=draw, **{m: float(v[i]) for m, v in values.items()})
                        for i, r in enumerate(runs))
            if runs.start == 0 and draw == 0:
                pictures.append((kind, images, x[0, : p["grid"]]))

        record("floor", 0, src.sample(p["n_eval"], streams.at(1 + draw, Role.FLOOR)).x)  # held-out real images
        for images, model in zip(budgets, ladder):  # every budget from the same noise and labels
            record("base", images, model.sample(p["n_eval"], streams.at(1 + draw, Role.EVAL)).x)
        return rows, pictures

    rows, pictures = [], {}
    for draw in range(p["draws"]):
        more, shown = kept(f"draw {draw}", lambda: one_draw(draw))  # noqa: B023 (called at once)
        rows += more
        pictures.update({(kind, images): x for kind, images, x in shown})
    return rows, pictures


def about(p: Mapping[str, Any]) -> dict[str, Any]:
    """A part's data set, image size, U-Net size and sets, and its feature network's accuracy on the network's own
    held-out test share and on the n_ref reference images (held out from its training too, and more of them)."""
    src = madloop.DATA[p["data"]]()
    net = features.network(src)
    ref = src.reference(p["n_ref"], RunRNG(SEED, range(0, 1), 0, Role.REFERENCE))  # the images setting() embeds
    u = p["unet"]
    return dict(data=p["data"], size="x".join(map(str, src.shape[1:])), channels=u.get("channels", 16),
                mults=",".join(map(str, u.get("mults", (1, 2)))), n_real=p["n_real"], n_eval=p["n_eval"],
                n_ref=p["n_ref"], feature_accuracy=net.accuracy,
                reference_accuracy=float((net.classify(ref.x[0]) == ref.y[0]).mean()))


def plateau(table: pd.DataFrame) -> dict[str, Any]:
    """Where the mean FID of the base levels off: the plateau is the lowest mean FID over the ladder, ``within``
    the smallest budget within WITHIN of it, and ``reading`` says whether the curve has flattened."""
    fid = table[(table.kind == "base") & (table.metric == "fid")].sort_values("images").set_index("images")["mean"]
    best, last, before = fid.idxmin(), fid.index[-1], fid.index[-2] if len(fid) > 1 else None
    within = fid.index[fid <= (1 + WITHIN) * fid[best]][0]
    if best == last and (before is None or fid[before] > (1 + WITHIN) * fid[best]):
        reading = "still falling: the last doubling lowered FID by more than 10%, no plateau reached"
    elif best == last:
        reading = "flattening: the last doubling lowered FID by less than 10%"
    elif fid[last] > (1 + WITHIN) * fid[best]:
        reading = f"rises after its best budget: FID at the last budget is {fid[last] / fid[best] - 1:.0%} above"
    else:
        reading = "flat: every budget from the one within 10% stays near the plateau"
    floor = table[(table.kind == "floor") & (table.metric == "fid")].iloc[0]
    return dict(plateau_images=int(best), plateau_fid=fid[best], within_images=int(within), within_fid=fid[within],
                last_doubling=fid[last] / fid[before] - 1 if before is not None else np.nan, reading=reading,
                floor_fid=floor["mean"], floor_lo=floor.ci_low, floor_hi=floor.ci_high)


def part_table(raw: pd.DataFrame, p: Mapping[str, Any]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """One data set's table (paired to its plateau budget) and its plateau summary."""
    per_run = raw[raw.kind == "base"].groupby(["images", "run"]).fid.mean().groupby("images").mean()
    best = int(per_run.idxmin())
    table = paired(raw, keys=("kind", "images"), metrics=tuple(METRICS), base=f"kind == 'base' and images == {best}")
    table.loc[table.kind == "floor", "gen"] = 0  # as in a loop's table: generation 0 is the real-data floor
    facts = about(p)
    table = columns_first(table.assign(**facts), ["data", "size", "channels", "mults", "kind", "images", "metric"])
    return table, {**facts, "runs": p["runs"], "draws": p["draws"], **plateau(table)}


def budget_label(n: int) -> str:
    return f"{n // 1024}k" if n >= 1024 and n % 1024 == 0 else str(n)


def plot(table: pd.DataFrame, summary: pd.DataFrame, out: Path) -> list[Path]:
    """Rows: FID, KID, precision, recall vs images seen; a column per data set: the base's mean and 95% CI over
    runs, the real-data floor beside it, the plateau +10% band and the smallest budget inside it."""
    fig, axes = plt.subplots(len(METRICS), len(summary), figsize=(5.2 * len(summary), 2.6 * len(METRICS)),
                             squeeze=False, sharex="col")
    # where the image SIMS study's base stops (its cpu scale), for the reading
    studied = {q["data"]: q["unet"].get("images") for q in parts(STUDIES["sims-images"].scales["cpu"])}
    for j, s in enumerate(summary.itertuples()):
        part = table[table.data == s.data]
        for i, (metric, label) in enumerate(METRICS.items()):
            ax, rows = axes[i, j], part[part.metric == metric]
            base, floor = rows[rows.kind == "base"].sort_values("images"), rows[rows.kind == "floor"].iloc[0]
            ax.plot(base.images, base["mean"], "o-", color="C0", label="base U-Net (mean, 95% CI over runs)")
            ax.fill_between(base.images, base.ci_low, base.ci_high, color="C0", alpha=0.2)
            ax.axhline(floor["mean"], color="k", ls=":", lw=1, label="real-data floor (95% CI)")
            ax.axhspan(floor.ci_low, floor.ci_high, color="k", alpha=0.08)
            ax.axvline(s.within_images, color="C3", ls="--", lw=1, label="smallest budget within 10% of plateau")
            if studied.get(s.data):
                ax.axvline(studied[s.data], color="C2", ls="-.", lw=1, label="sims-images' base budget (cpu scale)")
            if metric == "fid":
                ax.axhspan(s.plateau_fid, (1 + WITHIN) * s.plateau_fid, color="C3", alpha=0.15, label="plateau FID +10%")
                ax.set_yscale("log")
                ax.set_title(f"{s.data} {s.size}, U-Net {s.channels} ch x ({s.mults}), |D_r| = {s.n_real}\n{s.runs} runs x "
                             f"{s.draws} draws of {s.n_eval} images vs {s.n_ref} references (features "
                             f"{s.reference_accuracy:.1%} accurate)\nplateau FID {s.plateau_fid:.3g} at "
                             f"{budget_label(s.plateau_images)}, within 10% from {budget_label(s.within_images)}; "
                             f"floor {s.floor_fid:.3g}", fontsize=8)
            ax.set_xscale("log", base=2)
            ax.set_xticks(base.images, [budget_label(n) for n in base.images], fontsize=7)
            ax.minorticks_off()
            if j == 0:
                ax.set_ylabel(label + (" (log scale)" if metric == "fid" else ""))
        axes[-1, j].set_xlabel("training images seen per run")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=7, frameon=False)
    fig.suptitle("EDM U-Net base vs training budget, in each data set's own feature network", fontsize=10)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return save(fig, out, NAME)


def plot_grids(pictures: dict, out: Path) -> list[Path]:
    """Run 0, draw 0: real images and the base's images at every budget, the same noise and labels."""
    datas = list(dict.fromkeys(d for d, *_ in pictures))
    shown = {d: sorted((k for k in pictures if k[0] == d), key=lambda k: (k[1] != "floor", k[2])) for d in datas}
    columns = max(len(v) for v in shown.values())
    fig, axes = plt.subplots(len(datas), columns, figsize=(1.7 * columns, 1.15 * len(datas) + 0.4), squeeze=False)
    for i, d in enumerate(datas):
        for j in range(columns):
            ax = axes[i, j]
            ax.set_axis_off()
            if j < len(shown[d]):
                _, kind, images = shown[d][j]
                ax.imshow(grids.tile(pictures[d, kind, images], None, 5), cmap="gray", vmin=0, vmax=255,
                          interpolation="nearest")
                ax.set_title(f"{d}: real" if kind == "floor" else budget_label(images), fontsize=8)
    fig.suptitle("Run 0: the base's first images at each budget (the same noise and labels)", fontsize=9)
    fig.tight_layout()
    return save(fig, out, f"{NAME}-grids")


def run_groups(p: Mapping[str, Any], jobs: int) -> tuple[pd.DataFrame, dict]:
    """Every group of runs, ``jobs`` at a time: the raw (kind, images, run, draw) rows and run 0's images."""
    groups = by_groups(group_rows, p, jobs)
    return pd.DataFrame([row for rows, _ in groups for row in rows]), {k: v for _, pics in groups for k, v in pics.items()}


def make(params: Mapping[str, Any], out: Path, jobs: int) -> list[Path]:
    """Each data set's part in turn (digits first: its rows are kept before MNIST's start), then the tables and
    figures of all parts."""
    tables, summaries, pictures = [], [], {}
    for p in parts(params):
        raw, shown = run_groups(p, jobs)
        table, summary = part_table(raw, p)
        tables.append(table)
        summaries.append(summary)
        pictures.update({(p["data"], *k): v for k, v in shown.items()})
    table, summary = pd.concat(tables, ignore_index=True), pd.DataFrame(summaries)
    for s in summaries:
        print(f"{s['data']}: plateau FID {s['plateau_fid']:.4g} at {s['plateau_images']} images; within 10% from "
              f"{s['within_images']} ({s['within_fid']:.4g}); floor {s['floor_fid']:.4g}; {s['reading']}; feature "
              f"network accuracy {s['feature_accuracy']:.3f} (test share), {s['reference_accuracy']:.3f} (reference)")
    return [write_table(table, out, NAME), write_table(summary, out, f"{NAME}-plateau"), *plot(table, summary, out),
            *(plot_grids(pictures, out) if pictures else [])]


register(Study(
    name=NAME,
    description="Converged bases: FID, KID, precision and recall of the EDM U-Net base vs training images seen "
                "(a geometric ladder, one training per run), beside the real-data floor, on digits and MNIST",
    scales={
        "ci": dict(data="digits", runs=2, n_real=64, budgets=(64, 128, 256), draws=2, n_eval=64, n_ref=64, grid=10,
                   unet=dict(batch=32, channels=8, steps=4, warmup=64, ema=64, runs_per_pass=2)),
        # sims-images' bases (digits: |D_r| = 500, 16384 images; MNIST 16x16: |D_r| = 1000, 32768 images) with the
        # default U-Net; one training per group of 4 runs. Measured on one of 2 shared cores: 540 (digits) and 190
        # (MNIST) training images/s per run, 94 and 28 sampled images/s per run.
        "cpu": dict(data="digits", runs=4, n_real=500, budgets=tuple(4096 * 2**k for k in range(8)), draws=3,
                    n_eval=500, n_ref=400, grid=10, unet=dict(),
                    more=[dict(data="mnist", n_real=1000, budgets=tuple(4096 * 2**k for k in range(7)), draws=2,
                               n_eval=1000, n_ref=1000)]),
        # the sims-images gpu base's width (32 channels), the paper-scale sets
        "gpu": dict(data="mnist", runs=8, n_real=3000, budgets=tuple(4096 * 2**k for k in range(10)), draws=3,
                    n_eval=1000, n_ref=1000, grid=10, unet=dict(channels=32, device="auto", runs_per_pass=8),
                    more=[dict(data="fashion-mnist", n_real=10000, n_eval=5000, n_ref=5000)]),
    },
    make=make,
))
