"""madloop: self-consuming generative-model loops (model autophagy disorder) and their remedies.

    import madloop
    result = madloop.run(loop="fully_synthetic", model="gaussian", n_synth=20, gens=50, runs=1000)
    result.summary()          # mean, 95% CI and MAD ratio per metric and generation
    madloop.load("runs/...")  # reopen a run directory or a sweep folder
    madloop.resume("runs/...")  # finish an interrupted run or sweep
    madloop.plot("runs/a", "runs/b", out="figures")  # overlay runs, as `madloop plot` does
    madloop.presets()         # the named presets, as `madloop presets` lists them
    madloop.fid(images_a, images_b, features="digits")  # FID in the digits classifier's feature space
"""

import importlib
import sys
import types
from pathlib import Path

from madloop import algorithms, data, images, metrics, models, sims  # noqa: F401  (registers the built-ins)
from madloop.config import PRESETS, RunConfig, resolve
from madloop.errors import MadloopError
from madloop.files import __version__  # noqa: F401  (madloop.__version__)
from madloop.loop import LOOPS, generations
from madloop.registry import ALGOS, DATA, METRICS, MODELS
from madloop.rng import RunRNG, Streams
from madloop.samples import Samples
from madloop.metrics.image import fid, kid, precision, recall  # for scripts: images in, a number out

metric = metrics.register

# Imported on first use, so that `import madloop` (and `madloop --help`) loads no pandas, joblib or matplotlib.
LAZY = {"Result": "madloop.results", "Evaluation": "madloop.evaluate", "evaluate": "madloop.evaluate",
        "execute": "madloop.runner", "run": "madloop.runner", "sweep": "madloop.sweeps", "plot": "madloop.plots"}


def __getattr__(name: str):
    if name not in LAZY:
        raise AttributeError(f"module 'madloop' has no attribute '{name}'")
    value = getattr(importlib.import_module(LAZY[name]), name)
    globals()[name] = value
    return value


class _Package(types.ModuleType):
    def __setattr__(self, name: str, value) -> None:
        # Importing the submodule madloop.evaluate sets its name to it; the name belongs to the function.
        if not (name in LAZY and isinstance(value, types.ModuleType)):
            super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def load(path: str | Path):
    """Reopen a run directory (a Result, finished or not), an evaluation's (an Evaluation) or a sweep folder
    (a SweepResult)."""
    from madloop.sweeps import open_any

    return open_any(path)


def compare(a, *args, **kwargs):
    """Paired differences over runs of one seed. Two loop runs (Results or their directories):
    ``compare(a, b, metric, window=None)``, b - a per generation (madloop.results.compare). An evaluation (or its
    directory): ``compare(ev, "base", "sims", metric)``, sims - base per draw and pooled (madloop.evaluate)."""
    from madloop.evaluate import Evaluation, compare as compare_samplers, is_evaluation
    from madloop.results import compare as compare_runs

    if isinstance(a, Evaluation) or (isinstance(a, (str, Path)) and is_evaluation(a)):
        return compare_samplers(a, *args, **kwargs)
    return compare_runs(a, *args, **kwargs)


def resume(path: str | Path, *, jobs: int = 1, checkpoint_s: float = 30.0, on_progress=None, gens: int | None = None):
    """Continue an interrupted run directory (a Result) or sweep folder (a SweepResult) from its last
    checkpoints; the tables end as if never stopped. What `madloop resume` does. ``gens``: run a run directory
    on to that many generations, with the table of a run of ``gens`` generations from the start."""
    from madloop import store
    from madloop.runner import resume as resume_run
    from madloop.sweeps import SWEEP, resume_sweep

    from madloop.evaluate import is_evaluation, resume as resume_evaluation

    path = Path(path)
    if gens is not None and ((path / SWEEP).is_file() or (store.is_run_dir(path) and is_evaluation(path))):
        raise MadloopError(f"gens runs a loop's run directory on to more generations; {path} is a sweep or an evaluation")
    if (path / SWEEP).is_file():
        return resume_sweep(path, jobs=jobs, checkpoint_s=checkpoint_s)
    if not store.is_run_dir(path):
        raise MadloopError(f"{path} is not a madloop run or sweep directory")
    if is_evaluation(path):
        return resume_evaluation(path, jobs=jobs)
    return resume_run(path, jobs=jobs, on_progress=on_progress, checkpoint_s=checkpoint_s, gens=gens)


def presets() -> dict[str, dict]:
    """The named presets, each with the settings it changes from the defaults (`madloop presets`)."""
    return {name: dict(settings) for name, settings in PRESETS.items()}


__all__ = [
    "ALGOS", "DATA", "Evaluation", "LOOPS", "METRICS", "MODELS", "PRESETS", "MadloopError", "Result", "RunConfig", "RunRNG",
    "Samples", "Streams", "compare", "evaluate", "execute", "fid", "generations", "kid", "load", "metric", "plot", "precision", "presets",
    "recall", "resolve", "resume", "run", "sweep",
]
