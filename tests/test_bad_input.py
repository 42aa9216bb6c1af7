"""Every bad input: one clear line on stderr, exit code 2, no traceback, nothing written."""

import contextlib
import os
import subprocess
import sys

import pytest

from madloop.cli import main


def cli(monkeypatch, capsys, *args):
    monkeypatch.setattr(sys, "argv", ["madloop", *args])
    with pytest.raises(SystemExit) as exit_:
        main()
    captured = capsys.readouterr()
    return exit_.value.code, captured.err


BAD = [
    (["--data", "mixture", "--model", "gmm", "--model.k", "50", "--n-real", "20"], "model 'gmm' needs at least 50 training points"),
    (["--n-real", "1"], "model 'gaussian' needs at least 2 training points per run; the smallest training set here has 1"),
    (["--n-synth", "1", "--budget", "1", "--accumulate"], "the smallest training set here has 1"),
    (["--loop", "spiral"], "unknown loop 'spiral'; choose from: augmentation, fresh, fully_synthetic"),
    (["--loop", "fully-synthetic"], "unknown loop 'fully-synthetic' (did you mean 'fully_synthetic'?); choose from:"),
    (["--model", "vae"], "unknown model 'vae'; choose from:"),
    (["--data", "imagenet"], "unknown data source 'imagenet' (did you mean 'images'?); choose from:"),
    (["--algo", "sims", "--model", "gmm"], "algorithm 'sims' needs a model family with finetune and guided; 'gmm' has no finetune"),
    (["--algo", "sims", "--aux-data", "real", "--n-aux", "2000", "--n-real", "100"], "sims with aux_data=real fine-tunes on n_aux real items: n_aux (2000) must be <= n_real (100)"),
    (["--algo", "sims", "--aux-images", "1000"], "the ddpm family counts its budget in epochs over the n_aux = 2000 items: aux_images (1000) must be a multiple of n_aux"),
    (["--algo", "autoguidance", "--data", "digits", "--aux-images", "8"], "autoguidance's bad model: unet needs images >= batch (at least one Adam step), got images=8"),
    (["--algo", "sims", "--aux-decoder-only"], "aux_decoder_only fine-tunes the decoder half of a U-Net; model 'ddpm' has none (use unet)"),
    (["--algo", "magic"], "unknown algorithm 'magic'; choose from:"),
    (["--metrics", "w2,fid9"], "unknown metric 'fid9' (did you mean 'fid'?); choose from:"),
    (["--runs", "0"], "runs must be a positive integer, got 0"),
    (["--gens", "-3"], "gens must be a positive integer, got -3"),
    (["--n-synth", "0"], "n_synth must be a positive integer"),
    (["--n-real", "0"], "n_real must be a positive integer"),
    (["--lam", "0"], "lam must be in (0, 1], got 0.0"),
    (["--lam", "1.2"], "lam must be in (0, 1], got 1.2"),
    (["--runs", "many"], "Invalid value for '--runs'"),
    (["--budget", "10"], "budget subsamples accumulated synthetic data: it needs accumulate"),
    (["--omegaa", "3"], "option 'omegaa' is unknown here; valid options:"),
    (["--model", "gmm", "--k", "two"], "option 'k' of model 'gmm' must be an integer (64-bit), got 'two'"),
    (["--cov", "1,2;3"], "data source 'gaussian':"),
    (["--gens", "100000000000000000000"], "gens must be an integer (64-bit), got 100000000000000000000"),
    (["--config", "."], "config file . is a directory; give a .toml or .json file"),
    (["--data", "mixture", "--radius", "-3"], "data source 'mixture': mixture needs a finite std > 0 and radius > 0"),
    (["--data", "mixture", "--radius", "-3", "--std", "NaN"], "option 'std' of data source 'mixture' must be a finite number, got nan"),
    (["--mean", "Infinity,0"], "option 'mean' of data source 'gaussian' must be a list of finite numbers, got (inf, 0)"),
    (["--model", "gmm", "--reg", "NaN"], "option 'reg' of model 'gmm' must be a finite number, got nan"),
    (["--model", "ddpm", "--lr", "Infinity"], "option 'lr' of model 'ddpm' must be a finite number, got inf"),
    (["--preset", "nope"], "unknown preset 'nope'; choose from:"),
    (["--config", "missing.toml"], "config file missing.toml does not exist"),
    (["--data", "file", "--file", "nowhere.npy"], "data file nowhere.npy does not exist"),
    (["--data", "file"], "needs --file pointing to"),
    (["--path", "fast"], "path must be auto, exact or samples"),
    (["--model", "gmm", "--path", "exact"], "path 'exact' needs model gaussian"),
]


@pytest.mark.parametrize("args, message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_flags(monkeypatch, capsys, tmp_path, args, message):
    monkeypatch.chdir(tmp_path)
    code, err = cli(monkeypatch, capsys, "run", *args, "--out", "out")
    assert code == 2
    assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists() and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("text, message", [
    ("gens = ", "is malformed"),
    ("gens = 3\nfrobnicate = 1\n", "option 'frobnicate' is unknown"),
    ("[model_options]\nunbiased = 3\n", "option 'unbiased' of model 'gaussian' must be true or false, got 3"),
    ('accumulate = "no"\n', "accumulate must be true or false, got 'no'"),
    ("lam = true\n", "lam must be a finite number, got True"),
    ("seed = true\n", "seed must be an integer (64-bit), got True"),
    ("runs = 2.0\n", "runs must be an integer (64-bit), got 2.0"),
    ("lam = nan\n", "lam must be a finite number, got nan"),
    ('metrics = "w2"\n', "metrics must be a list of strings, got 'w2'"),
    ('data = "mixture"\n[data_options]\nstd = inf\n', "option 'std' of data source 'mixture' must be a finite number, got inf"),
    ("[model_options]\nwidth = 3\n", "model 'gaussian' has no option width"),
])
def test_bad_config_files(monkeypatch, capsys, tmp_path, text, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.toml").write_text(text)
    code, err = cli(monkeypatch, capsys, "run", "--config", "c.toml", "--out", "out")
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()


def test_nan_and_inf_get_one_message_however_spelled(monkeypatch, capsys, tmp_path):
    # A flag's "NaN" and "Infinity" parse as numbers, "nan" and "inf" stay text: both are refused as not finite.
    monkeypatch.chdir(tmp_path)
    for spelling in ("nan", "NaN", "inf", "Infinity", "-Infinity"):
        code, err = cli(monkeypatch, capsys, "run", "--algo", "sims", "--omega", spelling, "--out", "out")
        assert code == 2 and err.startswith("error: option 'omega' of algorithm 'sims' must be a finite number, got "), err
        assert err.count("\n") == 1 and not (tmp_path / "out").exists()


def test_data_sources_check_their_own_options():
    from madloop.data import GaussianData, MixtureData

    for bad in (dict(std=float("nan")), dict(std=float("inf")), dict(radius=-3.0), dict(radius=float("nan"))):
        with pytest.raises(ValueError, match="mixture needs a finite std > 0 and radius > 0"):
            MixtureData(**bad)
    with pytest.raises(ValueError, match="mixture means must be finite"):
        MixtureData(means=((0.0, 0.0), (float("inf"), 1.0)))
    with pytest.raises(ValueError, match="gaussian data needs a finite mean and cov"):
        GaussianData(mean=(float("inf"), 0.0))
    with pytest.raises(ValueError, match="gaussian data needs a finite mean and cov"):
        GaussianData(cov=((float("nan"), 0.0), (0.0, 1.0)))


def test_an_existing_run_is_not_overwritten_without_force(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    tiny = ["--runs", "2", "--gens", "2", "--n-eval", "20", "--n-ref", "20", "--no-progress", "--no-plot"]
    assert cli(monkeypatch, capsys, "run", *tiny, "--out", "out")[0] == 0
    before = (tmp_path / "out" / "table.parquet").read_bytes()
    code, err = cli(monkeypatch, capsys, "run", *tiny, "--seed", "4", "--out", "out")
    assert code == 2 and "already holds a run" in err and "--force" in err
    assert (tmp_path / "out" / "table.parquet").read_bytes() == before
    assert cli(monkeypatch, capsys, "run", *tiny, "--seed", "4", "--out", "out", "--force")[0] == 0
    assert (tmp_path / "out" / "table.parquet").read_bytes() != before


def test_a_non_empty_folder_that_is_not_a_run_is_refused(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "thesis.tex").write_text("precious")
    code, err = cli(monkeypatch, capsys, "run", "--out", "out")
    assert code == 2 and "is not empty" in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["thesis.tex"]


def test_bad_run_directories_for_plot(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    code, err = cli(monkeypatch, capsys, "plot", "nowhere")
    assert code == 2 and "not a madloop run directory" in err
    (tmp_path / "newer").mkdir()
    (tmp_path / "newer" / "config.json").write_text('{"format": 99, "config": {}}')
    code, err = cli(monkeypatch, capsys, "plot", "newer")
    assert code == 2 and "newer madloop" in err


def test_bad_run_directories_and_files(monkeypatch, capsys, tmp_path):
    import madloop
    from madloop import store

    monkeypatch.chdir(tmp_path)
    run = ["run", "--runs", "3", "--gens", "2", "--no-progress", "--no-plot"]
    assert cli(monkeypatch, capsys, *run, "--out", "r")[0] == 0
    # A corrupted config.json.
    (tmp_path / "r" / "config.json").write_text("{not json")
    code, err = cli(monkeypatch, capsys, "plot", "r")
    assert code == 2 and "config.json is corrupted" in err
    # A corrupted checkpoint is reported, never skipped.
    assert cli(monkeypatch, capsys, *run, "--out", "c")[0] == 0
    (tmp_path / "c" / "summary.csv").unlink()
    (tmp_path / "c" / store.PARTS).mkdir()
    (tmp_path / "c" / store.PARTS / "state-r00000000.npz").write_bytes(b"garbage")
    code, err = cli(monkeypatch, capsys, "resume", "c", "--no-progress")
    assert code == 2 and "checkpoint" in err and "corrupted" in err and "delete it" in err
    # Not a run at all.
    code, err = cli(monkeypatch, capsys, "resume", "nowhere")
    assert code == 2 and "not a madloop run or sweep directory" in err
    assert madloop  # imported for the side effect of registering components


@pytest.mark.parametrize("args, message", [
    (["--lam", "1"], "a sweep needs at least one axis"),
    (["--lam", "1,2"], "lam must be in (0, 1], got 2"),
    (["--lam", "1,0.5", "--backend", "spark"], "unknown backend 'spark'; choose from: loky, dask, ray"),
    (["--lam", "1,0.5", "--scheduler", "tcp://127.0.0.1:9"], "--scheduler goes with --backend dask"),
])
def test_bad_sweeps(monkeypatch, capsys, tmp_path, args, message):
    monkeypatch.chdir(tmp_path)
    code, err = cli(monkeypatch, capsys, "sweep", "--out", "s", "--runs", "2", "--gens", "2", *args)
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "s").exists()


def test_a_sweep_folder_is_not_reused_without_force(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    sweep = ["sweep", "--out", "s", "--runs", "2", "--gens", "2", "--lam", "1,0.5"]
    assert cli(monkeypatch, capsys, *sweep)[0] == 0
    code, err = cli(monkeypatch, capsys, *sweep)
    assert code == 2 and "already holds a sweep; resume it with `madloop resume s`" in err


def test_a_missing_optional_backend_says_how_to_install_it(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "ray", None)  # as if ray were not installed
    code, err = cli(monkeypatch, capsys, "run", "--runs", "2", "--gens", "2", "--backend", "ray", "--out", "o")
    assert code == 2 and "pip install 'madloop[ray]'" in err
    assert not (tmp_path / "o").exists()


# ----------------------------------------------------------------------------------------------------------
# Issue 32: inputs that ended in a traceback or a silent wrong answer.


def one_line_error(code, err, *messages):
    """Exit code 2 and one `error:` line on stderr, after at most the line a started run prints first."""
    lines = [line for line in err.splitlines() if not line.startswith("madloop: ")]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    for message in messages:
        assert message in err, err


def damaged_files(tmp_path):
    """A corrupt and a truncated .npz, a folder with non-PNG bytes named .png, and one with a truncated PNG."""
    import numpy as np
    from PIL import Image

    (tmp_path / "corrupt.npz").write_bytes(b"not a zip archive")
    np.savez(tmp_path / "whole.npz", x=np.zeros((40, 8, 8), np.uint8))
    whole = (tmp_path / "whole.npz").read_bytes()
    (tmp_path / "truncated.npz").write_bytes(whole[: len(whole) // 2])
    for name in ("garbage", "cut"):
        (tmp_path / name / "a").mkdir(parents=True)
    (tmp_path / "garbage" / "a" / "0.png").write_bytes(b"these bytes are no PNG")
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)).save(tmp_path / "full.png")
    png = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut" / "a" / "0.png").write_bytes(png[: len(png) // 2])


@pytest.mark.parametrize("data, file, message", [
    ("images", "corrupt.npz", "corrupt.npz is not an .npz archive"),
    ("images", "truncated.npz", "truncated.npz is not an .npz archive"),
    ("file", "corrupt.npz", "corrupt.npz is not an .npz archive"),
    ("file", "truncated.npz", "truncated.npz is not an .npz archive"),
    ("images", "garbage", "0.png is not a readable PNG image"),
    ("images", "cut", "0.png is not a readable PNG image"),
])
def test_damaged_data_files_fail_in_one_line(monkeypatch, capsys, tmp_path, data, file, message):
    damaged_files(tmp_path)
    monkeypatch.chdir(tmp_path)
    one_line_error(*cli(monkeypatch, capsys, "run", "--data", data, "--file", file, "--out", "out"), message)
    assert not (tmp_path / "out").exists()


def madloop_exceptions() -> set[type]:
    """Every exception class that madloop's modules define."""
    import importlib
    import pkgutil

    import madloop

    found = set()
    for info in pkgutil.walk_packages(madloop.__path__, "madloop."):
        if info.name == "madloop.__main__":  # importing it runs the command line
            continue
        module = importlib.import_module(info.name)
        found |= {v for v in vars(module).values()
                  if isinstance(v, type) and issubclass(v, BaseException) and v.__module__ == info.name}
    return found


def test_every_madloop_exception_survives_a_worker_process():
    """joblib sends a worker's exception back pickled; one that cannot be rebuilt broke the whole pool."""
    import pickle

    import pandas as pd

    from madloop.cli import Interrupted
    from madloop.errors import MadloopError, Stopped
    from madloop.measure import Diverged
    from madloop.snapshot import SnapshotError

    rows = pd.DataFrame({"run": [3], "gen": [2], "metric": ["failed"], "value": [float("nan")]})
    examples = [MadloopError("bad"), Stopped(15), Diverged("generation 2: run 3 diverged", rows), SnapshotError("bad"),
                Interrupted()]
    assert {type(e) for e in examples} == madloop_exceptions()  # a new exception class needs a line here
    for error in examples:
        back = pickle.loads(pickle.dumps(error))
        assert type(back) is type(error) and str(back) == str(error) and vars(back).keys() == vars(error).keys()
    assert pickle.loads(pickle.dumps(examples[1])).signum == 15
    pd.testing.assert_frame_equal(pickle.loads(pickle.dumps(examples[2])).rows, rows)


def test_a_model_that_diverges_in_two_workers_stops_in_one_line_and_records_every_chunk(monkeypatch, capsys, tmp_path):
    import pandas as pd

    monkeypatch.chdir(tmp_path)
    code, err = cli(monkeypatch, capsys, "run", "--model", "ddpm", "--algo", "sims", "--loop", "augmentation", "--omega", "1e9",
                    "--runs", "4", "--gens", "3", "--n-real", "50", "--n-synth", "50", "--n-eval", "50", "--n-ref", "50",
                    "--n-aux", "50", "--epochs", "2", "--aux-images", "100", "--jobs", "2", "--out", "out", "--no-progress")
    one_line_error(code, err, "the model diverged", "2 of 2 chunks of runs diverged")
    rows = pd.concat(pd.read_parquet(f) for f in (tmp_path / "out" / "parts").glob("rows-*.parquet"))
    assert sorted(rows[rows.metric == "failed"].run) == [0, 1, 2, 3]


@pytest.mark.parametrize("args", [
    ["run", "--runs", "5", "--gens", "2", "--out", "a" * 300],
    ["run", "--runs", "5", "--gens", "2", "--out", "/".join(["d" * 200] * 25)],
    ["resume", "a" * 300],
])
def test_out_names_too_long_fail_in_one_line(monkeypatch, capsys, tmp_path, args):
    monkeypatch.chdir(tmp_path)
    one_line_error(*cli(monkeypatch, capsys, *args))
    assert not any(tmp_path.iterdir())


@contextlib.contextmanager
def read_only(folder):
    """``folder`` read-only: a read-only bind mount where this process may mount (root ignores file modes),
    else its modes without write permission."""
    if os.geteuid() != 0:
        modes = {p: p.stat().st_mode for p in [folder, *folder.rglob("*")]}
        for p in modes:
            p.chmod(modes[p] & ~0o222)
        try:
            yield
        finally:
            for p, mode in modes.items():
                p.chmod(mode)
        return
    mount = subprocess.run(["mount", "--bind", folder, folder], capture_output=True)
    if mount.returncode or subprocess.run(["mount", "-o", "remount,ro,bind", folder], capture_output=True).returncode:
        subprocess.run(["umount", folder], capture_output=True)
        pytest.skip("root without permission to mount: cannot make a read-only folder")
    try:
        yield
    finally:
        subprocess.run(["umount", folder], check=True)


def test_a_read_only_file_system_gets_one_line_and_loses_nothing(monkeypatch, capsys, tmp_path, tiny):
    import madloop

    monkeypatch.chdir(tmp_path)
    (tmp_path / "disk").mkdir()
    madloop.run(**tiny, out="disk/run")
    before = {p: p.read_bytes() for p in (tmp_path / "disk").rglob("*") if p.is_file()}
    with read_only(tmp_path / "disk"):
        assert len(madloop.load("disk/run").table)
        # A finished run has nothing to write: resume reopens it, and only its figure cannot be drawn there.
        one_line_error(*cli(monkeypatch, capsys, "resume", "disk/run"), "cannot write disk/run/figures")
        one_line_error(*cli(monkeypatch, capsys, "run", *flags(tiny), "--out", "disk/run", "--force"),
                       "Read-only file system" if os.geteuid() == 0 else "Permission denied")
        one_line_error(*cli(monkeypatch, capsys, "plot", "disk/run", "--out", "disk/figures"), "cannot write disk/figures")
        one_line_error(*cli(monkeypatch, capsys, "run", *flags(tiny), "--out", "disk/new"), "cannot create the run directory")
    assert {p: p.read_bytes() for p in (tmp_path / "disk").rglob("*") if p.is_file()} == before


def flags(settings):
    return [part for k, v in settings.items() for part in (f"--{k.replace('_', '-')}", str(v))]


def sixteen_classes(tmp_path):
    import numpy as np

    g = np.random.default_rng(0)
    np.savez(tmp_path / "sixteen.npz", x=g.integers(0, 256, (320, 8, 8), dtype=np.uint8), y=np.arange(320) % 16)
    np.savez(tmp_path / "unlabelled.npz", x=g.integers(0, 256, (320, 8, 8), dtype=np.uint8))
    return "sixteen.npz"


@pytest.mark.parametrize("args, message", [
    (["--data", "images", "--file", "SIXTEEN"], "data source 'images' has labels 0..15: pass --classes 16"),
    (["--data", "images", "--file", "unlabelled.npz", "--metrics", "mean_err"], "the conditional unet needs labelled images"),
    (["--metrics", "fid"], "they need an image data source"),
    (["--metrics", "w2,kid", "--data", "mixture"], "they need an image data source"),
    (["--data", "digits", "--attention", "3"], "attention at side 3 matches no level of the unet"),
])
def test_checks_that_can_run_before_the_first_write_run_there(monkeypatch, capsys, tmp_path, args, message):
    """Refused before the run directory exists, not after a start that leaves a run that cannot finish."""
    monkeypatch.chdir(tmp_path)
    sixteen = sixteen_classes(tmp_path)
    args = [sixteen if a == "SIXTEEN" else a for a in args]
    code, err = cli(monkeypatch, capsys, "run", *args, "--runs", "1", "--gens", "1", "--n-real", "100", "--n-eval", "50",
                    "--n-ref", "50", "--out", "out", "--no-progress")
    assert code == 2 and err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()


def test_an_unknown_metric_is_named_not_answered_with_nan(tmp_path, tiny):
    import madloop
    from madloop.errors import MadloopError

    result = madloop.run(**tiny, out=tmp_path / "run")
    with pytest.raises(MadloopError, match="has no metric 'nope'; it measured: .*w2"):
        result.convergence_ratio("nope")


def test_a_table_too_big_for_one_run_does_not_advise_store_runs(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    code, err = cli(monkeypatch, capsys, "run", "--gens", "100000000000", "--runs", "10", "--out", "out")
    one_line_error(code, err, "lower --gens or measure every k-th generation with --every")
    assert "--store-runs" not in err and not (tmp_path / "out").exists()
    # Where keeping fewer runs' rows does help, that is still the advice.
    code, err = cli(monkeypatch, capsys, "run", "--gens", "10000", "--runs", "100000000", "--path", "exact", "--out", "out")
    one_line_error(code, err, "--store-runs")


@pytest.mark.parametrize("work", [None, "kept"])
def test_an_interrupted_study_says_how_to_continue_it(monkeypatch, capsys, tmp_path, work):
    """Without --work its runs were in a scratch folder that is gone: `madloop resume DIR` cannot continue them."""
    import madloop.studies

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(madloop.studies, "run_study", interrupted)
    code, err = cli(monkeypatch, capsys, "study", "mad-bias", *(["--work", work] if work else []))
    assert code == 130 and "madloop resume" not in err and err.count("\n") == 1, err
    assert ("scratch folder" in err) if work is None else ("madloop study mad-bias --scale cpu --work kept" in err), err
