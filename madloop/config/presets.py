"""Named layers of settings: the presets, and what a choice of algorithm or model family implies."""

from __future__ import annotations

from typing import Any, Mapping

from madloop.config.schema import RunConfig

# Named presets: overrides of the defaults, in one place. "default" is what `madloop run` runs.
PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    "collapse": dict(loop="fully_synthetic", n_real=20, n_synth=20, gens=50, runs=1000, metrics=("gauss_w2", "model_trace", "model_logdet")),
    "augmentation": dict(loop="augmentation", n_real=100, n_synth=100),
    "fresh": dict(loop="fresh", n_real=100, n_synth=100),
    "accumulate": dict(loop="fully_synthetic", accumulate=True),
    "gmm-ring": dict(data="mixture", model="gmm", data_options={"layout": "ring", "k": 8}, model_options={"k": 8}, n_real=500, n_synth=500, gens=20, runs=20, metrics=("w2", "sliced_w2")),
    "gmm-grid": dict(data="mixture", model="gmm", data_options={"layout": "grid", "k": 9}, model_options={"k": 9}, n_real=500, n_synth=500, gens=20, runs=20, metrics=("w2", "sliced_w2")),
}

# Settings a choice of algorithm, model family or data source implies unless given (lowest precedence after
# the defaults): `--algo sims` alone runs SIMS on the 2D diffusion model, `--data digits` alone an image loop
# with the U-Net, each at a size a laptop CPU finishes.
IMAGE_METRICS = ("fid", "kid", "precision", "recall", "classes")
IMAGE_SOURCES = ("digits", "mnist", "fashion-mnist", "images")
IMPLIED: dict[str, dict[str, dict[str, Any]]] = {
    "algo": {"sims": dict(model="ddpm"), "autoguidance": dict(model="ddpm")},
    "data": {name: dict(model="unet") for name in IMAGE_SOURCES},
    "model": {
        "ddpm": dict(runs=8, n_real=1000, n_synth=1000, n_eval=1000, n_ref=1000, metrics=("gauss_w2", "sliced_w2")),
        "edm": dict(runs=8, n_real=1000, n_synth=1000, n_eval=1000, n_ref=1000, metrics=("gauss_w2", "sliced_w2")),
        "unet": dict(data="digits", runs=4, gens=10, n_real=500, n_synth=500, n_eval=500, n_ref=400, metrics=IMAGE_METRICS),
    },
}


def implied(given: Mapping[str, Any]) -> dict[str, Any]:
    """The IMPLIED settings of the algorithm, model family and data source that ``given`` chooses (the
    algorithm's win over the model's, the model's over the data source's, except that image data keeps
    its model family)."""
    by_algo = IMPLIED["algo"].get(given.get("algo", RunConfig.algo), {})
    by_data = IMPLIED["data"].get(given.get("data"), {})
    if by_data:  # image data keeps its model family whatever the algorithm (sims on images runs the unet)
        by_algo = {k: v for k, v in by_algo.items() if k != "model"}
    model = given.get("model", by_algo.get("model", by_data.get("model", RunConfig.model)))
    by_model = IMPLIED["model"].get(model, {})
    return {**by_data, **by_model, **by_algo}
