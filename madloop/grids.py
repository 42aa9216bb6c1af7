"""Sample grids of image loops: the same noise and labels every generation, so the drift shows.

Each generation of a chunk that holds one of the first ``GRID_RUNS`` runs draws ``count`` images of each
such run from its model with a stream keyed at generation 0 (``Role.GRID``), so every generation starts
from the same noise and labels; generation 0 shows real images. A grid is a PNG per (generation, run) in
the run directory's ``grids`` folder, tiles sorted by label (a row per class when labelled).
``madloop grid RUN --gens 1,5,10`` puts several generations side by side (madloop.plots.grid_figure).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from madloop.rng import Role, Streams

from madloop.store import GRIDS as FOLDER, atomic_write
GRID_RUNS = 4  # grids are kept for runs 0..GRID_RUNS-1
PER_CLASS = 4  # tiles per class in a labelled grid
PAD = 1  # pixels between tiles


def file(path: Path, gen: int, run: int) -> Path:
    return Path(path) / FOLDER / f"g{gen:06d}-r{run:04d}.png"


def wanted(data) -> bool:
    """Whether a data source draws images (its ``shape`` is (C, H, W)): only image loops keep grids."""
    return len(getattr(data, "shape", ())) == 3


def count(data) -> int:
    """How many tiles a grid has: PER_CLASS per class of a labelled source, else 36."""
    classes = getattr(data, "classes", 0)
    return PER_CLASS * classes if classes else 36


def tile(x: np.ndarray, y: np.ndarray | None, columns: int) -> np.ndarray:
    """Images x (k, C, H, W) in [0, 1] as one uint8 picture of rows x ``columns`` tiles, shape (H', W') for one
    channel, (H', W', C) otherwise. Labelled images go sorted by label y down the columns (balanced labels:
    a column per class); unlabelled ones row by row."""
    k, c, h, w = x.shape
    rows = -(-k // columns)
    if y is not None:
        x = x[np.argsort(y, kind="stable")]
    canvas = np.ones((rows * (h + PAD) + PAD, columns * (w + PAD) + PAD, c))
    for i, img in enumerate(x):
        q, r = divmod(i, rows) if y is not None else divmod(i, columns)[::-1]
        top, left = PAD + r * (h + PAD), PAD + q * (w + PAD)
        canvas[top : top + h, left : left + w] = np.moveaxis(img, 0, -1)
    picture = np.rint(np.clip(canvas, 0, 1) * 255).astype(np.uint8)
    return picture[..., 0] if c == 1 else picture


def write_png(target: Path, picture: np.ndarray) -> None:
    """A uint8 picture (H, W) or (H, W, 3) as a PNG, written atomically."""
    from matplotlib.image import imsave

    target.parent.mkdir(exist_ok=True)
    cmap = "gray" if picture.ndim == 2 else None
    atomic_write(target, lambda tmp: imsave(tmp, picture, cmap=cmap, vmin=0, vmax=255, format="png"))


class Grids:
    """Writes the grids of one chunk of runs (those of its runs below GRID_RUNS)."""

    def __init__(self, cfg, parts, runs: range, path: Path):
        self.cfg, self.parts, self.path = cfg, parts, Path(path)
        self.runs = [r for r in runs if r < GRID_RUNS]
        self.streams = Streams(cfg.seed, runs, cfg.runs)
        self.count = count(parts.points)
        classes = getattr(parts.points, "classes", 0)
        self.columns = self.count // PER_CLASS if classes else 6

    def save(self, gen: int, model) -> None:
        """Generation ``gen``'s grids: the model's images (drawn with the loop's lam), real ones at gen 0."""
        if not self.runs:
            return
        rng = self.streams.at(0, Role.GRID)  # a new stream object each time: the same numbers every generation
        if model is None:
            drawn = self.parts.points.sample(self.count, rng)
        else:
            drawn = self.parts.sample_points(model, self.count, rng, self.cfg.lam)
        for i, run in enumerate(self.runs):
            y = None if drawn.y is None else drawn.y[i]
            write_png(file(self.path, gen, run), tile(drawn.x[i], y, self.columns))


def read(path: Path, gen: int, run: int) -> np.ndarray:
    """A stored grid as an array (H, W) or (H, W, C) of floats in [0, 1]."""
    from matplotlib.image import imread

    target = file(path, gen, run)
    if not target.is_file():
        return None
    picture = imread(target)[..., :3]
    return picture[..., 0] if np.allclose(picture[..., 0], picture[..., 1]) and np.allclose(picture[..., 0], picture[..., 2]) else picture


def stored(path: Path, run: int) -> list[int]:
    """The generations whose grid of ``run`` is stored."""
    return sorted(int(f.name[1:7]) for f in (Path(path) / FOLDER).glob(f"g*-r{run:04d}.png"))
