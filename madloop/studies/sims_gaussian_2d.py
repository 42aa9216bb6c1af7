"""E1 (SPEC section 4): SIMS on 2D Gaussian data in the synthetic augmentation loop.

p_r = N([0, 0], [[2, 1], [1, 2]]), |D_r| = 1000; each generation trains SPEC E1's toy DDPM from scratch
for 100 epochs on D^t; SIMS fine-tunes a copy for 50 epochs on n_aux = 2000 of its own samples and
samples with (1 + omega) eps_base - omega eps_aux. Distance: exact W2 (``w2``: POT's emd2, as the paper)
between 1000 generated points and 1000 reference points of p_r; the floor is the same W2 for a real
sample of 1000 points. A Gaussian fit (``gauss_w2``) would not see the heavy tails of a blow-up.

Parts of one tidy table (column ``part``):
- ``self-improvement``: E[W2(G^1)] vs omega (generation 1 only);
- ``loops``: the augmentation loop for every omega in ``loop_omegas`` and |S| in ``sizes``: r_t vs t
  (prevention) and the paper's convergence ratio: mean of E[W2_t] over the ``window`` (start, end) of
  generations, over the arm's own E[W2(G^1)];
- ``versus-standard``: each loop arm against the standard arm (omega = 0) of its |S|, run by run. Runs of
  one seed share D_r and the generation-1 base, so an arm's own generation 1 is not a fair denominator
  (omega = 3 starts from a poor one, and looks like prevention). Per generation and for the window
  (``late``): E[W2] of the arm with its t interval (absolute), E[W2_arm] / E[W2_standard(G^1)] with its
  bootstrap interval (``vs_first``), and the paired difference arm - standard with its t interval
  (``diff``, from ``madloop.compare``);
- ``configs``: generation-1 W2 of the standard DDPM under the batch size, standardised data, a
  sinusoidal time embedding and bf16, to show how much of the gap to the floor each one closes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from madloop.measure import sums
from madloop.results import Result, compare, mean_ci, ratio_interval, window_gens
from madloop.studies import Study, register
from madloop.plots import curves, save
from madloop.studies.common import sweep, write_table

NAME = "sims-gaussian-2d"
METRIC = "w2"
BASE = dict(loop="augmentation", algo="sims", model="ddpm", data="gaussian", n_real=1000, n_eval=1000, n_ref=1000,
            metrics=(METRIC,))


def run_part(part: str, points: list[dict[str, Any]], common: Mapping[str, Any], jobs: int,
             window: tuple[int, int] | None = None) -> tuple[pd.DataFrame, list[Result]]:
    """Each point on top of BASE and ``common``: its summary (with convergence ratios over ``window``) with the
    point as columns, and the Results."""
    settings = [{k: v for k, v in p.items() if k != "config"} for p in points]  # config: a label
    results = sweep(settings, jobs, **{**BASE, **common}).results
    table = pd.concat([with_convergence(r, window).assign(part=part, **p) for r, p in zip(results, points)],
                      ignore_index=True)
    return table, results


def with_convergence(result: Result, window: tuple[int, int] | None) -> pd.DataFrame:
    """The summary of a run with each metric's convergence ratio over ``window`` and its 95% interval as columns."""
    ratios = pd.DataFrame([dict(metric=m, convergence_ratio=r, convergence_ratio_low=lo, convergence_ratio_high=hi)
                           for m in result.config.metrics for r, lo, hi in [result.convergence_ratio(m, window)]])
    return result.summary().merge(ratios, on="metric", how="left")


def versus_standard(points: list[dict[str, Any]], results: list[Result], window: tuple[int, int]) -> pd.DataFrame:
    """Every loop arm against the standard arm (omega = 0) of its |S|, run by run (see the module's docstring)."""
    arms = {(p["n_synth"], p["omega"]): r for p, r in zip(points, results)}
    rows = []
    for (size, omega), arm in arms.items():
        if (size, 0.0) not in arms:
            raise ValueError(f"the loops at |S| = {size} need the standard arm (omega = 0) to compare with")
        standard = arms[size, 0.0]
        first, values = standard.per_run(METRIC)[1].to_numpy(), arm.per_run(METRIC)
        for d in compare(standard, arm, METRIC, window).itertuples():
            gens = window_gens(values.columns, window) if d.late else [d.gen]
            v = values[gens].mean(axis=1, skipna=False).to_numpy()  # each run's mean over the generations
            mean, sem, half = mean_ci(sums(v, None))
            r, lo, hi = ratio_interval(v, first)
            rows.append(dict(part="versus-standard", metric=METRIC, n_synth=size, omega=omega, gen=d.gen, late=d.late,
                             n=d.n, mean=mean, sem=sem, ci_low=mean - half, ci_high=mean + half, vs_first=r,
                             vs_first_low=lo, vs_first_high=hi, diff=d.diff, diff_low=d.lo, diff_high=d.hi))
    return pd.DataFrame(rows)


def configurations(batch: int) -> list[dict[str, Any]]:
    """The default DDPM and one change at a time, then all the fixes together."""
    return [dict(config="default (committed figures)"), dict(config=f"batch {batch}", batch=batch),
            dict(config="standardised data", standardize=True), dict(config="sinusoidal time", time_embedding="sinusoidal"),
            dict(config="all three", batch=batch, standardize=True, time_embedding="sinusoidal"),
            dict(config="bf16", dtype="bfloat16")]


def make(p: Mapping[str, Any], out: Path, jobs: int) -> list[Path]:
    standard = dict(runs=p["runs"], epochs=p["epochs"], seed=0, **p.get("extra", {}))
    sims = dict(standard, aux_epochs=p["aux_epochs"], n_aux=p["n_aux"])
    configs = [dict(algo="standard", gens=1, n_synth=1000, **c) for c in configurations(p["batch"])]
    loops = [dict(omega=w, n_synth=s, gens=p["gens"]) for s in p["sizes"] for w in p["loop_omegas"]]
    window = tuple(p["window"])
    if window[1] > p["gens"]:
        raise ValueError(f"the convergence window {window} ends after the last generation ({p['gens']})")
    loop_table, loop_results = run_part("loops", loops, sims, jobs, window)
    table = pd.concat([
        run_part("self-improvement", [dict(omega=w, gens=1, n_synth=1000) for w in p["gen1_omegas"]], sims, jobs)[0],
        run_part("configs", configs, standard, jobs)[0],
        loop_table,
        versus_standard(loops, loop_results, window),
    ], ignore_index=True)
    paths = [write_table(table, out, NAME)]
    paths += plot_self_improvement(table, p, out) + plot_prevention(table, p, out) + plot_convergence(table, p, out)
    paths += plot_versus_standard(table, p, out) + plot_configs(table, p, out)
    return paths


def _note(p: Mapping[str, Any], floor: bool = True) -> str:
    return (f"{p['runs']} runs, DDPM {p['epochs']} epochs, aux {p['aux_epochs']} epochs on n_aux = {p['n_aux']}; "
            + ("bands: 95% CI; dotted: real-data floor" if floor else "bars: 95% CI"))


def plot_self_improvement(table: pd.DataFrame, p, out: Path) -> list[Path]:
    rows = table[(table.part == "self-improvement") & (table.gen == 1)].sort_values("omega")
    floor = table[(table.part == "self-improvement") & (table.gen == 0)]["mean"].mean()
    fig, ax = plt.subplots(figsize=(5.6, 4))
    ax.plot(rows.omega, rows["mean"], marker="o", color="C0", label="SIMS, generation 1")
    # Few runs give Student-t bands that reach below zero: the log axis shows them down to the floor.
    ax.fill_between(rows.omega, rows.ci_low.clip(lower=floor / 2), rows.ci_high, color="C0", alpha=0.25, linewidth=0)
    ax.axhline(floor, color="0.3", linestyle=":", label="floor: W2 of a real sample of the same size")
    ax.set_yscale("log")
    ax.set_xlabel("guidance strength ω (ω = 0: the base DDPM)")
    ax.set_ylabel("E[W2(G^1, p_r)]")
    ax.set_title(f"Self-improvement on 2D Gaussian data\n{_note(p)}", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return save(fig, out, f"{NAME}-self-improvement")


def plot_prevention(table: pd.DataFrame, p, out: Path) -> list[Path]:
    size = max(p["sizes"])
    rows = table[(table.part == "loops") & (table.n_synth == size)]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    curves(axes[0], rows, "omega", label=lambda w: f"ω = {w:g}")
    curves(axes[1], rows, "omega", label=lambda w: f"ω = {w:g}", value="mad_ratio")
    axes[0].set_ylabel("E[W2(G^t, p_r)]")
    axes[1].set_ylabel("MAD ratio r_t = E[W2_t] / E[W2_1]")
    axes[1].axhline(1.0, color="0.5", linewidth=0.8)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Augmentation loop, |D_r| = 1000, |S^t| = {size}: does SIMS prevent MAD?\n{_note(p)}", fontsize=9)
    fig.tight_layout()
    return save(fig, out, f"{NAME}-prevention")


def plot_convergence(table: pd.DataFrame, p, out: Path) -> list[Path]:
    rows = table[(table.part == "loops") & (table.gen == 1)]
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for i, (size, df) in enumerate(rows.groupby("n_synth")):
        df = df.sort_values("omega")
        yerr = [df.convergence_ratio - df.convergence_ratio_low, df.convergence_ratio_high - df.convergence_ratio]
        ax.errorbar(df.omega + 0.03 * (i - 1.5), df.convergence_ratio, yerr=yerr, marker="o", capsize=3, color=f"C{i}",
                    label=f"|S^t| = {size}")
    ax.axhline(1.0, color="0.5", linewidth=0.8)
    ax.set_xlabel("guidance strength ω")
    ax.set_ylabel(f"convergence ratio (the paper's)\nmean of E[W2_t] over t in [{p['window'][0]}, {p['window'][1]}]"
                  " / the arm's own E[W2_1]")
    ax.set_title(f"Augmentation loop: prevention (<= 1) vs ω and |S^t|\n{_note(p, floor=False)}", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return save(fig, out, f"{NAME}-convergence")


def plot_versus_standard(table: pd.DataFrame, p, out: Path) -> list[Path]:
    """Per |S|: the window's E[W2] of each arm against the standard arm's generation 1 (absolute), and the paired
    difference arm - standard over the window; both with 95% CIs. Below 0 on the right: the arm beats standard."""
    rows = table[(table.part == "versus-standard") & table.late.eq(True)]
    first = table[(table.part == "versus-standard") & (table.omega == 0.0) & (table.gen == 1) & table.late.eq(False)]
    floor = table[(table.part == "loops") & (table.gen == 0)]["mean"].mean()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for i, (size, df) in enumerate(rows.groupby("n_synth")):
        df, x = df.sort_values("omega"), df.sort_values("omega").omega + 0.02 * i
        # Few runs give Student-t bars that reach below zero: the log axis shows them down to half the floor.
        low = df.ci_low.clip(lower=floor / 2)
        left.errorbar(x, df["mean"], yerr=[df["mean"] - low, df.ci_high - df["mean"]], marker="o", capsize=3,
                      color=f"C{i}", label=f"|S^t| = {size}")
        left.axhline(float(first.loc[first.n_synth == size, "mean"].iloc[0]), color=f"C{i}", linestyle="--", linewidth=0.8)
        right.errorbar(x, df["diff"], yerr=[df["diff"] - df.diff_low, df.diff_high - df["diff"]], marker="o", capsize=3,
                       color=f"C{i}", label=f"|S^t| = {size}")
    left.axhline(floor, color="0.3", linestyle=":", label="floor: W2 of a real sample")
    left.set(yscale="log", xlabel="guidance strength ω",
             ylabel=f"E[W2] over t in [{p['window'][0]}, {p['window'][1]}]\n(dashed: standard arm's generation 1)")
    right.axhline(0.0, color="0.5", linewidth=0.8)
    right.set(xlabel="guidance strength ω", ylabel="paired difference ω-arm − standard (ω = 0)\nof the window's W2")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Augmentation loop: each arm against standard training, run by run (same D_r, same G^1)\n"
                 f"{_note(p, floor=False)}", fontsize=9)
    fig.tight_layout()
    return save(fig, out, f"{NAME}-versus-standard")


def plot_configs(table: pd.DataFrame, p, out: Path) -> list[Path]:
    rows = table[(table.part == "configs") & (table.gen == 1)]
    floor = table[(table.part == "configs") & (table.gen == 0)]["mean"].mean()
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    y = np.arange(len(rows))
    ax.barh(y, rows["mean"], xerr=rows["mean"] - rows.ci_low, color="C0", alpha=0.7, capsize=3)
    ax.axvline(floor, color="0.3", linestyle=":", label="floor: W2 of a real sample")
    ax.set_yticks(y, rows.config)
    ax.invert_yaxis()
    ax.set_xlabel("E[W2(G^1, p_r)] of the standard DDPM (95% CI)")
    ax.set_title(f"Generation-1 fit of SPEC E1's DDPM under each change\n{_note(p)}", fontsize=9)
    ax.legend(fontsize=8)
    return save(fig, out, f"{NAME}-configs")


OMEGAS = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0)  # 0.25-1: the range where guidance may help this network
register(Study(
    name=NAME,
    description="E1: SIMS vs standard training of SPEC E1's DDPM in the 2D augmentation loop (omega, |S|)",
    scales={
        "ci": dict(runs=2, gens=3, window=(2, 3), epochs=2, aux_epochs=1, n_aux=100, batch=1000,
                   gen1_omegas=(0.0, 1.0), loop_omegas=(0.0, 1.0), sizes=(125,)),
        # About 1.75 h on 2 otherwise idle cores: 2 x 7 loops x 60 generations of 8 runs at 7-9 s each (timed: 8.7 s a
        # generation at |S| = 1000, omega = 1); the window spans 41 generations. Both network configurations: twice.
        "cpu": dict(runs=8, gens=60, window=(20, 60), epochs=100, aux_epochs=50, n_aux=2000, batch=1000,
                    gen1_omegas=OMEGAS, loop_omegas=OMEGAS, sizes=(250, 1000)),
        "gpu": dict(runs=1000, gens=100, window=(20, 100), epochs=100, aux_epochs=50, n_aux=2000, batch=1000,
                    gen1_omegas=tuple(np.round(np.arange(0, 5.01, 0.25), 2)), loop_omegas=(*OMEGAS, 4.0, 5.0),
                    sizes=(125, 250, 500, 1000), extra=dict(device="cuda")),
    },
    make=make,
))
