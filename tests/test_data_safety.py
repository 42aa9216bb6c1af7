"""No path loses data: --force on busy or foreign folders, SIGTERM and SIGKILL, lost part files, checkpoints
that cannot run code, a full disk, sizes that do not fit in memory, a GPU that is not there."""

import errno
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest

import madloop
from madloop import runner, snapshot, store
from madloop.models.gaussian import Gaussian

VALUES = ["run", "gen", "metric", "value"]
# Slow enough to be stopped mid-way (about 10 s of loop on 2 cores): exact W2 on 300 points, 2 workers.
SLOW = ["--runs", "12", "--gens", "60", "--n-eval", "300", "--n-ref", "300", "--path", "samples", "--metrics", "w2,gauss_w2",
        "--loop", "augmentation", "--jobs", "2", "--checkpoint-s", "0", "--no-progress", "--no-plot"]


def cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "madloop.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def one_error(res) -> bool:
    """Exit code 2 and one `error:` line, no traceback."""
    return res.returncode == 2 and sum(line.startswith("error:") for line in res.stderr.splitlines()) == 1 \
        and "Traceback" not in res.stderr


def files(path):
    """Every file under path with its content, except the lock files."""
    return {p.relative_to(path): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file() and not p.name.endswith(".lock")}


# --force ---------------------------------------------------------------------------------------------------


def test_force_onto_a_busy_run_refuses_and_touches_nothing(tmp_path, tiny):
    madloop.run(out=tmp_path / "r", **tiny)
    before = files(tmp_path / "r")
    with store.locked(tmp_path / "r"):  # another process is writing it
        busy = cli("run", "--force", "--out", "r", "--runs", "3", "--gens", "2", "--no-progress", cwd=tmp_path)
    assert busy.returncode == 2 and "is busy" in busy.stderr and one_error(busy)
    assert files(tmp_path / "r") == before


def test_a_users_config_json_is_not_a_run_and_force_keeps_the_users_files(tmp_path):
    out = tmp_path / "out"
    (out / "figures").mkdir(parents=True)
    (out / "config.json").write_text('{"lr": 0.1}')
    (out / "figures" / "mine.png").write_bytes(b"precious")
    before = files(out)
    plain = cli("run", "--out", "out", "--runs", "3", "--gens", "2", "--no-progress", cwd=tmp_path)
    assert plain.returncode == 2 and "holds no run" in plain.stderr
    forced = cli("run", "--force", "--out", "out", "--runs", "3", "--gens", "2", "--no-progress", cwd=tmp_path)
    assert forced.returncode == 2 and "config.json" in forced.stderr and "never overwrites" in forced.stderr
    assert files(out) == before and sorted(p.name for p in out.iterdir()) == ["config.json", "figures"]


def test_force_beside_a_users_files_and_onto_a_run_removes_only_madloops_files(tmp_path):
    out = tmp_path / "out"
    (out / "figures").mkdir(parents=True)
    (out / "notes.txt").write_text("keep me")
    (out / "figures" / "mine.png").write_bytes(b"precious")
    run = ["run", "--force", "--out", "out", "--runs", "3", "--gens", "2", "--no-progress"]
    assert cli(*run, cwd=tmp_path).returncode == 0
    assert store.is_run_dir(out) and (out / "figures" / "summary.png").is_file()
    assert cli(*run, "--seed", "1", cwd=tmp_path).returncode == 0  # replace the run with another
    assert (out / "notes.txt").read_text() == "keep me" and (out / "figures" / "mine.png").read_bytes() == b"precious"
    assert json.loads((out / "config.json").read_text())["config"]["seed"] == 1


# Signals ---------------------------------------------------------------------------------------------------


def _start_and_wait(tmp_path, name):
    """Start the slow run, wait until both workers have stored a few generations; return it and its workers."""
    proc = subprocess.Popen([sys.executable, "-m", "madloop.cli", "run", *SLOW, "--out", name], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    parts = tmp_path / name / store.PARTS
    deadline = time.time() + 120
    while len(list(parts.glob("state-*.npz"))) < 2 or len(list(parts.glob("moments-*"))) < 8:
        assert proc.poll() is None and time.time() < deadline, "the run ended before it could be stopped"
        time.sleep(0.05)
    workers = [p for p in psutil.Process(proc.pid).children(recursive=True) if "loky" in " ".join(p.cmdline())]
    assert workers
    return proc, workers


def _gone_within(processes, seconds):
    _, alive = psutil.wait_procs(processes, timeout=seconds)
    return not alive


def _resume_equals_whole(tmp_path, name):
    assert cli("run", *SLOW, "--out", "whole", cwd=tmp_path).returncode == 0
    done = cli("resume", name, "--jobs", "2", "--no-progress", "--no-plot", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "whole" / "table.parquet")[VALUES],
                                  pd.read_parquet(tmp_path / name / "table.parquet")[VALUES])


def test_sigterm_stops_the_workers_logs_stopped_exits_143_and_resumes_identically(tmp_path):
    proc, workers = _start_and_wait(tmp_path, "r")
    proc.send_signal(signal.SIGTERM)  # to the main process alone, as a scheduler's preemption may
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "madloop resume" in err and "Traceback" not in err
    assert _gone_within(workers, 10)
    assert "stopped" in (tmp_path / "r" / "log.txt").read_text()
    assert not store.is_finished(tmp_path / "r")
    _resume_equals_whole(tmp_path, "r")


def test_sigkill_of_the_main_process_alone_stops_its_workers_and_resume_never_runs_beside_them(tmp_path):
    proc, workers = _start_and_wait(tmp_path, "r")
    proc.kill()
    proc.communicate(timeout=60)
    assert _gone_within(workers, 10), "workers of a killed run went on writing on their own"
    stored = len(list((tmp_path / "r" / store.PARTS).glob("moments-*")))
    assert stored < 2 * 61, "the workers finished the run without their main process"
    _resume_equals_whole(tmp_path, "r")


SLOW_SWEEP = ("import madloop\n"
              "madloop.sweep({'lam': [1.0, 0.7]}, out='sw', point_jobs=2, runs=12, gens=30, n_eval=300, n_ref=300, "
              "path='samples', metrics=('w2',), loop='augmentation', checkpoint_s=0)")


def test_sigkill_of_a_sweep_stops_its_point_workers(tmp_path):
    """A sweep's points run in worker processes of their own; killing the sweep's process kills them too."""
    proc = subprocess.Popen([sys.executable, "-c", SLOW_SWEEP], cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while sum(len(list((tmp_path / "sw" / f"point-00{i}" / store.PARTS).glob("moments-*"))) for i in (0, 1)) < 6:
        assert proc.poll() is None and time.time() < deadline, "the sweep ended before it could be killed"
        time.sleep(0.05)
    workers = [p for p in psutil.Process(proc.pid).children(recursive=True) if "loky" in " ".join(p.cmdline())]
    assert workers
    proc.kill()
    proc.wait()
    assert _gone_within(workers, 10), "the points of a killed sweep went on writing on their own"


def test_resume_refuses_while_a_worker_still_holds_a_chunk(tmp_path, tiny):
    madloop.run(out=tmp_path / "r", **tiny)
    (tmp_path / "r" / store.SUMMARY).unlink()  # looks unfinished
    (tmp_path / "r" / store.PARTS).mkdir()
    with store.chunk_locked(tmp_path / "r", 0):
        with pytest.raises(madloop.MadloopError, match="chunk 0 of .* is busy"):
            runner.resume(tmp_path / "r")


# Lost part files -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CrashingLate(Gaussian):
    """The Gaussian family, but while the file ``flag`` exists the chunk holding run 0 dies in generation 4,
    once the chunk starting at run 3 (where there is one) has finished in the other worker (``flag`` is a field, not a class
    attribute, so that it reaches the worker processes)."""

    flag: str = ""

    def fit(self, data, rng):
        if rng.gen == 4 and 0 in rng.runs and os.path.exists(self.flag):
            other = Path(self.flag).parent / "crashed" / store.PARTS
            deadline = time.time() + 120
            while (rng.total or 0) > 3 and not list(other.glob(f"{store.CONVERGENCE.prefix}-r00000003-*")) \
                    and time.time() < deadline:
                time.sleep(0.05)
            raise RuntimeError("simulated crash")
        return super().fit(data, rng)


@pytest.mark.parametrize("lost", ["rows-r00000000-g000002", "moments-r00000003-g000001"])
def test_a_part_file_lost_before_resume_is_redone(tmp_path, tiny, lost):
    madloop.MODELS.register("crashing-late", replace=True)(CrashingLate)
    flag = tmp_path / "crash"
    settings = {**tiny, "gens": 5, "model": "crashing-late", "flag": str(flag)}
    whole = madloop.run(out=tmp_path / "whole", **settings)
    flag.touch()  # chunk 0 (runs 0-2) dies; chunk 3 (runs 3-5) finishes
    with pytest.raises(RuntimeError, match="simulated crash"):
        madloop.execute(whole.config, out=tmp_path / "crashed", jobs=2, checkpoint_s=0)
    flag.unlink()
    assert store.chunk_done(tmp_path / "crashed", 3) and not store.chunk_done(tmp_path / "crashed", 0)
    (tmp_path / "crashed" / store.PARTS / f"{lost}.parquet").unlink()  # deleted, or lost with a disk
    resumed = runner.resume(tmp_path / "crashed")
    pd.testing.assert_frame_equal(resumed.table[VALUES], whole.table[VALUES])
    pd.testing.assert_frame_equal(resumed.summary(), whole.summary())
    assert "are missing; running the chunk again" in (tmp_path / "crashed" / "log.txt").read_text()


# Checkpoints -----------------------------------------------------------------------------------------------


class Bomb:
    def __reduce__(self):
        return (os.mkdir, ("BOOM",))


def test_a_checkpoint_cannot_run_code_when_read(tmp_path, tiny, monkeypatch):
    monkeypatch.chdir(tmp_path)
    madloop.run(out=tmp_path / "r", **tiny)
    (tmp_path / "r" / store.SUMMARY).unlink()
    (tmp_path / "r" / store.PARTS).mkdir()
    store.checkpoint_file(tmp_path / "r", 0).write_bytes(pickle.dumps(Bomb()))
    with pytest.raises(madloop.MadloopError, match="corrupted"):
        runner.resume(tmp_path / "r")
    assert not (tmp_path / "BOOM").exists()


def test_a_checkpoint_builds_only_dataclasses_of_loaded_modules(tmp_path):
    import io

    for name in ("subprocess:Popen", "os:system", "madloop.samples:np"):
        tree = json.dumps({"class": name, "fields": {"args": "touch BOOM"}}).encode()
        buffer = io.BytesIO()
        np.savez(buffer, **{snapshot.TREE: np.frombuffer(tree, dtype=np.uint8)})
        with pytest.raises(snapshot.SnapshotError, match="not a dataclass"):
            snapshot.loads(buffer.getvalue())


def test_snapshots_round_trip_fitted_models_exactly():
    import torch

    from madloop.rng import RunRNG

    spec = madloop.MODELS["ddpm"](epochs=2, width=16)
    data = madloop.Samples(np.random.default_rng(0).normal(size=(2, 64, 2)))
    model = spec.fit(data, RunRNG(0, range(2), 1, "train"))
    guided = spec.guided(model, model, 1.5, (0.2, 0.8))
    tree = {"ddpm": model, "sims": guided, "n": np.int64(3), "t": torch.ones(2, dtype=torch.bfloat16), "nan": float("nan")}
    back = snapshot.loads(snapshot.dumps(tree))
    for name in ("ddpm", "sims"):
        a = tree[name].sample(50, RunRNG(0, range(2), 1, "synth")).x
        b = back[name].sample(50, RunRNG(0, range(2), 1, "synth")).x
        np.testing.assert_array_equal(a, b)
    assert back["n"] == 3 and isinstance(back["n"], np.int64) and back["t"].dtype == torch.bfloat16 and np.isnan(back["nan"])


# Disk, memory, device --------------------------------------------------------------------------------------


def test_a_full_disk_at_the_final_write_is_one_line_and_logged_as_stopped(tmp_path, tiny, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store, "finish", full)
    with pytest.raises(madloop.MadloopError, match="disk .* is full"):
        madloop.run(out=tmp_path / "r", **tiny)
    assert "stopped: OSError" in (tmp_path / "r" / "log.txt").read_text()
    monkeypatch.undo()
    assert len(runner.resume(tmp_path / "r").table)  # and nothing was lost


def test_sizes_that_cannot_fit_in_memory_are_refused_before_anything_is_written(tmp_path):
    big = cli("run", "--runs", "100000000", "--n-real", "1000000", "--path", "samples", "--out", "big", "--no-progress", cwd=tmp_path)
    assert big.returncode == 2 and "GiB" in big.stderr and "lower n_real" in big.stderr and one_error(big)
    rows = cli("run", "--runs", "100000000", "--gens", "100000", "--store-runs", "100000000", "--out", "rows", "--no-progress",
               cwd=tmp_path)
    assert rows.returncode == 2 and "--store-runs" in rows.stderr
    assert not (tmp_path / "big").exists() and not (tmp_path / "rows").exists()


def test_many_runs_go_in_chunks_that_fit_in_memory():
    work = runner.chunks(10**8, 2, most=10**6)
    assert len(work) == 100 and work[0] == range(0, 10**6) and work[-1].stop == 10**8
    assert all(r.start % 1000 == 0 for r in work) and sum(len(r) for r in work) == 10**8
    assert runner.chunks(5000, 2, most=10**6) == runner.chunks(5000, 2)  # small runs: as before


def test_a_gpu_that_is_not_there_is_one_line_and_nothing_is_written(tmp_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    res = cli("run", "--model", "ddpm", "--device", "cuda", "--runs", "2", "--gens", "1", "--out", "g", "--no-progress",
              cwd=tmp_path)
    assert res.returncode == 2 and "no CUDA GPU" in res.stderr and one_error(res)
    assert not (tmp_path / "g").exists()


def test_an_out_under_a_file_or_where_nothing_can_be_made_is_one_line(tmp_path):
    (tmp_path / "afile").write_text("x")
    for out in ("afile/run", "/proc/madloop-cannot-be-here"):
        res = cli("run", "--runs", "3", "--gens", "2", "--out", out, "--no-progress", cwd=tmp_path)
        assert one_error(res) and "cannot create the run directory" in res.stderr
    assert (tmp_path / "afile").read_text() == "x"


def test_load_reports_an_unfinished_or_damaged_table_as_incomplete(tmp_path, tiny):
    whole = madloop.run(out=tmp_path / "r", **tiny)
    assert whole.incomplete is None and madloop.load(tmp_path / "r").incomplete is None
    table = pd.read_parquet(tmp_path / "r" / "table.parquet")
    table[~((table.gen == 2) & (table.run == 1))].to_parquet(tmp_path / "r" / "table.parquet")  # rows lost
    with pytest.warns(UserWarning, match="finished but damaged: .* lack per-run rows, the first: generation 2"):
        assert "generation 2" in madloop.load(tmp_path / "r").incomplete
    flag = tmp_path / "crash"
    madloop.MODELS.register("crashing-late", replace=True)(CrashingLate)
    flag.touch()
    with pytest.raises(RuntimeError):
        madloop.run(out=tmp_path / "crashed", model="crashing-late", flag=str(flag), **{**tiny, "runs": 2, "gens": 5})
    with pytest.warns(UserWarning, match="not finished .* generation 4"):
        assert madloop.load(tmp_path / "crashed").incomplete


def test_results_files_get_the_usual_permissions(tmp_path, tiny):
    madloop.run(out=tmp_path / "r", **tiny)
    umask = os.umask(0)
    os.umask(umask)
    for name in (store.CONFIG, store.SUMMARY, "table.parquet", store.MARKER):
        assert (tmp_path / "r" / name).stat().st_mode & 0o777 == 0o666 & ~umask, name  # not mkstemp's 0600
