"""madloop.evaluate: paired samplers of one base, stored as a run directory (tiny 8x8 digits U-Nets)."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pytest

import madloop
from madloop.errors import MadloopError

UNET = dict(images=128, batch=32, channels=8, steps=4, warmup=64, ema=64, runs_per_pass=2)
RUN = dict(data="digits", runs=2, n_real=64, n_eval=48, n_ref=64, metrics=("fid", "classes"), model_options=UNET)
RUN4 = {**RUN, "runs": 4}  # two chunks of runs_per_pass = 2 runs: two workers
SIMS = {"algo": "sims", "n_aux": 64, "aux_images": 64}
SAMPLERS = {"base": {}, "zero": {**SIMS, "omega": 0.0}, "sims": {**SIMS, "omega": 0.5}, "sims2": {**SIMS, "omega": 2.0},
            "cfg": {"lam": 0.7}, "more": {"algo": "continued", "aux_images": 64},
            "auto": {"algo": "autoguidance", "omega": 0.5, "aux_images": 64, "aux_width": 0.5}}

KILLED = {name: SAMPLERS[name] for name in ("base", "sims", "sims2", "more")}


@pytest.fixture(scope="module")
def ev(tmp_path_factory):
    return madloop.evaluate(SAMPLERS, draws=2, out=tmp_path_factory.mktemp("ev") / "e", keep=5, **RUN)


def test_the_table_is_tidy_and_every_sampler_is_measured_on_every_run_and_draw(ev):
    assert list(ev.table.columns) == ["run", "draw", "sampler", "metric", "value"]
    fid = ev.table[ev.table.metric == "fid"]
    assert set(fid.sampler) == {"floor", *SAMPLERS}
    assert fid.groupby("sampler").size().eq(2 * 2).all()  # 2 runs x 2 draws
    assert np.isfinite(fid.value).all()
    assert ev.summary().sampler.iloc[0] == "floor"  # the floor first, then the samplers as given


def test_omega_zero_gives_exactly_the_base_rows(ev):
    t = ev.table.set_index(["run", "draw", "metric"])
    pd.testing.assert_series_equal(t[t.sampler == "zero"].value, t[t.sampler == "base"].value)


def test_samplers_share_the_noise_but_guidance_and_cfg_change_the_samples(ev):
    base = ev.per_run("base", "fid")
    for name in ("sims", "sims2", "cfg", "more", "auto"):
        assert not np.allclose(ev.per_run(name, "fid"), base), name


def test_compare_pairs_by_run_and_draw_with_a_t_interval(ev):
    c = madloop.compare(ev, "base", "sims", "fid")
    a, b = ev.per_run("base", "fid"), ev.per_run("sims", "fid")
    assert list(c.pooled) == [False, False, True]
    per_run = (b - a).mean(axis=1)
    pooled = c[c.pooled].iloc[0]
    assert pooled["diff"] == pytest.approx(per_run.mean())
    half = 12.706 * per_run.std(ddof=1) / np.sqrt(2)  # Student t, 1 degree of freedom
    assert (pooled.lo, pooled.hi) == pytest.approx((per_run.mean() - half, per_run.mean() + half), rel=1e-3)
    assert c[~c.pooled]["diff"].tolist() == pytest.approx((b - a).mean(axis=0).tolist())
    assert madloop.compare(str(ev.path), "base", "sims", "fid").equals(c)  # a directory works as well


def test_kept_samples_are_run_0s_first_of_draw_0(ev):
    kept = madloop.load(ev.path).samples()
    assert set(kept) == {"floor", *SAMPLERS} and kept["base"].shape == (5, 1, 8, 8)
    np.testing.assert_array_equal(kept["zero"], kept["base"])  # omega = 0: the base's images, the same noise
    assert not np.array_equal(kept["sims2"], kept["base"])


def test_load_reopens_an_evaluation(ev):
    again = madloop.load(ev.path)
    assert isinstance(again, madloop.Evaluation)
    pd.testing.assert_frame_equal(again.table, ev.table)
    assert (ev.path / "summary.csv").is_file() and not (ev.path / "parts").exists()


def test_the_base_and_a_sims_sampler_match_the_loop_and_the_algorithm(tmp_path):
    """Draw 0 of the base is what the loop measures at generation 1 with the same seed."""
    ev = madloop.evaluate({"base": {}}, draws=1, out=tmp_path / "e", **RUN)
    res = madloop.run(out=tmp_path / "r", gens=1, **RUN)
    loop = res.table[(res.table.gen == 1) & (res.table.metric == "fid")].set_index("run").value
    assert ev.per_run("base", "fid")[0].to_numpy() == pytest.approx(loop.to_numpy(), abs=0)


@pytest.mark.parametrize("samplers, settings, message", [
    ({}, {}, "non-empty"),
    ({"floor": {}}, {}, "other than 'floor'"),
    ({"a": {"algo": "nope"}}, {}, "sampler 'a'"),
    ({"a": {"n_real": 10}}, {}, "changes the run's n_real"),
    ({"a": {}}, {"lam": 0.5}, "belong to each sampler"),
    ({"a": {"algo": "sims", "omega": float("nan")}}, {}, "finite"),
    ({"a": 3}, {}, "table of settings"),
])
def test_bad_input_is_one_error_and_nothing_is_written(tmp_path, samplers, settings, message):
    with pytest.raises(MadloopError, match=message):
        madloop.evaluate(samplers, draws=1, out=tmp_path / "e", **{**RUN, **settings})
    assert not (tmp_path / "e").exists()


def test_draws_must_be_a_positive_integer(tmp_path):
    with pytest.raises(MadloopError, match="draws"):
        madloop.evaluate({"a": {}}, draws=0, out=tmp_path / "e", **RUN)


def test_an_existing_evaluation_is_refused_without_force_and_replaced_with_it(tmp_path):
    first = madloop.evaluate({"base": {}}, draws=1, out=tmp_path / "e", **RUN)
    with pytest.raises(MadloopError, match="already holds a run"):
        madloop.evaluate({"cfg": {"lam": 0.5}}, draws=1, out=first.path, **RUN)
    (first.path / "mine.txt").write_text("a user's file")
    again = madloop.evaluate({"cfg": {"lam": 0.5}}, draws=1, out=first.path, force=True, **RUN)
    assert set(again.table.sampler) == {"floor", "cfg"} and set(madloop.load(first.path).table.sampler) == {"floor", "cfg"}
    assert (first.path / "mine.txt").read_text() == "a user's file"


SCRIPT = textwrap.dedent("""
    import sys, madloop
    sys.path.insert(0, {tests!r})
    from test_evaluate import KILLED, RUN4
    madloop.evaluate(KILLED, draws=3, out={out!r}, jobs=int(sys.argv[1]), **RUN4)
""")


def test_a_killed_evaluation_resumes_to_the_identical_table_whatever_the_workers(tmp_path):
    out = tmp_path / "e"
    script = tmp_path / "go.py"
    script.write_text(SCRIPT.format(tests=os.path.dirname(__file__), out=str(out)))
    proc = subprocess.Popen([sys.executable, str(script), "2"], start_new_session=True)
    deadline = time.time() + 300
    while not list((out / "parts").glob("stage-*aux-*.npz")):
        assert proc.poll() is None and time.time() < deadline, "the evaluation ended before it could be killed"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the process and its workers, as kill -9 of a shell job
    proc.wait()
    assert not (out / "summary.csv").exists()
    while True:  # the killed workers may take a moment to die and free their chunks' locks
        try:
            resumed = madloop.resume(out, jobs=2)
            break
        except MadloopError as err:
            assert "busy" in str(err) and time.time() < deadline + 10
            time.sleep(0.2)
    # The same table as an evaluation never stopped, with one worker (another chunking of the runs).
    whole = madloop.evaluate(KILLED, draws=3, out=tmp_path / "whole", jobs=1, **RUN4)
    pd.testing.assert_frame_equal(resumed.table, whole.table)
    assert "resume" in (out / "log.txt").read_text()


TOML = """
draws = 1
[run]
data = "digits"
runs = 2
n_real = 64
n_eval = 48
n_ref = 64
metrics = ["fid"]
[run.model_options]
images = 64
batch = 32
channels = 8
steps = 4
warmup = 64
ema = 64
runs_per_pass = 2
[samplers.base]
[samplers.sims]
algo = "sims"
omega = 0.5
n_aux = 64
aux_images = 64
"""


def cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "madloop", *args], cwd=cwd, capture_output=True, text=True)


def test_the_command_line_twin_runs_resumes_and_refuses_in_one_line(tmp_path):
    (tmp_path / "s.toml").write_text(TOML)
    done = cli("evaluate", "--config", "s.toml", "--out", "e", "--jobs", "1", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "sims" in done.stdout and (tmp_path / "e" / "summary.csv").is_file()
    table = madloop.load(tmp_path / "e").table
    assert set(table.sampler) == {"floor", "base", "sims"}
    again = cli("resume", "e", cwd=tmp_path)  # a finished evaluation is reopened
    assert again.returncode == 0, again.stderr
    for args, message in [(("--out", "e"), "already holds a run"), (("--out", "x", "--omega", "3"), "'omega' is unknown"),
                          (("--out", "x", "--draws", "0"), "draws must be")]:
        bad = cli("evaluate", "--config", "s.toml", *args, cwd=tmp_path)
        assert bad.returncode == 2 and message in bad.stderr and bad.stderr.count("\n") == 1, bad.stderr
    assert not (tmp_path / "x").exists()
    (tmp_path / "u.toml").write_text("extra = 1\n" + TOML)
    bad = cli("evaluate", "--config", "u.toml", cwd=tmp_path)
    assert bad.returncode == 2 and "unknown keys extra" in bad.stderr
