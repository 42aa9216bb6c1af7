"""Remedies for MADness side by side (issue 18; SPEC section 4b): one engine, the same seeds, the same metrics.

For each model family (the Gaussian model, the GMM and SPEC E1's toy DDPM), in the fully synthetic, synthetic
augmentation and fresh data loops, every remedy at a few strengths against no remedy, all on the sample path
with one seed (so every arm shares D_r, the fresh draws and G^1, and differences are paired run by run):
- accumulate: keep S^1..S^(t-1) (Gerstgrasser et al. 2024), one row;
- real weight w: the real data's share of the training objective (He, Xu, Cheng 2025); w* = (sqrt(k^2 + 4k) - k) / 2,
  k = n_r / n_s, is the golden-ratio weight of SPEC section 6 (0.618 at n_r = n_s, where no remedy is w = 1/2).
  The fully synthetic loop has no real data to weigh: its cells say so;
- curate oracle s: rejection sampling toward p_r with acceptance (p_r / p_model / M)^s; curate quantile q: keep
  the samples whose log p_r reaches the q-quantile of the candidates (Ferbach et al. 2024; Feng et al. 2024);
- correct tau: Metropolis-adjusted Langevin steps on log p_r for a Langevin time tau (Gillman et al. 2024);
- SIMS omega: negative guidance by a copy fine-tuned on the model's own samples (Alemohammad et al. 2024), and
  autoguidance omega: guidance by a shorter-trained copy (Karras et al. 2024), for the diffusion families (the
  DDPM and the image family), with the family's auxiliary budget (``guide`` in its sizes).

The image family (the EDM U-Net on 8x8 digits, FID in the feature network's space) joins with the remedies that
apply to it: accumulate, SIMS and autoguidance. It takes no sample weights, and curation and correction need
log p_r, which an image set does not have; those cells say so.

A cell a family or loop cannot have is kept in the tables with the reason: no real data to weigh in the fully
synthetic loop; no density for oracle curation where the family has none (the DDPM: "n/a: no density").

Distance: the closed-form W2 between each fitted Gaussian and p_r (gaussian family), exact W2 between
samples and a reference sample (gmm, ddpm). At t = T: the MAD ratio E[d_T] / E[d_1] with its 95% CI, the paired
difference d_T(remedy) - d_T(no remedy) over runs with its 95% CI (madloop.compare), and the cost: the
accepted share of curation's candidates (so 1 / share - 1 extra draws per kept sample) and the correction's
density and score evaluations (2 per Langevin step and sample), and for every arm its training and sampling
time over no remedy's (the runner's own timing, so a ratio on a shared machine, not an exact cost). Writes the
tidy summary ``remedies.csv``, the final numbers ``remedies-final.csv``, the markdown tables ``remedies.md``
(rows remedies, columns loops, the best cell of each column in bold) and a figure per family.

The DDPM's cost is its training (and quantile curation's 1 / (1 - q) x n_s draws: at q = 0.9 sampling costs
about half as much again as training): its cpu scale, 8 runs of E1's sizes for 10 generations, took 16 of the
study's 24 minutes on 2 CPU cores before SIMS and autoguidance joined.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

import madloop
from madloop.registry import MODELS
from madloop.plots import STUDY_LABELS, curve, save
from madloop.studies import Study, register
from madloop.studies.common import LOOP_LABELS, cell, columns_first, sweep, write_table

NAME = "remedies"
LOOPS = ("fully_synthetic", "augmentation", "fresh")
FAMILIES = {
    "gaussian": dict(model="gaussian", data="gaussian", metrics=("true_w2",)),
    "gmm": dict(model="gmm", data="mixture", data_options={"layout": "ring", "k": 8}, model_options={"k": 8},
                metrics=("w2",)),
    "ddpm": dict(model="ddpm", data="gaussian", metrics=("w2",)),
    "digits": dict(model="unet", data="digits", metrics=("fid",)),
}
WITHOUT_P_R = {"digits"}  # families whose data source does not know p_r: no curation or correction
FAMILY_LABELS = {"gaussian": "Gaussian model, 2D Gaussian data", "gmm": "Gaussian mixture (EM, k = 8), ring of 8 Gaussians",
                 "ddpm": "DDPM (SPEC E1's toy MLP), 2D Gaussian data", "digits": "EDM U-Net, 8x8 digits"}
NOTE = ("On images only accumulate, SIMS and autoguidance run: the image family takes no sample weights, and "
        "curation and correction need log p_r, which an image set does not have (they would need a verifier, "
        "such as the feature network's classifier, and a correction for images).")
GUIDED = ("sims", "autoguidance")  # remedies that guide a diffusion model's sampler with an auxiliary copy


def golden_weight(n_real: int, n_synth: int) -> float:
    """w* = (sqrt(k^2 + 4k) - k) / 2 with k = n_real / n_synth (SPEC section 6)."""
    k = n_real / n_synth
    return (np.sqrt(k * k + 4 * k) - k) / 2


def arms(strengths: Mapping[str, Any], n_real: int, n_synth: int) -> list[dict[str, Any]]:
    """The rows of the comparison: label, remedy, strength and the settings that make it."""
    w_star = golden_weight(n_real, n_synth)
    rows = [dict(arm="none", remedy="none", strength=np.nan, settings={}),
            dict(arm="accumulate", remedy="accumulate", strength=np.nan, settings=dict(accumulate=True))]
    for w in strengths["real_weight"]:
        w = w_star if w == "w*" else w
        label = f"real weight w = {w:.3g}" + (" (w*)" if w == w_star else "")
        rows.append(dict(arm=label, remedy="real weight", strength=w, settings=dict(real_weight=float(w))))
    for s in strengths["oracle"]:
        rows.append(dict(arm=f"curate oracle s = {s:g}", remedy="curate oracle", strength=s,
                         settings=dict(curate="oracle", curate_strength=s)))
    for q in strengths["quantile"]:
        rows.append(dict(arm=f"curate quantile q = {q:g}", remedy="curate quantile", strength=q,
                         settings=dict(curate="quantile", curate_strength=q)))
    for tau in strengths["correct"]:
        rows.append(dict(arm=f"correct τ = {tau:g}", remedy="correct", strength=tau,
                         settings=dict(correct=tau, correct_steps=strengths["correct_steps"])))
    for algo, label in zip(GUIDED, ("SIMS", "autoguidance")):
        for omega in strengths.get("guidance", ()):
            rows.append(dict(arm=f"{label} ω = {omega:g}", remedy=algo, strength=omega,
                             settings=dict(algo=algo, omega=omega)))
    return rows


def absent(remedy: str, loop: str, family: str) -> str | None:
    """Why a remedy cannot run in a loop for a family (its cell's text), or None where it can."""
    model = MODELS[FAMILIES[family]["model"]]
    if remedy == "real weight" and loop == "fully_synthetic":
        return "— (no real data to weigh)"
    if remedy == "real weight" and not "weighted" in model.capabilities:
        return "n/a: no sample weights"
    if remedy.startswith("curate") or remedy == "correct":
        if family in WITHOUT_P_R:
            return "n/a: no log p_r"
    if remedy in GUIDED and not "guided" in model.capabilities:
        return "n/a: not a diffusion model"
    if remedy == "curate oracle" and not "density" in model.capabilities:
        return "n/a: no density"
    return None


def final_row(result, none, arm: Mapping[str, Any], metric: str, steps: int) -> dict[str, Any]:
    """One arm's numbers at t = T: distance and MAD ratio with CIs, paired difference to no remedy, cost."""
    summary = result.summary().set_index(["metric", "gen"])
    last = result.config.gens
    d = summary.loc[(metric, last)]
    diff = madloop.compare(none, result, metric).set_index("gen").loc[last]
    accepted = summary.loc[("accepted", last), "mean"] if ("accepted", last) in summary.index else np.nan
    evaluations = 2 * steps if arm["remedy"] == "correct" else 0
    return dict(metric=metric, gen=last, n=int(d["n"]), mean=d["mean"], ci_low=d["ci_low"], ci_high=d["ci_high"],
                mad_ratio=d["mad_ratio"], mad_ratio_low=d["mad_ratio_low"], mad_ratio_high=d["mad_ratio_high"],
                diff=diff["diff"], diff_low=diff["lo"], diff_high=diff["hi"], accepted=accepted,
                extra_draws=1 / accepted - 1 if np.isfinite(accepted) else 0.0, evaluations_per_sample=evaluations,
                compute=result.timing()[0] / max(none.timing()[0], 1e-9))


def run_family(family: str, sizes: Mapping[str, Any], strengths: Mapping[str, Any], loops, jobs: int):
    """The summary of every (loop, arm) point and the final numbers at t = T; a cell that cannot run keeps the
    reason (``absent``) in the final table's ``note`` instead of numbers. ``sizes`` may set the family's own
    ``loops`` and, under ``guide``, the options of its SIMS and autoguidance arms (their auxiliary budgets)."""
    sizes = dict(sizes)
    loops, guide = sizes.pop("loops", loops), sizes.pop("guide", {})
    cells = [(loop, arm, absent(arm["remedy"], loop, family)) for arm in arms(strengths, sizes["n_real"], sizes["n_synth"])
             for loop in loops]
    settings = {**FAMILIES[family], **sizes, "path": "samples"}
    points = [dict(loop=loop, **arm["settings"], **guide.get(arm["remedy"], {})) for loop, arm, note in cells if note is None]
    ran = iter(sweep(points, jobs, **settings).results)
    metric = FAMILIES[family]["metrics"][0]
    tables, finals, none = [], [], {}
    for loop, arm, note in cells:
        tag = dict(family=family, loop=loop, arm=arm["arm"], remedy=arm["remedy"], strength=arm["strength"],
                   n_real=sizes["n_real"], n_synth=sizes["n_synth"])
        if note is not None:
            finals.append({**tag, "metric": metric, "note": note})
            continue
        result = next(ran)
        if arm["remedy"] == "none":  # the first arm: every other one is paired with it
            none[loop] = result
        tables.append(result.summary().assign(**tag))
        finals.append({**tag, **final_row(result, none[loop], arm, metric, strengths["correct_steps"]), "note": ""})
    return pd.concat(tables, ignore_index=True), pd.DataFrame(finals).astype({"n": "Int64", "gen": "Int64"})


def markdown(final: pd.DataFrame, family: str, floor: float = np.nan) -> str:
    """A family's tables: the MAD ratio at T (best of each column in bold), the distance itself at T beside
    the real-data ``floor`` (generation 0), the paired difference to no remedy, and the cost."""
    rows = final[final.family == family]
    rows = rows.assign(note=rows["note"].fillna("") if "note" in rows else "")  # a CSV read back holds NaN notes
    loops = [loop for loop in LOOPS if loop in set(rows.loop)]
    arms_ = list(dict.fromkeys(rows.arm))
    first = rows.dropna(subset=["n"]).iloc[0]
    metric = STUDY_LABELS.get(first.metric, first.metric).replace("$", "")
    head = "| remedy | " + " | ".join(LOOP_LABELS[loop] for loop in loops) + " |\n|---|" + "---|" * len(loops) + "\n"

    def table(fmt) -> str:
        lines = []
        for arm in arms_:
            cells = []
            for loop in loops:
                hit = rows[(rows.arm == arm) & (rows.loop == loop)]
                if len(hit) and not hit.iloc[0].note:
                    cells.append(fmt(hit.iloc[0], loop))
                else:
                    remedy = rows[rows.arm == arm].remedy.iloc[0]
                    cells.append(absent(remedy, loop, family) or "—")
            lines.append(f"| {arm} | " + " | ".join(cells) + " |")
        return head + "\n".join(lines) + "\n"

    best = {loop: rows[rows.loop == loop].mad_ratio.min() for loop in loops}
    ratio = table(lambda r, loop: cell(r.mad_ratio, r.mad_ratio_low, r.mad_ratio_high, r.mad_ratio == best[loop]))
    diff = table(lambda r, loop: "0 (the reference)" if r.remedy == "none" else cell(r["diff"], r.diff_low, r.diff_high))
    level = table(lambda r, loop: cell(r["mean"], r.ci_low, r.ci_high))
    floor_text = (f"the real-data floor (generation 0: real against real) is {floor:.3g}" if np.isfinite(floor) else
                  "the distance is in closed form to p_r itself, so its floor is 0")

    def cost(r, loop) -> str:
        if r.remedy.startswith("curate"):
            return f"{r.accepted:.0%} accepted: {1 + r.extra_draws:.2g} draws per kept sample"
        if r.remedy == "correct":
            return f"{r.evaluations_per_sample:g} evaluations of log p_r and its score per sample"
        if r.remedy == "accumulate":
            return "training set grows by n_s per generation"
        if r.remedy == "sims":
            return "fine-tunes a copy on its own samples each generation; 2 network passes per sampler step"
        if r.remedy == "autoguidance":
            return "trains a short copy each generation; 2 network passes per sampler step"
        return "none"

    def cost_and_time(r, loop) -> str:
        if r.remedy == "none":
            return "none (time: 1x)"
        compute = r.get("compute", np.nan)
        return cost(r, loop) + (f" (time: {compute:.2g}x)" if np.isfinite(compute) else "")

    return (f"## {FAMILY_LABELS[family]}\n\n"
            f"n_r = {first.n_real}, n_s = {first.n_synth}, T = {first.gen}, {first.n} runs, one seed (paired runs); "
            f"distance: {metric}.\n\n"
            f"MAD ratio r_T = E[d_T] / E[d_1] (95% CI; each arm over its own generation 1, which guidance changes "
            f"too); lowest of each column in bold:\n\n{ratio}\n"
            f"E[d_T] (95% CI); {floor_text}:\n\n{level}\n"
            f"d_T(remedy) - d_T(no remedy), paired over runs (95% CI; below 0: the remedy helps):\n\n{diff}\n"
            f"Cost at t = T (time: training and sampling seconds over no remedy's, on a shared machine):\n\n{table(cost_and_time)}\n")


def floors(table: pd.DataFrame, final: pd.DataFrame) -> dict[str, float]:
    """Per family: the real-data floor of its distance (generation 0's mean; the same for every arm and loop)."""
    out = {}
    for family, rows in final.dropna(subset=["n"]).groupby("family", sort=False):
        zero = table[(table.family == family) & (table.metric == rows.metric.iloc[0]) & (table.gen == 0)]
        out[family] = float(zero["mean"].iloc[0]) if len(zero) else np.nan
    return out


def write_markdown(final: pd.DataFrame, out: Path, table: pd.DataFrame | None = None) -> Path:
    """The markdown tables of every family; ``table`` (the summary) gives each distance's real-data floor."""
    floor = floors(table, final) if table is not None else {}
    text = "# Remedies for MADness side by side\n\n" + "\n".join(
        markdown(final, family, floor.get(family, np.nan)) for family in dict.fromkeys(final.family)) + f"\n{NOTE}\n"
    path = out / f"{NAME}.md"
    path.write_text(text)
    return path


COLORS = [f"C{i}" for i in range(10)] + ["black", "saddlebrown", "darkkhaki", "navy"]  # an arm's color: one each


def plot(table: pd.DataFrame, final: pd.DataFrame, family: str, out: Path) -> list[Path]:
    """Columns: the loops. Top: MAD ratio vs generation, one line per arm; bottom: the paired difference to no
    remedy at t = T with its 95% CI, one bar per arm."""
    table, final = table[table.family == family], final[final.family == family]
    loops = [loop for loop in LOOPS if loop in set(table.loop)]
    arms_ = list(dict.fromkeys(final.arm))
    colors = {arm: COLORS[i % len(COLORS)] for i, arm in enumerate(arms_)}
    metric = final.metric.iloc[0]
    fig, axes = plt.subplots(2, len(loops), figsize=(4.8 * len(loops), 8.0), squeeze=False)
    for j, loop in enumerate(loops):
        top, bottom = axes[0, j], axes[1, j]
        for arm in arms_:
            rows = table[(table.loop == loop) & (table.arm == arm) & (table.metric == metric)]
            if len(rows):
                curve(top, rows, colors[arm], arm, value="mad_ratio")
        top.axhline(1.0, color="0.5", linewidth=0.8)
        top.set_title(LOOP_LABELS[loop], fontsize=10)
        top.set_xlabel("generation t")
        top.xaxis.set_major_locator(MaxNLocator(integer=True))
        top.grid(alpha=0.3)
        rows = final[final.loop == loop].set_index("arm").reindex(arms_)
        y = np.arange(len(arms_))[::-1]
        ok = rows["diff"].notna().to_numpy()
        bottom.errorbar(rows["diff"][ok], y[ok], xerr=[(rows["diff"] - rows.diff_low)[ok], (rows.diff_high - rows["diff"])[ok]],
                        fmt="none", ecolor="0.3", capsize=3)
        bottom.scatter(rows["diff"][ok], y[ok], c=[colors[a] for a, k in zip(arms_, ok) if k], zorder=3)
        for yi, note in zip(y, rows["note"].fillna("")):
            if note:
                bottom.annotate(note, (0.02, yi), xycoords=("axes fraction", "data"), va="center", fontsize=8, color="0.4")
        bottom.axvline(0.0, color="0.5", linewidth=0.8)
        bottom.set_yticks(y, arms_ if j == 0 else [""] * len(arms_))
        bottom.set_xlabel("d_T(remedy) − d_T(none), paired (95% CI)")
        bottom.grid(alpha=0.3)
    axes[0, 0].set_ylabel("MAD ratio  E[d_t] / E[d_1] (95% CI)")
    first = final.dropna(subset=["n"]).iloc[0]
    fig.suptitle(f"{FAMILY_LABELS[family]}: {STUDY_LABELS.get(metric, metric)}; n_r = {first.n_real}, "
                 f"n_s = {first.n_synth}, {int(first.n)} runs, same seeds", fontsize=11)
    handles, labels = max((ax.get_legend_handles_labels() for ax in axes[0]), key=lambda hl: len(hl[1]))
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.96), ncol=-(-len(labels) // 2), frameon=False,
               fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.915))
    return save(fig, out, f"{NAME}-{family}")


def make(params: Mapping[str, Any], out: Path, jobs: int) -> list[Path]:
    tables, finals = [], []
    for family, sizes in params["families"].items():
        table, final = run_family(family, sizes, params["strengths"], params["loops"], jobs)
        tables.append(table)
        finals.append(final)
    keys = ["family", "loop", "arm", "remedy", "strength", "n_real", "n_synth"]
    table = columns_first(pd.concat(tables, ignore_index=True), keys)
    final = columns_first(pd.concat(finals, ignore_index=True), keys)
    paths = [write_table(table, out, NAME), write_table(final, out, f"{NAME}-final"), write_markdown(final, out, table)]
    for family in dict.fromkeys(table.family):
        paths += plot(table, final, family, out)
    return paths


STRENGTHS = dict(real_weight=("w*", 0.9), oracle=(0.5, 1.0), quantile=(0.5, 0.9), correct=(0.5, 2.0), correct_steps=10,
                 guidance=(0.5,))  # E1 and sims-images: guidance helps these networks, if at all, at omega <= 1
register(Study(
    name=NAME,
    description="Remedies side by side (accumulate, real-data weighting, curation, self-correction, SIMS, "
                "autoguidance) in the fully synthetic, augmentation and fresh loops: MAD ratio and paired difference at T, with the cost",
    scales={
        "ci": dict(loops=LOOPS, strengths=dict(real_weight=("w*",), oracle=(1.0,), quantile=(0.5,), correct=(1.0,),
                                               correct_steps=3, guidance=(0.5,)), families={
            "gaussian": dict(runs=6, n_real=20, n_synth=20, gens=3),
            "gmm": dict(runs=3, n_real=40, n_synth=40, n_eval=40, n_ref=40, gens=2, iters=3),
            "ddpm": dict(runs=2, n_real=30, n_synth=30, n_eval=30, n_ref=30, gens=2, epochs=1,
                         guide=dict(sims=dict(n_aux=30, aux_epochs=1), autoguidance=dict(aux_epochs=1))),
            "digits": dict(loops=("augmentation",), runs=2, n_real=64, n_synth=64, n_eval=64, n_ref=64, gens=2, images=256,
                           batch=32, channels=8, steps=4, warmup=64, ema=64, runs_per_pass=2,
                           guide=dict(sims=dict(n_aux=64, aux_images=64), autoguidance=dict(aux_images=64)))}),
        "cpu": dict(loops=LOOPS, strengths=STRENGTHS, families={
            "gaussian": dict(runs=1000, n_real=100, n_synth=100, gens=50, every=5),
            "gmm": dict(runs=50, n_real=250, n_synth=250, n_eval=500, n_ref=500, gens=30, every=5),
            "ddpm": dict(runs=8, n_real=1000, n_synth=1000, n_eval=1000, n_ref=1000, gens=10,
                         guide=dict(sims=dict(n_aux=2000, aux_epochs=50))),  # E1: the paper's SIMS
            # sims-loop-images' sizes and its best SIMS cell (omega 0.5, B = 2048 images), 6 runs, 3 generations
            "digits": dict(runs=6, n_real=500, n_synth=500, n_eval=500, n_ref=400, gens=3, images=8192,
                           guide=dict(sims=dict(n_aux=500, aux_images=2048), autoguidance=dict(aux_images=2048)))}),
        "gpu": dict(loops=LOOPS, strengths=STRENGTHS, families={
            "gaussian": dict(runs=10000, n_real=100, n_synth=100, gens=100, every=5),
            "gmm": dict(runs=100, n_real=1000, n_synth=1000, n_eval=1000, n_ref=1000, gens=50, every=5),
            "ddpm": dict(runs=50, n_real=1000, n_synth=1000, n_eval=1000, n_ref=1000, gens=50, every=2, device="auto",
                         guide=dict(sims=dict(n_aux=2000, aux_epochs=50))),  # E1: the paper's SIMS
            "digits": dict(runs=16, n_real=500, n_synth=500, n_eval=500, n_ref=400, gens=10, images=32768, device="auto",
                           guide=dict(sims=dict(n_aux=500, aux_images=8192), autoguidance=dict(aux_images=8192)))}),
    },
    make=make,
))
