"""Backends: ray gives the same table as loky, bit for bit (dask: tests/test_resume.py)."""

import subprocess
import sys

import pandas as pd
import pytest

VALUES = ["run", "gen", "metric", "value"]


def test_ray_and_loky_give_identical_tables(tmp_path):
    pytest.importorskip("ray")
    run = [sys.executable, "-m", "madloop", "run", "--runs", "10", "--gens", "3", "--path", "samples", "--n-real", "20",
           "--n-synth", "20", "--metrics", "w2,gauss_w2", "--jobs", "2", "--no-plot", "--no-progress"]
    for backend in ("loky", "ray"):
        done = subprocess.run([*run, "--backend", backend, "--out", backend], cwd=tmp_path, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, done.stderr
    tables = [pd.read_parquet(tmp_path / backend / "table.parquet")[VALUES] for backend in ("loky", "ray")]
    pd.testing.assert_frame_equal(*tables)
    assert sorted(set(tables[0].run)) == list(range(10))
