"""madloop: self-consuming generative-model loops (model autophagy disorder) and their remedies.

    import madloop
    result = madloop.run(loop="fully_synthetic", model="gaussian", n_synth=20, gens=50, runs=1000)
    result.summary()          # mean, 95% CI and MAD ratio per metric and generation
    madloop.load("runs/...")  # reopen a run directory
"""

__version__ = "0.1.0"

from madloop import algorithms, data, metrics, models, sims  # noqa: E402,F401  (registers the built-ins)
from madloop.config import PRESETS, RunConfig, resolve  # noqa: E402
from madloop.errors import MadloopError  # noqa: E402
from madloop.loop import LOOPS, generations  # noqa: E402
from madloop.registry import ALGOS, DATA, METRICS, MODELS  # noqa: E402
from madloop.results import Result, load  # noqa: E402
from madloop.rng import RunRNG, Streams  # noqa: E402
from madloop.runner import execute, run  # noqa: E402
from madloop.sweep import sweep  # noqa: E402
from madloop.samples import Samples  # noqa: E402

metric = metrics.register

__all__ = [
    "ALGOS", "DATA", "LOOPS", "METRICS", "MODELS", "PRESETS", "MadloopError", "Result", "RunConfig", "RunRNG",
    "Samples", "Streams", "execute", "generations", "load", "metric", "resolve", "run", "sweep",
]
