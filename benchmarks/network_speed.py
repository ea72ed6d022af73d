"""Network speed on this machine: training throughput and inference cost per network evaluation of the recipes' DiTs.

Training: samples/s of one flow-matching step (forward + backward + AdamW) on random showers, linear path
z = (1 - t) noise + t x, velocity target x - noise, logit-normal t. Inference: ms per shower of ONE network
evaluation (a full sample costs NFE times this, e.g. 63 for Heun-32) at batch 1 and 100, in inference_mode.
Each figure is the median over repeats after warm-up; the machine load is recorded because the CPU may be shared.

    python benchmarks/network_speed.py                       # tiny, caloart-ds2, caloart-ds3; all cores and 1
    python benchmarks/network_speed.py --recipes tiny-fm --out /tmp/speed.md
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from machine import cpu_model

from caloforge.data.geometry import Geometry
from caloforge.models import DiT
from caloforge.training.build import recipe_dit_config

COND_DIM = 4  # energy, (sin, cos) phi, theta: the CaloArt condition layout
TRAIN_BATCH = {"tiny-fm": 32, "caloart-ds2": 32, "caloart-ds3": 16}


def timed_repeats(fn, warmup: int, min_repeats: int, max_repeats: int, budget_s: float) -> list[float]:
    """Run fn warmup times, then time at least min_repeats and at most max_repeats calls (stop after budget_s)."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < max_repeats and (len(times) < min_repeats or time.perf_counter() - start < budget_s):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def train_step_fn(model: DiT, batch: int, gen: torch.Generator):
    cfg = model.cfg
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=1e-5)
    x = torch.randn(batch, *cfg.grid, generator=gen)  # (B, Z, A, R) stand-in for preprocessed showers
    cond = torch.rand(batch, COND_DIM, generator=gen)

    def step():
        noise = torch.randn(x.shape, generator=gen)
        t = torch.sigmoid(torch.randn(batch, generator=gen))  # logit-normal(0, 1)
        tb = t[:, None, None, None]
        z = (1 - tb) * noise + tb * x  # (B, Z, A, R)
        loss = (model(z, t, cond) - (x - noise)).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def inference_fn(model, batch: int, gen: torch.Generator):
    grid = getattr(model, "_orig_mod", model).cfg.grid
    z = torch.randn(batch, *grid, generator=gen)
    t, cond = torch.rand(batch, generator=gen), torch.rand(batch, COND_DIM, generator=gen)

    def call():
        with torch.inference_mode():
            model(z, t, cond)

    return call


def bench_preset(name: str, threads: int, quick: bool, compile_model: bool = False) -> dict:
    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = DiT(recipe_dit_config(name, Geometry.official("3" if name.endswith("ds3") else "2"), cond_dim=COND_DIM))
    big = model.num_params() > 2e6
    reps = (1, 3, 3 if big else 20, 10 if big else 20) if not quick else (1, 2, 2, 5)
    batch = TRAIN_BATCH.get(name, 32)
    model.train()
    train = timed_repeats(train_step_fn(model, batch, gen), *reps)
    model.eval()
    net = torch.compile(model, dynamic=False) if compile_model else model  # inference only; warm-up compiles
    bs1 = timed_repeats(inference_fn(net, 1, gen), 2, 5, 50, 5.0 if not quick else 1.0)
    bs100 = timed_repeats(inference_fn(net, 100, gen), *reps)
    return {
        "preset": name + (" (compiled)" if compile_model else ""),
        "params": model.num_params(),
        "tokens": model.patcher.n_tokens,
        "threads": threads,
        "train_batch": batch,
        "train_samples_s": batch / statistics.median(train),
        "train_n": len(train),
        "bs1_ms": 1e3 * statistics.median(bs1),
        "bs1_n": len(bs1),
        "bs100_ms": 1e3 * statistics.median(bs100) / 100,
        "bs100_n": len(bs100),
    }


def render(rows: list[dict], load_before, load_after, wall_s: float, command: str) -> str:
    head = [
        "# Network speed (CPU)",
        "",
        f"- machine: {os.cpu_count()} cores (`nproc`), CPU `{cpu_model()}`, {platform.platform()}",
        f"- torch {torch.__version__}, numpy {np.__version__}, python {platform.python_version()}",
        (
            f"- load average (1/5/15 min) before: {load_before}, after: {load_after} -- the CPU is shared with other "
            "jobs, so figures are upper bounds on cost"
        ),
        f"- wall time of this run: {wall_s:.0f} s",
        f"- command: `{command}`",
        "",
        (
            "Training = forward + backward + AdamW step of a flow-matching MSE loss (samples/s). Inference = ONE network "
            "evaluation per shower in `torch.inference_mode` (ms/shower); a Heun-32 sample is 63 evaluations. "
            "Medians over n repeats after warm-up; float32."
        ),
        "",
        (
            "| preset | params | tokens | threads | train batch | train samples/s | infer bs1 ms/shower | "
            "infer bs100 ms/shower | repeats (train/bs1/bs100) |"
        ),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    body = [
        f"| {r['preset']} | {r['params'] / 1e6:.2f}M | {r['tokens']} | {r['threads']} | {r['train_batch']} | "
        f"{r['train_samples_s']:.1f} | {r['bs1_ms']:.2f} | {r['bs100_ms']:.2f} | "
        f"{r['train_n']}/{r['bs1_n']}/{r['bs100_n']} |"
        for r in rows
    ]
    return "\n".join(head + body) + "\n"


def write_atomic(path: Path, text: str) -> None:
    from caloforge.outputs import atomic_write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipes", nargs="+", default=["tiny-fm", "caloart-ds2", "caloart-ds3"])
    ap.add_argument("--threads", nargs="+", type=int, default=[os.cpu_count() or 1, 1])
    ap.add_argument("--quick", action="store_true", help="fewer repeats (smoke test)")
    ap.add_argument(
        "--compile", action="store_true", help="torch.compile the network for the inference figures"
    )
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "network_speed.md")
    args = ap.parse_args(argv)
    load_before = tuple(round(x, 2) for x in os.getloadavg())
    start = time.perf_counter()
    rows = []
    for name in args.recipes:
        for threads in args.threads:
            rows.append(bench_preset(name, threads, args.quick, args.compile))
            r = rows[-1]
            print(
                f"{name} threads={threads}: train {r['train_samples_s']:.1f} samples/s, "
                f"bs1 {r['bs1_ms']:.2f} ms, bs100 {r['bs100_ms']:.2f} ms/shower",
                file=sys.stderr,
                flush=True,
            )
    load_after = tuple(round(x, 2) for x in os.getloadavg())
    command = "python " + " ".join(
        ["benchmarks/network_speed.py", *(argv if argv is not None else sys.argv[1:])]
    )
    text = render(rows, load_before, load_after, time.perf_counter() - start, command)
    write_atomic(args.out, text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
