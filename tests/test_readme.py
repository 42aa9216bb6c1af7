"""Every code block in README.md runs as written, in a fresh folder, with its sizes shrunk.

Shrinking: in ```python blocks every ``runs=N`` becomes ``runs=2`` and ``gens=N`` becomes ``gens=3``;
every ``madloop run`` or ``madloop sweep`` line in a ```bash block gets ``--runs 2 --gens 3`` appended
(a repeated flag's last value wins), a SIMS, flow or GAN line also gets smaller sets and fewer epochs, an
image line a tiny U-Net, and a ``madloop study NAME`` line ``--scale ci``. ``pip
install ... &&`` prefixes are taken as done (this suite runs in the installed environment). The lines
in SKIPPED do not run here, each for the reason given.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"

SKIPPED = {
    "python -m pytest": "it is this test suite",
    "--device cuda": "it needs a GPU (and takes minutes at the paper's scale)",
}
SHRINK = " --runs 2 --gens 3"
SHRINK_SIMS = " --n-real 100 --n-synth 100 --n-eval 100 --n-ref 100 --epochs 2 --n-aux 100 --aux-epochs 2"
SHRINK_NETS = " --n-real 100 --n-synth 100 --epochs 3"  # the flow and the GAN
SHRINK_IMAGES = " --n-real 64 --n-synth 64 --n-eval 64 --n-ref 64 --images 256 --channels 8 --steps 4 --warmup 64 --ema 64"
SHRINK_STUDY = " --scale ci"


def blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", README.read_text(), flags=re.S | re.M)


def shrink_python(code: str) -> str:
    return re.sub(r"\bgens=\d+", "gens=3", re.sub(r"\bruns=\d+", "runs=2", code))


def shrink_command(line: str) -> str | None:
    """The line as it runs here, or None for a line in SKIPPED."""
    if any(key in line for key in SKIPPED):
        return None
    line = re.sub(r"\s+#\s.*$", "", line)  # the comment
    line = re.sub(r"^(pip install [^&]+&& )+", "", line)
    if re.match(r"madloop (run|sweep)\b", line):
        line += SHRINK + (SHRINK_SIMS if "--algo sims" in line else "") + (SHRINK_IMAGES if "--data digits" in line or
                                                                             "--data mnist" in line else "")
        line += SHRINK_NETS if re.search(r"--model (flow|gan)\b", line) else ""
    if re.match(r"madloop study \w", line):
        line += SHRINK_STUDY
    return line


def commands() -> list[str]:
    return [line for block in blocks("bash") for line in block.splitlines() if line.strip()]


def environment() -> dict[str, str]:
    """This interpreter's `madloop` and `python` first on PATH."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "MPLBACKEND": "Agg"}


@pytest.mark.parametrize("key", SKIPPED)
def test_skipped_lines(key):
    """Each SKIPPED key names exactly one README line, which is reported as skipped with its reason."""
    lines = [line for line in commands() if key in line]
    assert len(lines) == 1, lines
    pytest.skip(f"README line not run: {lines[0]!r}: {SKIPPED[key]}")


@pytest.mark.parametrize("index", range(len(blocks("python"))))
def test_python_blocks_run(tmp_path, index):
    code = shrink_python(blocks("python")[index])
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=environment(), capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, f"README python block {index}:\n{code}\n{done.stderr}"


@pytest.mark.long
def test_bash_blocks_run_in_order(tmp_path):
    """The lines of all bash blocks run one after another in one folder (later lines use earlier results), with
    the ```toml blocks whose first line names a file (``# samplers.toml``) written there first."""
    for block in blocks("toml"):
        name = re.match(r"# (\S+\.toml)\n", block)
        if name:
            (tmp_path / name.group(1)).write_text(block)
    for line in commands():
        command = shrink_command(line)
        if command is None:
            continue
        done = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=environment(), capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, f"README line: {line}\nran as: {command}\n{done.stderr}"
