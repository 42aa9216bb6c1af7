"""E4 and E6 on images (SPEC section 4; issues 16 and 28): does SIMS lower the FID of an EDM U-Net below its own
base, and below the baselines a reviewer asks for first? Does guidance away from a curated S move the class mix?

One ``madloop.evaluate`` per data set (each run: its own D_r, base U-Net, auxiliary models, noise): the base
trains on D_r once; every kind below is a sampler of it, at each budget B (images seen) and omega:
- ``sims``: (1 + omega) D_base - omega D_aux, the base fine-tuned on n_aux of its own samples S (omega = -1: the
  auxiliary model alone);
- ``decoder``: the same fine-tune of the decoder half only (the shared encoder runs once for both models);
- ``real``: the real-data control, the base fine-tuned on n_aux images of D_r for the same B;
- ``autoguidance``, ``auto-half``: Karras et al.'s bad model, trained from scratch on D_r for B images on the
  base's schedule shrunk to B (its own warm-up and EMA), of the base's width or half of it;
- ``continued``: the base trained B more images on D_r (the compute SIMS spends, spent on plain training);
- ``cfg``: classifier-free guidance of weight w = omega on the base (lam = 1 / (1 + w)), no auxiliary model;
- ``shift`` (E6): the base fine-tuned on S curated to the complement of a target class mix.

Evidence: every sampler draws ``draws`` sets of n_eval images per run from the same noise and labels (paired
draws); FID (and KID, precision, recall where asked) per run and draw in the data set's own classifier's feature
space against n_ref held-out real images. The table holds, per (kind, B, omega): the mean with its 95% Student-t
CI over runs, the paired difference to the base with its CI, the base's draw-to-draw spread, beside the real-data
floor. ``sims-images-versus.csv`` pairs SIMS with each baseline (same B and omega; continued training of the
same B; CFG of w = omega), run and draw; ``sims-images-raw.csv`` keeps every value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, NamedTuple

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import madloop
from madloop import features, grids
from madloop.images import pools
from madloop.metrics.image import frechet_distance
from madloop.models.unet import UNet
from madloop.plots import save
from madloop.results import mean_ci
from madloop.rng import Role, RunRNG, Streams
from madloop.samples import Samples
from madloop.studies import Study, register
from madloop.studies.common import columns_first, evaluated, write_table

NAME = "sims-images"
SEED = 0
KINDS = {
    "sims": "SIMS (copy fine-tuned on its own samples S)",
    "decoder": "SIMS, decoder-only fine-tune (shared encoder)",
    "real": "real-data control (copy fine-tuned on D_r)",
    "autoguidance": "autoguidance (copy trained from scratch for B)",
    "auto-half": "autoguidance, half-width bad model (Karras et al.)",
    "continued": "base trained B more images on D_r (compute-matched)",
    "cfg": "classifier-free guidance on the base, w = omega",
    "shift": "E6: copy fine-tuned on S curated to 30/70",
}
TARGET = (0.7, 0.3)  # E6: the target share of classes 0-4 and 5-9; S is curated to its complement
COLORS = {"sims": "C3", "decoder": "C1", "real": "C0", "autoguidance": "C2", "auto-half": "C5", "continued": "C7",
          "cfg": "C9", "shift": "C4"}
# The bases' training budgets (images seen per run), from images-convergence's cpu run: digits reach FID 0.157 at
# 131072 images, within 10% of the ladder's best (0.154 at 524288; floor 0.083); 32768 is 14% above. MNIST has not
# flattened by 262144 images (0.213; 131072: 0.279, 31% above): its plateau needs a longer ladder first.
BASE_IMAGES = {"digits": 131072, "mnist": 131072}
GUIDED = ("sims", "decoder", "real", "autoguidance", "auto-half")  # kinds with an auxiliary model at every (B, omega)


def low_group(labels: np.ndarray, classes: int) -> np.ndarray:
    """1 for the upper half of the classes (5-9 of 10), 0 for the lower half."""
    return (labels >= classes // 2).astype(int)


def measure(x: np.ndarray, net, psi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per run: FID against reference features psi, and the share of classes 0-4 among images x (runs, n, ...)."""
    phi, labels = net.forward(x.reshape(-1, *x.shape[2:]))
    phi, labels = phi.reshape(*x.shape[:2], -1), labels.reshape(x.shape[:2])
    return frechet_distance(phi, psi), 1 - low_group(labels, 10).mean(1)


class Setting(NamedTuple):
    """What an image SIMS study sets up for a group of runs before training anything."""
    src: Any  # the data source (madloop.DATA)
    net: Any  # its feature network (madloop.features)
    psi: Any  # the reference images' features, shared by every run
    streams: Streams  # the group's random streams
    real: Samples  # each run's D_r
    spec: UNet  # the U-Net every model of the group uses


def setting(p: Mapping[str, Any], runs: range) -> Setting:
    """The data source, feature network, reference features, streams, D_r and U-Net of one group of runs
    (sims-images and sims-pollution share them, so the same params give both studies the same D_r)."""
    src = madloop.DATA[p["data"]]()
    net = features.network(src)
    psi = net.embed(src.reference(p["n_ref"], RunRNG(SEED, range(0, 1), 0, Role.REFERENCE)).x[0])
    streams = Streams(SEED, runs, p["runs"])
    return Setting(src, net, psi, streams, src.sample(p["n_real"], streams.at(0, Role.REAL)), UNet(**p["unet"]))


# Each kind as a sampler of madloop.evaluate: an algorithm and its options (omega and B set per cell).
SAMPLERS = {
    "sims": {"algo": "sims"},
    "decoder": {"algo": "sims", "aux_decoder_only": True},
    "real": {"algo": "sims", "aux_data": "real"},
    "autoguidance": {"algo": "autoguidance"},
    "auto-half": {"algo": "autoguidance", "aux_width": 0.5},
    "continued": {"algo": "continued"},  # one per budget: no omega
    "cfg": {},  # one per omega > 0 (lam = 1 / (1 + omega)): no budget
    "shift": {"algo": "sims", "aux_proportions": TARGET[::-1]},  # S curated to the complement of the target
}


def samplers(p: Mapping[str, Any]) -> dict[str, tuple[dict, tuple]]:
    """name -> (the sampler's settings, its (kind, B, omega)): the base, then every kind of ``p["kinds"]`` (default:
    all) at every budget and omega. Keyed streams make each kind's values the same whichever other kinds run."""
    kinds = p.get("kinds", tuple(k for k in KINDS if k in GUIDED or k == "shift"))
    out = {"base": ({}, ("base", 0, 0.0))}
    if "cfg" in kinds:
        for omega in (w for w in p["omegas"] if w > 0):
            out[f"cfg omega={omega:g}"] = ({"lam": 1 / (1 + omega)}, ("cfg", 0, omega))
    for b in p["budgets"]:
        if "continued" in kinds:
            out[f"continued B={b}"] = ({**SAMPLERS["continued"], "aux_images": b}, ("continued", b, 0.0))
        for kind in (k for k in KINDS if k in kinds and k not in ("cfg", "continued")):
            sized = {} if kind in ("autoguidance", "auto-half") else {"n_aux": p["n_aux"]}
            for omega in p["omegas"]:
                out[f"{kind} B={b} omega={omega:g}"] = ({**SAMPLERS[kind], **sized, "aux_images": b, "omega": omega},
                                                        (kind, b, omega))
    return out


def run_groups(p: Mapping[str, Any], jobs: int) -> tuple[pd.DataFrame, dict]:
    """madloop.evaluate of every sampler (``samplers``) on the part's runs, ``jobs`` groups of runs at a time: the
    raw (kind, B, omega, run, draw) rows with FID and the share of classes 0-4, and run 0's grid images of draw 0.
    Inside a study's work folder (``--work``) the evaluation is kept there and continues where it stopped."""
    cells = samplers(p)
    settings = dict(data=p["data"], runs=p["runs"], n_real=p["n_real"], n_eval=p["n_eval"], n_ref=p["n_ref"],
                    seed=SEED, model="unet", model_options=p["unet"], metrics=("fid", "classes", *p.get("metrics", ())))
    with evaluated({name: given for name, (given, _) in cells.items()}, jobs, draws=p["draws"], keep=p["grid"],
                   **settings) as ev:
        table, kept = ev.table, ev.samples()
    cells = {"floor": ("floor", 0, 0.0), **{name: cell for name, (_, cell) in cells.items()}}
    wide = table.pivot_table(index=["sampler", "run", "draw"], columns="metric", values="value", dropna=False)
    low = [f"classes_{k}" for k in range(sum(m.startswith("classes_") for m in wide.columns) // 2)]
    more = [m for m in ("kid", "precision", "recall") if m in wide.columns]
    raw = pd.DataFrame([dict(zip(("kind", "budget", "omega"), cells[name]), run=run, draw=draw, fid=row.fid,
                             share_low=row[low].sum(), **row[more]) for (name, run, draw), row in wide.iterrows()])
    # The rows in the order the study always wrote them: by group of runs, draw, sampler, run.
    group = p["unet"].get("runs_per_pass", 4) or p["runs"]
    order = {name: i for i, name in enumerate(cells)}
    raw["_key"] = [(run // group, draw, order[name], run) for (name, run, draw) in wide.index]
    raw = raw.sort_values("_key", kind="stable").drop(columns="_key").reset_index(drop=True)
    return raw, {cells[name]: x for name, x in kept.items()}


METRICS = {"fid": "fid", "share_low": "share of classes 0-4", "kid": "kid", "precision": "precision", "recall": "recall"}


def interval(values: pd.Series) -> tuple[float, float, float]:
    """Mean and 95% Student-t interval over runs."""
    mean, _, half = mean_ci(dict(n=values.size, s1=values.sum(), s2=(values**2).sum()))
    return mean, mean - half, mean + half


def run_differences(a: pd.Series, b: pd.Series, by: tuple[str, ...] = ()) -> pd.Series:
    """Per run (within each ``by`` group), the mean over draws of a - b, the two indexed alike by (*by, run,
    draw): the same noise and labels."""
    return (a - b.reindex(a.index)).dropna().groupby([*by, "run"], sort=False).mean()


def paired(raw: pd.DataFrame, keys=("kind", "budget", "omega"), metrics=tuple(METRICS), base: str = "kind == 'base'",
           gen: int = 1) -> pd.DataFrame:
    """Per ``keys`` and metric: the mean over runs of each run's mean over draws with its 95% Student-t CI over
    runs, and the paired difference to the rows selected by the query ``base`` (per run, the mean over draws of
    the value minus the base's value on the same draw) with its CI; ``draw_sd``: the base's spread between
    draws (what an unpaired comparison would have to beat)."""
    reference = raw.query(base).set_index(["run", "draw"])
    rows = []
    for key, g in raw.groupby(list(keys), sort=False):
        g = g.set_index(["run", "draw"])
        for metric in (m for m in metrics if m in g):
            per_run = g[metric].groupby("run").mean().dropna()
            diff = run_differences(g[metric], reference[metric])
            mean, lo, hi = interval(per_run)
            d, d_lo, d_hi = interval(diff)
            rows.append(dict(zip(keys, key), gen=gen, metric=metric, n=per_run.size,
                             draws=g.reset_index().draw.nunique(), mean=mean, ci_low=lo, ci_high=hi, diff=d,
                             diff_lo=d_lo, diff_hi=d_hi,
                             base_draw_sd=reference[metric].groupby("run").std(ddof=1).mean()))
    return pd.DataFrame(rows)


def versus(raw: pd.DataFrame, kind: str = "sims", controls=("real", "autoguidance", "auto-half", "decoder", "continued",
                                                           "cfg"), metric: str = "fid") -> pd.DataFrame:
    """``kind`` against each control, paired on the same run and draw (the same base, noise and labels): at the same
    budget and omega, against continued training of the same budget B, against CFG of weight w = omega. Per run the
    mean over draws of kind - control, its mean over runs and 95% Student-t CI (columns budget, omega, control,
    metric, n, diff, diff_lo, diff_hi; below 0: ``kind`` is better)."""
    mine = raw[raw.kind == kind][["budget", "omega", "run", "draw", metric]]
    rows = []
    for control in (c for c in controls if c in set(raw.kind)):
        on = {"continued": ["budget"], "cfg": ["omega"]}.get(control, ["budget", "omega"])
        theirs = raw[raw.kind == control][[*on, "run", "draw", metric]]
        both = mine.merge(theirs, on=[*on, "run", "draw"], suffixes=("", "_control"))
        both["d"] = both[metric] - both[f"{metric}_control"]
        for (budget, omega), g in both.groupby(["budget", "omega"], sort=False):
            mean, lo, hi = interval(g.groupby("run").d.mean().dropna())
            rows.append(dict(budget=budget, omega=omega, control=control, metric=metric, n=g.run.nunique(), diff=mean,
                             diff_lo=lo, diff_hi=hi))
    return pd.DataFrame(rows)


def value(table: pd.DataFrame, kind: str, metric: str = "fid") -> float:
    return table[(table.kind == kind) & (table.metric == metric)]["mean"].item()


def plot_fid(table: pd.DataFrame, against: pd.DataFrame, p: Mapping[str, Any], out: Path) -> list[Path]:
    """Top: mean FID vs omega per budget (base and floor as lines); middle: paired difference to the base;
    bottom: SIMS minus each control, paired (``versus``)."""
    budgets = p["budgets"]
    fid = table[table.metric == "fid"]
    guided = fid[fid.kind.isin([*GUIDED, "cfg"])]
    fig, axes = plt.subplots(3, len(budgets), figsize=(4.4 * len(budgets), 9.6), squeeze=False, sharex=True)
    first, base, floor = fid.iloc[0], value(table, "base"), value(table, "floor")
    for j, b in enumerate(budgets):
        for kind, rows in guided[guided.budget.isin([b, 0])].groupby("kind", sort=False):  # CFG has no budget
            axes[0, j].plot(rows.omega, rows["mean"], "o-", color=COLORS[kind], label=KINDS[kind])
            axes[1, j].plot(rows.omega, rows["diff"], "o-", color=COLORS[kind])
            axes[1, j].fill_between(rows.omega, rows.diff_lo, rows.diff_hi, color=COLORS[kind], alpha=0.2)
        for _, row in fid[(fid.kind == "continued") & (fid.budget == b)].iterrows():  # no omega: a level
            axes[0, j].axhline(row["mean"], color=COLORS["continued"], ls="--", lw=1.2, label=KINDS["continued"])
            axes[1, j].axhspan(row.diff_lo, row.diff_hi, color=COLORS["continued"], alpha=0.2)
            axes[1, j].axhline(row["diff"], color=COLORS["continued"], ls="--", lw=1.2)
        for control, rows in against[against.budget == b].groupby("control", sort=False):
            axes[2, j].plot(rows.omega, rows["diff"], "o-", color=COLORS[control], label=f"SIMS - {control}")
            axes[2, j].fill_between(rows.omega, rows.diff_lo, rows.diff_hi, color=COLORS[control], alpha=0.2)
        axes[2, j].axhline(0, color="k", lw=1)
        axes[0, j].axhline(base, color="k", lw=1, label="base (omega = 0)")
        axes[0, j].axhline(floor, color="k", ls=":", lw=1, label="real-data floor")
        axes[1, j].axhline(0, color="k", lw=1)
        axes[0, j].set_title(f"B = {b} images", fontsize=10)
        axes[2, j].set_xlabel("omega")
        # a control that blows up at large omega stays on the axes without flattening the small omegas
        axes[0, j].set_yscale("log")
        for ax in axes[:, j]:
            ax.set_xscale("symlog", linthresh=0.1)
        for ax in axes[1:, j]:
            ax.set_yscale("symlog", linthresh=0.1)
    axes[0, 0].set_ylabel("FID (feature network; log scale)")
    axes[1, 0].set_ylabel("FID - base FID (paired; 95% CI over runs)\nlinear within ±0.1, log beyond")
    axes[2, 0].set_ylabel("SIMS FID - control FID (paired)\nlinear within ±0.1, log beyond")
    axes[0, 0].legend(fontsize=7)
    axes[2, 0].legend(fontsize=7)
    fig.suptitle(f"SIMS and its controls on {p['data']}: {int(first.n)} runs x {int(first.draws)} paired draws of "
                 f"{p['n_eval']} images; base FID {base:.2f} (draw-to-draw sd {first.base_draw_sd:.2f}), "
                 f"floor {floor:.2f}", fontsize=10)
    return save(fig, out, f"{NAME}-{p['data']}-fid")


def plot_shift(table: pd.DataFrame, p: Mapping[str, Any], out: Path) -> list[Path]:
    """E6: the share of classes 0-4 vs omega (target 0.7) and FID, for the shift auxiliary and plain SIMS."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for (kind, b), rows in table[table.kind.isin(["shift", "sims"])].groupby(["kind", "budget"], sort=False):
        style = "o-" if b == max(p["budgets"]) else "o--"
        label = f"{KINDS[kind]}, B = {b}"
        for ax, metric in zip(axes, ("share_low", "fid")):
            m = rows[rows.metric == metric]
            ax.plot(m.omega, m["mean"], style, color=COLORS[kind], label=label)
            ax.fill_between(m.omega, m.ci_low, m.ci_high, color=COLORS[kind], alpha=0.15)
    axes[0].axhline(TARGET[0], color="k", ls="--", lw=1, label="target 0.7")
    axes[0].axhline(value(table, "base", "share_low"), color="k", lw=1, label="base")
    axes[1].axhline(value(table, "base"), color="k", lw=1)
    axes[0].set_ylabel("share of classes 0-4 (classifier; 95% CI)")
    axes[1].set_ylabel("FID")
    for ax in axes:
        ax.set_xscale("symlog", linthresh=0.1)
        ax.set_xlabel("omega")
    axes[0].legend(fontsize=6)
    fig.suptitle(f"E6 on {p['data']}: guidance away from S curated to 30/70 (classes 0-4 / 5-9)", fontsize=10)
    fig.tight_layout()
    return save(fig, out, f"{NAME}-{p['data']}-shift")


def plot_grid(pictures: dict, table: pd.DataFrame, p: Mapping[str, Any], out: Path) -> list[Path]:
    """Run 0, draw 0, the same noise and labels: the base and each guidance at the largest budget."""
    b = max(p["budgets"])
    best = table[(table.kind == "sims") & (table.budget == b) & (table.metric == "fid")].sort_values("diff").omega.iloc[0]
    shown = [("floor", 0, 0.0, "real images"), ("base", 0, 0.0, "base")]
    shown += [(k, b, w, f"{k}, omega {w:g}") for k in ("sims", "real", "autoguidance", "auto-half")
              for w in (best, max(p["omegas"])) if (k, b, w) in pictures]
    shown = list(dict.fromkeys(shown))
    fig, axes = plt.subplots(1, len(shown), figsize=(2.2 * len(shown), 2.6))
    for ax, (kind, budget, omega, label) in zip(axes, shown):
        x = pictures[kind, budget, omega]
        ax.imshow(grids.tile(x, None, 8), cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        ax.set_title(label, fontsize=8)
        ax.set_axis_off()
    fig.suptitle(f"Run 0 on {p['data']}: the same noise and labels for every sampler (B = {b})", fontsize=10)
    return save(fig, out, f"{NAME}-{p['data']}-grid")


def make(params: Mapping[str, Any], out: Path, jobs: int) -> list[Path]:
    """Each data set's part (``parts``) in turn: its figures, and one table of each kind over the parts so far,
    written as each part finishes (an hours-long study stopped after its first part keeps that part's outputs)."""
    tables, figures, written = {}, [], []
    for p in parts(params):
        raw, pictures = run_groups(p, jobs)
        part, drawn = part_outputs(raw, pictures, p, out)
        for name, table in part.items():
            tables.setdefault(name, []).append(table)
        figures += drawn
        written = [write_table(pd.concat(t, ignore_index=True), out, name) for name, t in tables.items()]
    return [*written, *figures]


def parts(params: Mapping[str, Any]) -> list[dict]:
    """The scale's parameters for its first data set, then each entry of ``more`` (changes to them: another data
    set and its sizes) applied on top; ``more`` itself is no part's parameter, so a part's kept stages do not
    depend on the parts beside it."""
    first = {k: v for k, v in params.items() if k != "more"}
    return [first, *({**first, **change} for change in params.get("more", ()))]


COPY = 1 / 3  # a sample nearer to D_r than a third of its distance to the held-out images counts as a copy


def memorisation(pictures: dict, p: Mapping[str, Any]) -> pd.DataFrame:
    """A memorisation read-out on run 0's kept samples (draw 0): per (kind, B, omega), the share of samples whose
    nearest image of run 0's D_r (pixel L2) is nearer than COPY times their nearest image of the held-out reference
    pool, and the median of that ratio. A model that copies D_r scores at the FID floor; this shows whether it
    does. The floor row (real images of the training pool) shows the share that real images reach by chance."""
    src = madloop.DATA[p["data"]]()
    real = src.sample(p["n_real"], Streams(SEED, range(0, 1), p["runs"]).at(0, Role.REAL)).x[0]
    held_out = pools(src).reference.x
    flat = lambda x: np.asarray(x, dtype=np.float64).reshape(len(x), -1)  # noqa: E731

    def nearest(x: np.ndarray, pool: np.ndarray) -> np.ndarray:
        d2 = (x**2).sum(1)[:, None] - 2 * x @ pool.T + (pool**2).sum(1)[None]
        return np.sqrt(np.maximum(d2.min(1), 0))

    rows = []
    for (kind, budget, omega), x in pictures.items():
        ratio = nearest(flat(x), flat(real)) / np.maximum(nearest(flat(x), flat(held_out)), 1e-12)
        rows.append(dict(data=p["data"], kind=kind, budget=budget, omega=omega, n=len(ratio),
                         copies=float((ratio < COPY).mean()), median_ratio=float(np.median(ratio))))
    return pd.DataFrame(rows)


def part_outputs(raw: pd.DataFrame, pictures: dict, p: Mapping[str, Any], out: Path) -> tuple[dict, list[Path]]:
    """One data set's tables (by file name) and its figures; the grid of samples only when ``pictures`` has
    them, the E6 panel only when the part ran the ``shift`` kind."""
    table = columns_first(paired(raw).assign(data=p["data"], n_real=p["n_real"], n_aux=p["n_aux"]),
                          ["data", "kind", "budget", "omega", "n_real", "n_aux", "metric"])
    against = versus(raw).assign(data=p["data"])
    figures = [*plot_fid(table, against, p, out), *(plot_shift(table, p, out) if "shift" in set(raw.kind) else []),
               *(plot_grid(pictures, table, p, out) if pictures else [])]
    tables = {NAME: table, f"{NAME}-versus": against, f"{NAME}-raw": raw.assign(data=p["data"])}
    if pictures:
        tables[f"{NAME}-memorisation"] = memorisation(pictures, p)
    return tables, figures


register(Study(
    name=NAME,
    description="E4 on images: SIMS vs its base, the real-data control, autoguidance, compute-matched training and "
                "CFG, FID vs omega and budget B with paired draws (digits and MNIST at cpu scale)",
    scales={
        "ci": dict(data="digits", runs=2, n_real=64, n_aux=64, budgets=(64,), omegas=(0.5,), draws=2, n_eval=64,
                   n_ref=64, grid=16, kinds=(*GUIDED, "continued", "cfg", "shift"), metrics=("kid", "precision", "recall"),
                   unet=dict(images=256, batch=32, channels=8, steps=4, warmup=64, ema=64, runs_per_pass=2)),
        # E4 with the baselines a reviewer asks for (issue 28): on a base trained near its FID plateau
        # (figures/images-convergence), four budgets B spanning the bowl, omega from 0.05 to 3 and -1 (the
        # auxiliary model alone); beside SIMS: the real-data control, autoguidance with a copy of the base's width
        # and with a half-width bad model (each on the base's schedule shrunk to B), the base trained B more images
        # (compute-matched), and classifier-free guidance w = omega on the base. E6 needs unconditional sampling
        # and runs elsewhere.
        "cpu": dict(data="digits", runs=8, n_real=500, n_aux=500, budgets=(1024, 4096, 16384, 65536),
                    omegas=(-1.0, 0.05, 0.25, 1.0, 3.0), draws=3, n_eval=300, n_ref=400, grid=64,
                    kinds=("sims", "real", "autoguidance", "auto-half", "continued", "cfg"),
                    metrics=("kid", "precision", "recall"), unet=dict(images=BASE_IMAGES["digits"]),
                    # MNIST (16x16): guided sampling costs about 4x digits' per image (benchmarks/RESULTS_sims_images.md)
                    more=[dict(data="mnist", n_real=1000, n_aux=1000, n_ref=1000,
                               unet=dict(images=BASE_IMAGES["mnist"]))]),
        "gpu": dict(data="mnist", runs=8, n_real=3000, n_aux=3000, budgets=(4096, 16384, 65536),
                    omegas=(0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0), draws=5, n_eval=1000, n_ref=1000, grid=100,
                    unet=dict(images=262144, channels=32, device="auto", runs_per_pass=0)),
    },
    make=make,
))
