"""SIMS's auxiliary U-Net fine-tuned whole or decoder-only (issue 16): what sharing the encoder saves.

    python benchmarks/bench_sims_images.py            # writes benchmarks/RESULTS_sims_images.md (a few minutes)
    python benchmarks/bench_sims_images.py --quick    # smaller sizes; prints only

With ``--aux-decoder-only`` the auxiliary copy fine-tunes its decoder half only, so its encoder weights are the
base's and a guided sampler step runs the encoder once and the two decoders on its features, instead of two
whole networks. Rows, for the default U-Net on 8x8 digits and on 16x16 MNIST (R = 4 runs, one thread, as on a
CPU worker; the three samplers interleaved, best of ``repeats``):
- the network's forward FLOPs per image split into encoder (embedding included) and decoder halves
  (torch.utils.flop_counter);
- network passes per guided image: the base alone 2N - 1 whole passes (Heun, N steps); guidance with a whole
  auxiliary twice that; with a shared encoder 2N - 1 encoder and 2 (2N - 1) decoder passes;
- the measured sampling time of each and the fine-tuning time of the auxiliary (B images, whole vs decoder).
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

import madloop
from madloop.models.unet import UNet, decode, encode, Weights
from madloop.rng import RunRNG

OUT = Path(__file__).with_name("RESULTS_sims_images.md")
R = 4


def halves(spec: UNet, model) -> tuple[float, float]:
    """Forward FLOPs per image of the encoder half and the decoder half (one run, a batch of 64)."""
    x = torch.zeros(1, 64, *model.shape)
    w = Weights({k: v[:1] for k, v in model.weights.items()})
    y, keep = torch.zeros(1, 64, dtype=torch.long), torch.ones(1, 64)
    with FlopCounterMode(display=False) as enc:
        features = encode(w, spec, x, torch.zeros(()), y, keep)
    with FlopCounterMode(display=False) as dec:
        decode(w, spec, *features, x.shape)
    return enc.get_total_flops() / 64, dec.get_total_flops() / 64


def measure(data: str, n: int, budget: int, repeats: int) -> dict:
    torch.set_num_threads(1)
    source = madloop.DATA[data]()
    spec = UNet(runs_per_pass=R)
    rng = RunRNG(0, range(R), 1, "bench")
    real = source.sample(256, rng.child("real"))
    base = UNet(**{**spec.__dict__, "images": 512}).fit(real, rng.child("fit"))
    base = type(base)(spec, base.weights, base.shape)
    times = {"whole fine-tune": [], "decoder fine-tune": []}
    aux = {}
    for kind, half in (("whole", False), ("decoder", True)):
        start = time.perf_counter()
        aux[kind] = spec.finetune(base, real, rng.child("tune"), budget, decoder_only=half)
        times[f"{kind} fine-tune"].append(time.perf_counter() - start)
    samplers = {"base alone": base, "whole auxiliary": spec.guided(base, aux["whole"], 1.0),
                "decoder-only auxiliary": spec.guided(base, aux["decoder"], 1.0)}
    assert samplers["decoder-only auxiliary"].shared_encoder and not samplers["whole auxiliary"].shared_encoder
    for name in samplers:
        times[name] = []
    for _ in range(repeats):  # interleaved: a busy moment of the shared machine hits all three alike
        for name, model in samplers.items():
            start = time.perf_counter()
            model.sample(n, rng.child("sample"))
            times[name].append(time.perf_counter() - start)
    enc, dec = halves(spec, base)
    return dict(data=data, shape=base.shape, enc=enc, dec=dec, steps=spec.steps, n=n, budget=budget,
                best={k: min(v) for k, v in times.items()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n, budget, repeats = (32, 256, 1) if args.quick else (256, 4096, 3)
    start = time.perf_counter()
    results = [measure(data, n, budget, repeats) for data in ("digits", "mnist")]
    lines = ["# SIMS on images: a decoder-only auxiliary shares the encoder (benchmarks/bench_sims_images.py)", "",
             f"Machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, one thread; shared "
             f"2-core machine (compare ratios within a row group). R = {R} runs, default U-Net (channels 16, levels "
             f"(1, 2)), {n} images per run, best of {repeats}. Took {time.perf_counter() - start:.0f} s.", ""]
    for r in results:
        passes = 2 * r["steps"] - 1
        whole = 2 * (r["enc"] + r["dec"])
        shared = r["enc"] + 2 * r["dec"]
        t = r["best"]
        lines += [f"## {r['data']} {r['shape'][1]}x{r['shape'][2]}", "",
                  f"Forward FLOPs per image: encoder {r['enc'] / 1e6:.2f} M, decoder {r['dec'] / 1e6:.2f} M "
                  f"(the encoder is {r['enc'] / (r['enc'] + r['dec']):.0%} of the network). Per guided sampler "
                  f"evaluation: whole auxiliary {whole / 1e6:.2f} MFLOP, shared encoder {shared / 1e6:.2f} MFLOP "
                  f"({1 - shared / whole:.0%} fewer); {passes} evaluations per image (Heun, {r['steps']} steps).", "",
                  "| sampler | encoder passes / image | decoder passes / image | seconds | vs whole auxiliary |",
                  "|---|---|---|---|---|",
                  f"| base alone | {passes} | {passes} | {t['base alone']:.2f} | {t['base alone'] / t['whole auxiliary']:.2f}x |",
                  f"| guided, whole auxiliary | {2 * passes} | {2 * passes} | {t['whole auxiliary']:.2f} | 1.00x |",
                  f"| guided, decoder-only auxiliary | {passes} | {2 * passes} | {t['decoder-only auxiliary']:.2f} | "
                  f"{t['decoder-only auxiliary'] / t['whole auxiliary']:.2f}x |", "",
                  f"Fine-tuning the auxiliary for B = {r['budget']} images per run: whole {t['whole fine-tune']:.2f} s, "
                  f"decoder only {t['decoder fine-tune']:.2f} s "
                  f"({t['decoder fine-tune'] / t['whole fine-tune']:.2f}x; one measurement each).", ""]
    text = "\n".join(lines)
    print(text)
    if not args.quick:
        OUT.write_text(text)
        print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
