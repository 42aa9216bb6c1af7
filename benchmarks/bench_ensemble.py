"""Batched ensembles vs a plain loop: time per model to train and sample SPEC E1's toy DDPM.

    python benchmarks/bench_ensemble.py            # writes benchmarks/RESULTS_ensemble.md (about 12 minutes)

Per R in {1, 10, 100, 1000} runs of 1000 2D points each: the batched ensemble (madloop's ``ddpm``) against
a plain Python loop that trains one torch.nn model at a time with torch.optim.Adam on the same data and
settings (the loop at R >= 100 is timed on its first 20 models: its cost per model does not depend on R),
against the same ensemble with ``dtype="bfloat16"``, and the same ensemble as ``madloop run`` trains it on
this machine: split into the runner's chunks, each a worker process with its share of the cores, all at
once (on 2 cores up to 100 runs are shared by two single-threaded workers; 1000 runs are one chunk).
Training uses EPOCHS epochs instead of E1's 100 (time per epoch is constant, so this only scales the
totals). Throughput counts the matrix-multiply FLOPs of the forward and backward passes and is compared
with the machine's fp32 matmul rate measured in the same run: the faster of torch's BLAS and NumPy's
(madloop trains through NumPy's on a CPU). Each timing is the best of REPEATS, and the
better of PASSES passes over all configurations (the machine may be shared: a burst of load). Peak
memory: a fresh process per configuration resets its peak resident set (Linux /proc/self/clear_refs)
after importing torch and reports the peak above its resident set at that point. The load average is
recorded.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from madloop.models.diffusion import DDPM, cosine_alpha_bar
from madloop.rng import RunRNG
from madloop.runner import chunks
from madloop.samples import Samples

RUNS = (1, 10, 100, 1000)
EPOCHS, N, D, REPEATS, PASSES, LOOP_MODELS = 3, 1000, 2, 5, 2, 20
SPEC = DDPM(epochs=EPOCHS)
SPECS = {"batched": SPEC, "bf16": DDPM(epochs=EPOCHS, dtype="bfloat16")}  # bf16: the same ensemble under autocast
OUT = Path(__file__).with_name("RESULTS_ensemble.md")


def best_time(fn, repeats: int = REPEATS) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def matmul_gflops(size: int = 2048) -> dict[str, float]:
    """The machine's fp32 matmul throughput with each BLAS madloop uses (torch's, and NumPy's, which
    trains on a CPU): best of REPEATS products of two size x size matrices."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    products = {"torch": lambda: a @ b, "numpy": lambda: a.numpy() @ b.numpy()}
    for product in products.values():
        product()  # warm-up
    return {name: 2 * size**3 / best_time(product) / 1e9 for name, product in products.items()}


def layer_sizes(spec: DDPM) -> list[int]:
    return [D + 1] + [spec.width] * (spec.depth + 1) + [D]


def train_flops(spec: DDPM) -> float:
    """Matmul FLOPs per model: forward, weight gradients, and input gradients of all layers but the first."""
    s = layer_sizes(spec)
    macs = [a * b for a, b in zip(s[:-1], s[1:])]
    return 2 * (3 * sum(macs) - macs[0]) * N * spec.epochs


def sample_flops(spec: DDPM) -> float:
    s = layer_sizes(spec)
    return 2 * sum(a * b for a, b in zip(s[:-1], s[1:])) * N * (spec.steps - 1)


def data(runs: int) -> Samples:
    return Samples(RunRNG(0, range(runs), 1, "data").standard_normal(N, D))


# ----------------------------------------------------------------------------------------------------------
# The plain loop: one torch.nn model at a time, the usual way.


def plain_net(spec: DDPM) -> torch.nn.Sequential:
    s = layer_sizes(spec)
    layers = [torch.nn.Linear(s[0], s[1])]
    for a, b in zip(s[1:-2], s[2:-1]):
        layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    return torch.nn.Sequential(*layers, torch.nn.Linear(s[-2], s[-1]))


def plain_train(spec: DDPM, x: np.ndarray, seed: int) -> torch.nn.Sequential:
    g, net = np.random.default_rng(seed), plain_net(spec)
    opt = torch.optim.Adam(net.parameters(), lr=spec.lr)
    alpha_bar = torch.as_tensor(cosine_alpha_bar(spec.steps), dtype=torch.float32)
    for _ in range(spec.epochs):
        x0 = torch.as_tensor(x[g.permutation(len(x))], dtype=torch.float32)
        t = torch.as_tensor(g.integers(0, spec.steps, len(x)))
        eps = torch.as_tensor(g.standard_normal(x.shape), dtype=torch.float32)
        for i in range(0, len(x), spec.batch):
            b = slice(i, i + spec.batch)
            a = alpha_bar[t[b]][:, None]
            x_t = a.sqrt() * x0[b] + (1 - a).sqrt() * eps[b]
            opt.zero_grad()
            ((net(torch.cat([x_t, t[b, None].float()], 1)) - eps[b]) ** 2).mean().backward()
            opt.step()
    return net


def plain_sample(spec: DDPM, net: torch.nn.Sequential, seed: int) -> np.ndarray:
    g, alpha_bar = np.random.default_rng(seed), cosine_alpha_bar(spec.steps)
    with torch.no_grad():
        x = torch.as_tensor(g.standard_normal((N, D)), dtype=torch.float32)
        for t in range(spec.steps - 1, 0, -1):
            beta = 1 - alpha_bar[t] / alpha_bar[t - 1]
            eps = net(torch.cat([x, torch.full((N, 1), float(t))], 1))
            x = (x - beta / np.sqrt(1 - alpha_bar[t]) * eps) / np.sqrt(1 - beta)
            if t > 1:
                x = x + np.sqrt(beta) * torch.as_tensor(g.standard_normal((N, D)), dtype=torch.float32)
    return x.numpy()


# ----------------------------------------------------------------------------------------------------------
# One configuration, measured in a fresh process.


def memory_kib(field: str) -> int:
    return int(next(line.split()[1] for line in open("/proc/self/status") if line.startswith(field + ":")))


def measure(runs: int, mode: str) -> dict:
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak resident set
    base_rss = memory_kib("VmRSS")
    x = data(runs)
    if mode in SPECS:
        SPECS[mode].fit(data(1), RunRNG(0, range(1), 1, "warm"))  # first-call imports and allocations
        t_train, t_sample = time_ensemble(SPECS[mode], x, lambda role: RunRNG(0, range(runs), 1, role))
        per = runs
    else:
        per = min(runs, LOOP_MODELS)
        nets = [plain_train(SPEC, x.x[r], r) for r in range(per)]
        t_train = best_time(lambda: [plain_train(SPEC, x.x[r], r) for r in range(per)])
        t_sample = best_time(lambda: [plain_sample(SPEC, nets[r], r) for r in range(per)])
    peak_mib = (memory_kib("VmHWM") - base_rss) / 1024
    return {"train_s": t_train / per, "sample_s": t_sample / per, "peak_mib": peak_mib}


def time_ensemble(spec: DDPM, x: Samples, rng) -> tuple[float, float]:
    """Seconds to fit ``spec`` on x and to sample N points per run, best of REPEATS after one untimed fit;
    ``rng(role)`` gives the streams."""
    model = spec.fit(x, rng("fit"))
    return best_time(lambda: spec.fit(x, rng("fit"))), best_time(lambda: model.sample(N, rng("synth")))


def better(old: dict | None, new: dict) -> dict:
    """The faster of two measurements of one configuration (peak memory: the larger)."""
    if old is None:
        return new
    out = {**new, "train_s": min(old["train_s"], new["train_s"]), "sample_s": min(old["sample_s"], new["sample_s"])}
    if "peak_mib" in new:
        out["peak_mib"] = max(old["peak_mib"], new["peak_mib"])
    return out


def measure_chunk(runs: int, start: int, stop: int, threads: int) -> dict:
    """One chunk of ``runs`` as a runner worker trains it: its rows of the streams, ``threads`` torch threads."""
    torch.set_num_threads(threads)
    rng = lambda role: RunRNG(0, range(start, stop), 1, role, total=runs)  # noqa: E731
    train_s, sample_s = time_ensemble(SPEC, Samples(data(runs).x[start:stop]), rng)
    return {"train_s": train_s, "sample_s": sample_s}


def python(code: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code], cwd=Path(__file__).parent, stdout=subprocess.PIPE, text=True)


def result(proc: subprocess.Popen) -> dict:
    out, _ = proc.communicate()
    if proc.returncode:
        raise RuntimeError(f"a measurement process failed (exit {proc.returncode})")
    return json.loads(out.splitlines()[-1])


def in_subprocess(runs: int, mode: str) -> dict:
    return result(python(f"import json, bench_ensemble as b; print(json.dumps(b.measure({runs}, {mode!r})))"))


def as_madloop_runs(runs: int) -> dict:
    """The runner's layout on this machine: its chunks for ``runs``, each worker with jobs // chunks threads,
    all started at once; the time per model is the slowest chunk's time over ``runs``."""
    jobs = os.cpu_count() or 1
    work = chunks(runs, jobs)
    threads = max(1, jobs // len(work))
    code = "import json, bench_ensemble as b; print(json.dumps(b.measure_chunk({}, {}, {}, {})))"
    procs = [python(code.format(runs, r.start, r.stop, threads)) for r in work]
    parts = [result(p) for p in procs]
    return {"train_s": max(p["train_s"] for p in parts) / runs, "sample_s": max(p["sample_s"] for p in parts) / runs,
            "layout": f"{len(work)} x {threads}"}


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    return (
        f"{cpu}, {os.cpu_count()} logical CPUs, torch {torch.__version__} with {torch.get_num_threads()} threads, "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}"
    )


def row(runs: int, b: dict, p: dict, peak: float) -> str:
    train, sample = train_flops(SPEC) / b["train_s"] / 1e9, sample_flops(SPEC) / b["sample_s"] / 1e9
    return (
        f"| {runs} | {1e3 * b['train_s']:.1f} | {1e3 * p['train_s']:.1f} | {p['train_s'] / b['train_s']:.1f}x "
        f"| {train:.1f} ({100 * train / peak:.0f}%) | {1e3 * b['sample_s']:.1f} | {1e3 * p['sample_s']:.1f} "
        f"| {p['sample_s'] / b['sample_s']:.1f}x | {sample:.1f} ({100 * sample / peak:.0f}%) "
        f"| {b['peak_mib']:.0f} | {p['peak_mib']:.0f} |"
    )


def runner_row(runs: int, m: dict, peak: float) -> str:
    train, sample = train_flops(SPEC) / m["train_s"] / 1e9, sample_flops(SPEC) / m["sample_s"] / 1e9
    return (
        f"| {runs} | {m['layout']} | {1e3 * m['train_s']:.1f} | {train:.1f} ({100 * train / peak:.0f}%) "
        f"| {1e3 * m['sample_s']:.1f} | {sample:.1f} ({100 * sample / peak:.0f}%) |"
    )


def bf16_row(runs: int, b: dict, h: dict, peak: float) -> str:
    train = train_flops(SPEC) / h["train_s"] / 1e9
    return (
        f"| {runs} | {1e3 * b['train_s']:.1f} | {1e3 * h['train_s']:.1f} | {b['train_s'] / h['train_s']:.2f}x "
        f"| {train:.1f} ({100 * train / peak:.0f}%) | {1e3 * b['sample_s']:.1f} | {1e3 * h['sample_s']:.1f} "
        f"| {b['sample_s'] / h['sample_s']:.2f}x | {h['peak_mib']:.0f} |"
    )


def main() -> None:
    first = matmul_gflops()
    results, runner, load = {}, {}, [os.getloadavg()[0]]
    for _ in range(PASSES):  # a burst of load on the shared machine spoils one pass, rarely both
        for runs in RUNS:
            now = in_subprocess(runs, "batched"), in_subprocess(runs, "loop"), in_subprocess(runs, "bf16")
            results[runs] = tuple(better(a, b) for a, b in zip(results[runs], now)) if runs in results else now
            runner[runs] = better(runner.get(runs), as_madloop_runs(runs))
            load.append(os.getloadavg()[0])
            print(runs, results[runs], runner[runs], flush=True)
    last = matmul_gflops()
    rates = {name: max(first[name], last[name]) for name in first}  # shares are not flattered by a slow one
    peak = max(rates.values())
    large = [(p["train_s"] / b["train_s"], train_flops(SPEC) / b["train_s"] / 1e9 / peak, b["train_s"] / h["train_s"],
              train_flops(SPEC) / h["train_s"] / 1e9 / peak) for r, (b, p, h) in results.items() if r >= 100]
    speedup, share = min(s[0] for s in large), max(s[1] for s in large)
    bf16_speedup, bf16_share = min(s[2] for s in large), max(s[3] for s in large)
    runner_share = {r: train_flops(SPEC) / m["train_s"] / 1e9 / peak for r, m in runner.items()}
    best = max((r for r in runner_share if r >= 100), key=runner_share.get)
    text = "\n".join(
        [
            "# Batched ensemble vs plain loop (SPEC E1 toy DDPM)",
            "",
            f"Written by `python benchmarks/bench_ensemble.py`. Machine: {machine()}.",
            f"Measured fp32 matmul throughput (2048 x 2048, best of {REPEATS} before and after, the faster BLAS):"
            f" **{peak:.0f} GFLOP/s** (torch {rates['torch']:.0f}, NumPy {rates['numpy']:.0f}).",
            f"Load average during the run: {min(load):.1f} to {max(load):.1f}. On a shared machine both the matmul",
            "rate and the timings move with the load: compare shares within one run only.",
            "",
            f"Model: {SPEC}. Training: {EPOCHS} epochs (E1 uses 100; time per epoch is constant) of {N} points per",
            f"model; sampling: {N} points per model, {SPEC.steps - 1} ancestral steps. Times are per model, best of",
            f"{REPEATS}, the better of {PASSES} passes over all configurations; the plain loop (one",
            f"torch.nn.Sequential + torch.optim.Adam per model) is timed on min(R, {LOOP_MODELS}) models. GFLOP/s counts",
            "matmul FLOPs (forward, backward); % is of the measured fp32 matmul rate. Peak memory: peak resident",
            "set of a fresh process per configuration above its resident set after import.",
            "",
            "| runs R | train batched ms | train loop ms | speed-up | train GFLOP/s | sample batched ms "
            "| sample loop ms | speed-up | sample GFLOP/s | peak MiB batched | peak MiB loop |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
            *(row(runs, b, p, peak) for runs, (b, p, _) in results.items()),
            "",
            "As `madloop run` trains them: the same ensemble split into the runner's chunks for this machine",
            f"({os.cpu_count()} cores), each chunk a worker process with its share of the cores (chunks x torch",
            "threads), all running at once; time per model = the slowest chunk's time / R.",
            "",
            "| runs R | chunks x threads | train ms | train GFLOP/s | sample ms | sample GFLOP/s |",
            "|---|---|---|---|---|---|",
            *(runner_row(runs, m, peak) for runs, m in runner.items()),
            "",
            "bf16: the same batched ensemble with the network under torch.autocast(bfloat16) (`--dtype bfloat16`;",
            "weights, Adam state and the loss stay fp32). GFLOP/s counts the same FLOPs; % is still of the fp32 rate.",
            "",
            "| runs R | train fp32 ms | train bf16 ms | bf16 speed-up | train bf16 GFLOP/s | sample fp32 ms "
            "| sample bf16 ms | bf16 speed-up | peak MiB bf16 |",
            "|---|---|---|---|---|---|---|---|---|",
            *(bf16_row(runs, b, h, peak) for runs, (b, _, h) in results.items()),
            "",
            "Targets at R >= 100:",
            f"- training speed-up over the plain loop >= 1.8x: {speedup:.1f}x at worst, "
            f"{'met' if speedup >= 1.8 else 'NOT met'};",
            "- training throughput >= 50% of the fp32 matmul rate: as madloop runs it, "
            f"{100 * runner_share[best]:.0f}% at best (R = {best}), "
            f"{'met' if runner_share[best] >= 0.5 else 'NOT met'};",
            f"  in one process with all {torch.get_num_threads()} threads, {100 * share:.0f}% at best, "
            f"{'met' if share >= 0.5 else 'NOT met'};",
            f"- bf16 training faster than fp32: {bf16_speedup:.2f}x at worst, {'yes' if bf16_speedup > 1 else 'NO'}; "
            f"its throughput is {100 * bf16_share:.0f}% of the fp32 matmul rate at best.",
            "",
        ]
    )
    OUT.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
