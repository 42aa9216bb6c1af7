"""Studies: the experiments behind the published figures, each one entry with three sizes.

A study is data: a name, a one-line description, and the parameters of each scale:
- ``ci``: tiny, runs in the test suite to check the pipeline end to end;
- ``cpu``: what made the figures committed in ``figures/`` (sized for a 2-core CPU);
- ``gpu``: the paper's scale.
Its ``make(params, out, jobs)`` runs what it needs (through ``madloop.run`` / ``madloop.sweep``),
writes one tidy table ``<name>.csv`` and its figures (PNG and PDF) into ``out``, and returns the
paths. Run one with ``madloop study NAME --scale cpu``; list them with ``madloop study``.
"""

from __future__ import annotations

import importlib
import pkgutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from madloop.errors import MadloopError
from madloop.registry import Registry

SCALES = ("ci", "cpu", "gpu")
STUDIES: Registry = Registry("study")


@dataclass(frozen=True)
class Study:
    name: str
    description: str
    scales: Mapping[str, Mapping[str, Any]]
    make: Callable[[Mapping[str, Any], Path, int], list[Path]]

    def __post_init__(self):
        missing = set(SCALES) - set(self.scales)
        if missing:
            raise ValueError(f"study '{self.name}' lacks scales {sorted(missing)}")


def register(study: Study) -> Study:
    return STUDIES.register(study.name)(study)


def load_all() -> None:
    """Import every study module in this package (each registers its study)."""
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")


def run_study(name: str, scale: str = "cpu", out: str | Path = "figures", jobs: int = 1,
              work: str | Path | None = None) -> list[Path]:
    """Run one study at one scale; returns the files it wrote. With ``work``, the study's sweeps keep their runs
    there (the image SIMS studies their stages), and a second call with the same ``work`` continues where an
    interrupted one stopped (``madloop.studies.common``)."""
    from madloop.studies.common import inside

    load_all()
    study = STUDIES[name]
    if scale not in SCALES:
        raise MadloopError(f"unknown scale '{scale}'; choose from: {', '.join(SCALES)}")
    if work is not None and Path(work).exists() and not Path(work).is_dir():
        raise MadloopError(f"the work folder {work} is a file: name a folder (new or kept from a run of this study)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with inside(work) as kept:
        paths = study.make(study.scales[scale], out, jobs)
    print(f"study {name} ({scale}) took {time.perf_counter() - start:.0f} s")
    if work is not None:
        stages = len(list(Path(work).glob("stage-*.npz")))
        print(f"its {len(set(kept))} runs are kept in {work}" if kept else
              f"{work} holds {stages} kept stages of study runs" if stages else
              f"study {name} runs no sweeps, so {work} keeps nothing: an interrupted run starts again")
    return paths


def main(name: str) -> None:
    """Entry for the scripts in studies/: ``python studies/x.py [--scale cpu] [--out figures] [--jobs N]``."""
    import argparse

    parser = argparse.ArgumentParser(description=f"madloop study {name}")
    parser.add_argument("--scale", default="cpu", choices=SCALES)
    parser.add_argument("--out", default="figures")
    parser.add_argument("--jobs", type=int, default=1)
    args = parser.parse_args()
    for p in run_study(name, args.scale, args.out, args.jobs):
        print(p)
