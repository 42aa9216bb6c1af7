"""The progress bar's training images per second (runner.training_rate), computed from stored parts alone."""

import dataclasses

import pytest

from madloop.config import RunConfig
from madloop.runner import training_rate

# 4 runs in 2 chunks, 3 generations: parts are (chunk, generation) files, 2 x (3 + 1) of them.
CFG = RunConfig(model="unet", runs=4, gens=3, model_options={"images": 1000})
TOTAL = 8


def test_generation_0_trains_nothing_and_each_later_part_is_its_chunks_runs_times_the_budget():
    assert training_rate(CFG, 2, TOTAL, 0, 10.0) == 0  # both chunks' generation 0: a real sample, no training
    assert training_rate(CFG, 3, TOTAL, 0, 10.0) == pytest.approx(2 * 1000 / 10)  # one chunk of 2 runs trained once
    assert training_rate(CFG, TOTAL, TOTAL, 0, 20.0) == pytest.approx(4 * 3 * 1000 / 20)  # every run, every generation


def test_a_resume_counts_only_the_parts_stored_since_the_bar_started():
    assert training_rate(CFG, 6, TOTAL, 6, 5.0) == 0
    assert training_rate(CFG, 8, TOTAL, 6, 5.0) == pytest.approx(2 * 2 * 1000 / 5)


def test_no_rate_without_an_images_budget_or_before_time_has_passed():
    assert training_rate(RunConfig(runs=4, gens=3), 4, TOTAL, 0, 10.0) is None  # the Gaussian family has no images
    assert training_rate(CFG, 4, TOTAL, 0, 0.0) is None
    assert training_rate(dataclasses.replace(CFG, algo="sims"), 4, TOTAL, 0, 10.0) is None  # auxiliary fits uncounted
