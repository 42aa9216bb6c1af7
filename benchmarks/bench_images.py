"""The image tier's speed on a CPU: the unet family's training and sampling, grouped runs vs a loop over runs,
and the share of an image generation spent in metrics (issue 15).

    python benchmarks/bench_images.py            # writes benchmarks/RESULTS_images.md (a few minutes)
    python benchmarks/bench_images.py --quick    # smaller budgets; prints only

Everything runs on one thread, as the unet family does on a CPU (madloop.threads: parallelism comes from worker
processes). Rows:
- peak: the machine's float32 rate on one thread, a 1024 x 1024 matmul and a 3x3 convolution of the size the
  U-Net's first level runs (64 images, 16 -> 16 channels, 8x8), in GFLOP/s;
- training: images per second per run for R = 1, 4, 16 runs computed as one grouped network (runs_per_pass = 0)
  and as a loop over runs (runs_per_pass = 1), the default digits U-Net (8x8, 16 channels, levels 1, 2); the
  network's FLOPs per training image (forward and backward, counted by torch.utils.flop_counter) give the
  share of the matmul peak that training reaches;
- sampling: network evaluations per second (Heun: 2 x steps - 1 per image) for the same layouts at R = 4;
- metrics: one generation of `madloop run --data digits` (defaults: 500 images per run, R = 4) split into
  training and sampling time against metric time (FID, KID, precision, recall, classes), from the run's table.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import madloop
from madloop.images import DigitsData
from madloop.models.unet import UNet
from madloop.rng import RunRNG

OUT = Path(__file__).with_name("RESULTS_images.md")
RUNS = (1, 4, 16)
LAYOUTS = {"grouped": 0, "loop": 1}


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def peaks(repeats: int) -> dict[str, float]:
    """GFLOP/s of a large matmul and of the U-Net's typical convolution, one thread."""
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    x, w = torch.randn(64, 16, 8, 8), torch.randn(16, 16, 3, 3)
    mm = 2 * 1024**3 / best(lambda: torch.mm(a, b), repeats)
    conv = 2 * 64 * 16 * 16 * 9 * 64 / best(lambda: [torch.nn.functional.conv2d(x, w, padding=1) for _ in range(20)], repeats) * 20
    return {"matmul": mm / 1e9, "conv": conv / 1e9}


def flops_per_image(spec: UNet, data) -> float:
    """Forward + backward FLOPs of one training image, counted on one run's minibatch."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    quick = UNet(**{**spec.__dict__, "images": spec.batch, "ema": 0.0, "warmup": 0})
    with counter:
        quick.fit(data.runs([0]), RunRNG(0, range(1), 1, "bench"))
    return counter.get_total_flops() / spec.batch


def training(spec: UNet, source, images: int, repeats: int) -> list[dict]:
    rows = []
    for R in RUNS:
        data = source.sample(500, RunRNG(0, range(R), 0, "bench-data"))
        for layout, per_pass in LAYOUTS.items():
            s = UNet(**{**spec.__dict__, "images": images, "runs_per_pass": per_pass})
            seconds = best(lambda: s.fit(data, RunRNG(1, range(R), 1, "bench")), repeats)
            rows.append(dict(runs=R, layout=layout, seconds=seconds, per_run=images / seconds))
    return rows


def sampling(spec: UNet, source, n: int, repeats: int) -> list[dict]:
    R, rows = 4, []
    data = source.sample(64, RunRNG(0, range(R), 0, "bench-data"))
    model = UNet(**{**spec.__dict__, "images": spec.batch}).fit(data, RunRNG(1, range(R), 1, "bench"))
    for layout, per_pass in LAYOUTS.items():
        m = type(model)(UNet(**{**spec.__dict__, "runs_per_pass": per_pass}), model.weights, model.shape)
        seconds = best(lambda: m.sample(n, RunRNG(2, range(R), 1, "bench")), repeats)
        rows.append(dict(layout=layout, seconds=seconds, evals=R * n * (2 * spec.steps - 1) / seconds))
    return rows


def metric_share(quick: bool) -> dict:
    settings = dict(data="digits", runs=4, gens=1, jobs=1)
    if quick:
        settings.update(images=2048)
    with tempfile.TemporaryDirectory() as tmp:
        result = madloop.run(out=Path(tmp) / "r", **settings)
    rows = result.table[result.table.gen == 1].drop_duplicates("run")
    train, metrics = rows.train_s.iloc[0], rows.eval_s.iloc[0]
    return dict(train=train, metrics=metrics, share=metrics / (train + metrics))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    repeats, images, n = (1, 512, 64) if args.quick else (2, 2048, 256)
    spec, source = UNet(), DigitsData()
    start = time.perf_counter()
    peak = peaks(3)
    flops = flops_per_image(spec, source.sample(64, RunRNG(0, range(1), 0, "bench-data")))
    train = training(spec, source, images, repeats)
    sample = sampling(spec, source, n, repeats)
    share = metric_share(args.quick)
    lines = [
        "# Image tier: the unet family on a CPU (benchmarks/bench_images.py)", "",
        f"Machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, one thread; shared 2-core "
        f"machine, so compare ratios within this file. Took {time.perf_counter() - start:.0f} s.", "",
        f"Peak float32 on one thread: matmul 1024^3 {peak['matmul']:.1f} GFLOP/s; the U-Net's first-level 3x3 convolution "
        f"{peak['conv']:.1f} GFLOP/s.", "",
        f"Default digits U-Net (8x8, channels 16, levels (1, 2), batch {spec.batch}): {flops / 1e6:.1f} MFLOP per "
        f"training image (forward + backward).", "",
        f"## Training ({images} images per run, best of {repeats})", "",
        "| runs R | layout | seconds | images/s per run | GFLOP/s | share of matmul peak | grouped vs loop, per run |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in train:
        other = next(o for o in train if o["runs"] == r["runs"] and o["layout"] == "loop")
        gflops = r["per_run"] * r["runs"] * flops / 1e9
        ratio = f"{r['per_run'] / other['per_run']:.2f}x" if r["layout"] == "grouped" else ""
        lines.append(f"| {r['runs']} | {r['layout']} | {r['seconds']:.2f} | {r['per_run']:.0f} | {gflops:.2f} | "
                     f"{gflops / peak['matmul']:.0%} | {ratio} |")
    lines += ["", f"## Sampling (R = 4 runs, {n} images per run, {2 * spec.steps - 1} network evaluations each)", "",
              "| layout | seconds | network evaluations/s |", "|---|---|---|"]
    lines += [f"| {r['layout']} | {r['seconds']:.2f} | {r['evals']:.0f} |" for r in sample]
    lines += ["", "## One generation of `madloop run --data digits` (R = 4, one worker)", "",
              f"training and sampling {share['train']:.1f} s, metrics {share['metrics']:.2f} s: metrics take "
              f"{share['share']:.1%} of the generation (target: at most 10%).", ""]
    text = "\n".join(lines)
    print(text)
    if not args.quick:
        OUT.write_text(text)
        print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
