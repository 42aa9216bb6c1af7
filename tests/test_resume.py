"""Crashes lose nothing: a killed run resumes to the identical table; two writers never mix."""

import os
import signal
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

import madloop
from madloop import store
from madloop.backends import backend
from madloop.cli import main
from madloop.models.gaussian import Gaussian, GaussianModel

VALUES = ["run", "gen", "metric", "value"]
# Slow enough to be killed mid-way: exact W2 on 300 points for every run and generation.
SLOW = ["--runs", "12", "--gens", "30", "--n-eval", "300", "--n-ref", "300", "--path", "samples", "--metrics", "w2,gauss_w2",
        "--loop", "augmentation", "--jobs", "2", "--checkpoint-s", "0", "--no-progress", "--no-plot"]


def cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "madloop.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_sigkill_mid_generation_then_resume_gives_the_uninterrupted_table(tmp_path):
    assert cli("run", *SLOW, "--out", "whole", cwd=tmp_path).returncode == 0
    proc = subprocess.Popen([sys.executable, "-m", "madloop.cli", "run", *SLOW, "--out", "killed"], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    parts = tmp_path / "killed" / store.PARTS
    deadline = time.time() + 120
    while len(list(parts.glob("state-*.npz"))) < 1 or len(list(parts.glob("moments-*"))) < 12:
        assert proc.poll() is None and time.time() < deadline, "the run ended before it could be killed"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the main process and its workers, wherever they are
    proc.wait()
    assert not store.is_finished(tmp_path / "killed")
    done = cli("resume", "killed", "--jobs", "1", "--no-progress", "--no-plot", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    whole = pd.read_parquet(tmp_path / "whole" / "table.parquet")[VALUES]
    resumed = pd.read_parquet(tmp_path / "killed" / "table.parquet")[VALUES]
    pd.testing.assert_frame_equal(whole, resumed)
    summary = ["metric", "gen", "n", "mean", "sem", "mad_ratio", "mad_ratio_low"]
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "whole" / "summary.csv")[summary],
                                  pd.read_csv(tmp_path / "killed" / "summary.csv")[summary])
    assert "resume:" in (tmp_path / "killed" / "log.txt").read_text()


@dataclass(frozen=True)
class Crashing(Gaussian):
    """The Gaussian family, but the process 'dies' while training generation ``crash_at``."""

    crash_at = None

    def fit(self, data, rng):
        if rng.gen == Crashing.crash_at:
            raise RuntimeError("simulated crash")
        return super().fit(data, rng)


@pytest.mark.parametrize("crash_at", [2, 4, 6])
def test_resume_after_a_crash_in_any_generation(tmp_path, tiny, crash_at):
    madloop.MODELS.register("crashing", replace=True)(Crashing)
    settings = {**tiny, "gens": 6, "loop": "fresh", "accumulate": True, "model": "crashing"}
    whole = madloop.run(out=tmp_path / "whole", **settings)
    Crashing.crash_at = crash_at
    try:
        with pytest.raises(RuntimeError, match="simulated crash"):
            madloop.execute(whole.config, out=tmp_path / "crashed", checkpoint_s=0)
    finally:
        Crashing.crash_at = None
    assert set(store.read_table(tmp_path / "crashed").gen) == set(range(crash_at))
    resumed = madloop.runner.resume(tmp_path / "crashed")
    pd.testing.assert_frame_equal(resumed.table[VALUES], whole.table[VALUES])
    pd.testing.assert_frame_equal(resumed.summary(), whole.summary())


def test_a_second_writer_is_refused(tmp_path, tiny):
    madloop.run(out=tmp_path / "r", **tiny)
    (tmp_path / "r" / store.SUMMARY).unlink()  # looks unfinished, so `resume` would write
    with store.locked(tmp_path / "r"):
        busy = cli("resume", "r", "--no-progress", cwd=tmp_path)
    assert busy.returncode == 2 and "is busy: another madloop process (pid" in busy.stderr
    assert busy.stderr.count("\n") == 1


def test_a_truncated_results_file_is_reported_not_ignored(tmp_path, tiny):
    madloop.run(out=tmp_path / "r", **tiny)
    data = (tmp_path / "r" / "table.parquet").read_bytes()
    (tmp_path / "r" / "table.parquet").write_bytes(data[: len(data) // 2])
    with pytest.raises(madloop.MadloopError, match="corrupted or truncated"):
        madloop.load(tmp_path / "r")


def test_a_diverging_model_stops_with_run_and_generation_and_is_recorded(tmp_path, tiny):
    @dataclass(frozen=True)
    class Exploding(Gaussian):
        """Run 2's fit turns to NaN at generation 3."""

        def fit(self, data, rng):
            model = super().fit(data, rng)
            if rng.gen == 3:
                model.mean[2 - 0] = np.nan
            return GaussianModel(model.mean, model.cov)

    madloop.MODELS.register("exploding", replace=True)(Exploding)
    with pytest.raises(madloop.MadloopError, match=r"generation 3: run 2 \(and 0 more\) produced non-finite samples"):
        madloop.run(out=tmp_path / "r", model="exploding", **tiny)
    table = store.read_table(tmp_path / "r")
    failed = table[table.metric == "failed"]
    assert list(failed.run) == [2] and list(failed.gen) == [3]
    assert set(table[table.metric == "w2"].gen) == {0, 1, 2}  # what finished before is kept
    log = (tmp_path / "r" / "log.txt").read_text()
    assert "stopped: generation 3: run 2" in log and "madloop resume" not in log  # resuming would diverge again


def test_loky_and_a_local_dask_cluster_give_identical_sweeps(tmp_path):
    pytest.importorskip("distributed")
    settings = dict(runs=2010, gens=3, n_real=20, n_synth=20, n_eval=30, n_ref=30, path="samples",
                    metrics=("gauss_w2", "sliced_w2"))
    loky = madloop.sweep({"lam": [1.0, 0.6]}, out=tmp_path / "loky", jobs=2, **settings)
    with backend("dask", workers=2):
        dask = madloop.sweep({"lam": [1.0, 0.6]}, out=tmp_path / "dask", jobs=2, **settings)
    pd.testing.assert_frame_equal(loky.table[VALUES + ["lam"]], dask.table[VALUES + ["lam"]])


def test_an_interrupted_sweep_resumes(tmp_path, tiny):
    from madloop.sweeps import resume_sweep

    whole = madloop.sweep({"lam": [1.0, 0.5, 0.8]}, out=tmp_path / "s", **tiny)
    # A crash after the first point: the second point half-written, the third never started.
    import shutil

    shutil.rmtree(tmp_path / "s" / "point-002")
    for kind in store.KINDS:
        (tmp_path / "s" / "point-001" / kind.file).unlink()
    (tmp_path / "s" / "point-001" / store.SUMMARY).unlink()
    resumed = resume_sweep(tmp_path / "s")
    pd.testing.assert_frame_equal(resumed.table[VALUES + ["lam"]], whole.table[VALUES + ["lam"]])


def test_ctrl_c_stops_cleanly_and_leaves_a_resumable_directory(tmp_path):
    # Ctrl-C reaches a command in a terminal; under `nohup` or `&` (as CI may run the tests) SIGINT is ignored and
    # children inherit that, so the child first restores Python's handler, as a terminal session would have it.
    terminal = "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); from madloop.cli import main; main()"
    proc = subprocess.Popen([sys.executable, "-c", terminal, "run", *SLOW, "--out", "r"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    parts = tmp_path / "r" / store.PARTS
    deadline = time.time() + 120
    while len(list(parts.glob("moments-*"))) < 5:
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "madloop resume" in err and "Traceback" not in err
    assert "interrupted" in (tmp_path / "r" / "log.txt").read_text()
    done = cli("resume", "r", "--no-progress", "--no-plot", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert len(pd.read_parquet(tmp_path / "r" / "table.parquet")) == 12 * 31 * 2


def test_resume_of_an_unfinished_run_prints_no_warning_that_it_is_unfinished(tmp_path, tiny, monkeypatch, capsys):
    """Resume exists to finish it: 'not finished (madloop resume completes it)' there only confuses."""
    madloop.MODELS.register("crashing", replace=True)(Crashing)
    Crashing.crash_at = 3
    try:
        with pytest.raises(RuntimeError, match="simulated crash"):
            madloop.run(out=tmp_path / "crashed", model="crashing", **tiny)
    finally:
        Crashing.crash_at = None
    monkeypatch.setattr(sys, "argv", ["madloop", "resume", str(tmp_path / "crashed"), "--no-progress", "--no-plot"])
    with warnings.catch_warnings(record=True) as caught, pytest.raises(SystemExit) as exit_:
        warnings.simplefilter("always")  # as the command line shows them
        main()
    err = capsys.readouterr().err
    assert exit_.value.code == 0 and "not finished" not in err, err
    assert not [w for w in caught if "not finished" in str(w.message)]
    assert store.is_finished(tmp_path / "crashed")


# ----------------------------------------------------------------------------------------------------------
# madloop resume --gens: a run goes on to more generations, its table that of the longer run from the start.

LONGER = dict(loop="fresh", accumulate=True, budget=40)  # a loop whose state carries over generations


@pytest.mark.parametrize("settings, short, long", [
    (LONGER, 4, 7),
    ({**LONGER, "every": 2}, 4, 7),  # generation 4 is not measured by the 7-generation run: it starts again
    ({"loop": "augmentation"}, 22, 26),  # across the convergence window (t >= 20): its means over more generations
])
def test_resume_gens_gives_the_table_of_a_run_of_that_many_generations(tmp_path, tiny, settings, short, long):
    settings = {**tiny, **settings}
    whole = madloop.run(out=tmp_path / "whole", **{**settings, "gens": long})
    madloop.run(out=tmp_path / "short", **{**settings, "gens": short})
    extended = madloop.resume(tmp_path / "short", gens=long)
    assert extended.config == whole.config and extended.incomplete is None
    pd.testing.assert_frame_equal(extended.table[VALUES], whole.table[VALUES])
    pd.testing.assert_frame_equal(extended.summary(), whole.summary())
    pd.testing.assert_frame_equal(madloop.load(tmp_path / "short").moments, whole.moments)
    pd.testing.assert_frame_equal(extended.convergence, whole.convergence, rtol=1e-12)  # sums rescaled, not redone
    assert extended.headline().equals(whole.headline())


def test_resume_gens_goes_on_from_an_interrupted_run_too(tmp_path, tiny):
    madloop.MODELS.register("crashing", replace=True)(Crashing)
    settings = {**tiny, **LONGER, "model": "crashing"}
    whole = madloop.run(out=tmp_path / "whole", **{**settings, "gens": 9})
    Crashing.crash_at = 3
    try:
        with pytest.raises(RuntimeError, match="simulated crash"):
            madloop.execute(madloop.resolve({**settings, "gens": 6}), out=tmp_path / "crashed", checkpoint_s=0)
    finally:
        Crashing.crash_at = None
    pd.testing.assert_frame_equal(madloop.resume(tmp_path / "crashed", gens=9).table[VALUES], whole.table[VALUES])


def test_a_hand_edited_config_is_refused_and_resume_gens_is_the_way_to_more_generations(tmp_path, tiny, monkeypatch, capsys):
    import json

    madloop.run(out=tmp_path / "r", **tiny)
    config = tmp_path / "r" / "config.json"
    original = config.read_text()
    for key, value in (("seed", 99), ("gens", 10), ("metrics", ["w2", "mean_err", "cov_err"])):
        meta = json.loads(original)
        meta["config"][key] = value
        config.write_text(json.dumps(meta))
        with pytest.raises(madloop.MadloopError, match="config.json was edited after the run was made"):
            madloop.load(tmp_path / "r")
        for args in (["resume", str(tmp_path / "r")], ["plot", str(tmp_path / "r"), "--out", str(tmp_path / "f")]):
            monkeypatch.setattr(sys, "argv", ["madloop", *args])
            with pytest.raises(SystemExit) as exit_:
                main()
            err = capsys.readouterr().err
            assert exit_.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
            assert f"madloop resume {tmp_path / 'r'} --gens N" in err
    config.write_text(original)
    monkeypatch.setattr(sys, "argv", ["madloop", "resume", str(tmp_path / "r"), "--gens", "6", "--no-progress", "--no-plot"])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 0 and madloop.load(tmp_path / "r").config.gens == 6
    with pytest.raises(madloop.MadloopError, match="resume runs .* on past its 6 generations"):
        madloop.resume(tmp_path / "r", gens=3)


def test_a_run_directory_without_a_config_digest_stays_readable(tmp_path, tiny):
    """Runs written before the marker held a digest (a marker with only madloop and format) load and resume."""
    import json

    run = madloop.run(out=tmp_path / "old", **tiny)
    (tmp_path / "old" / store.MARKER).write_text(json.dumps({"madloop": "0.1.0", "format": 1}) + "\n")
    pd.testing.assert_frame_equal(madloop.load(tmp_path / "old").table, run.table)
    assert madloop.resume(tmp_path / "old", gens=6).config.gens == 6
