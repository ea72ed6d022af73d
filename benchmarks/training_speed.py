"""Training-step speed of caloforge's caloart-ds2 against a reference implementation of the same model written to
the seed's description (benchmarks/reference_dit.py: 11,883,012 parameters each), measured side by side.

Variants, run in interleaved rounds (A B C ... A B C ...) on the same thread count, fp32 unless said:
  reference          the seed-style step: AdamW (default implementation), per-tensor EMA loop
  caloforge-seedlike caloforge's network and loss with the reference's optimiser and EMA (no levers)
  caloforge          caloforge's step as the trainer runs it: fused AdamW, multi-tensor EMA
  caloforge-bf16     the same under CPU bf16 autocast (only with --bf16)
  caloforge-compile  caloforge's step with the network under torch.compile (inductor; only with --compile; the
                     compile itself happens in the first round's warm-up step and is reported apart)
  caloforge-bf16-compile  both (only with --bf16 --compile; its compile is also outside the rounds)
Each round times --steps steps after one warm-up step; the median over rounds is reported with the load average
before and after each round. A short loss-curve check trains a tiny caloforge model both with and without the
levers on identical batches and noise and reports the largest relative loss difference.

    OMP_NUM_THREADS=2 python benchmarks/training_speed.py --rounds 5 --steps 3 --batch 32
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import torch
from machine import cpu_features, cpu_model
from reference_dit import ReferenceDiT, ReferenceTrainer

from caloforge.data.geometry import Geometry
from caloforge.training.build import autocast_context, build_network, build_objective, recipe_dit_config
from caloforge.training.ema import EMA
from caloforge.training.recipe_io import load_recipe

REPO = Path(__file__).resolve().parents[1]


class CaloforgeStep:
    """The trainer's inner step (training/trainer.py): objective loss, clip, AdamW, EMA."""

    def __init__(self, recipe: str, levers: bool, precision: str = "fp32", overrides=(), compile: bool = False):
        r = load_recipe(recipe, list(overrides))
        self.net = build_network(recipe_dit_config(r, Geometry.official("2"), cond_dim=4))
        self.run_net = torch.compile(self.net) if compile else self.net
        self.objective = build_objective(r.objective)
        self.opt = torch.optim.AdamW(self.net.parameters(), lr=5e-4, betas=(0.9, 0.95), weight_decay=1e-5,
                                     fused=levers)
        self.levers, self.precision, self.step_no = levers, precision, 0
        self.ema = EMA(self.net, 0.7, 0.9999) if levers else None
        self.shadow = {k: v.detach().clone() for k, v in self.net.state_dict().items()}

    def step(self, x, cond, gen=None) -> float:
        with autocast_context(torch.device("cpu"), self.precision):
            loss = self.objective.loss(self.run_net, x, cond, generator=gen)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), 1.0)
        self.opt.step()
        if self.ema is not None:
            self.ema.update(self.net, self.step_no)
        else:  # the reference's per-tensor EMA loop
            decay = min(0.9999, 1 - (1 + self.step_no) ** -0.7)
            with torch.no_grad():
                for k, v in self.net.state_dict().items():
                    if v.is_floating_point():
                        self.shadow[k].mul_(decay).add_(v, alpha=1 - decay)
        self.step_no += 1
        return float(loss)


def batch(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 45, 16, 9, generator=g), torch.rand(n, 4, generator=g)


def timed(step_fn, steps: int) -> float:
    step_fn()  # warm-up
    t0 = time.perf_counter()
    for _ in range(steps):
        step_fn()
    return (time.perf_counter() - t0) / steps


def speed_rounds(args) -> dict[str, list]:
    torch.manual_seed(0)
    x, c = batch(args.batch, 0)
    ref = ReferenceTrainer(ReferenceDiT())
    xr = x.permute(0, 3, 2, 1)[:, None].contiguous()  # (B, 1, R, PHI, Z): the reference's layout
    variants = {"reference": partial(ref.step, xr, c),
                "caloforge-seedlike": partial(CaloforgeStep("caloart-ds2", False).step, x, c),
                "caloforge": partial(CaloforgeStep("caloart-ds2", True).step, x, c)}
    if args.bf16:
        variants["caloforge-bf16"] = partial(CaloforgeStep("caloart-ds2", True, "bf16").step, x, c)
    if args.compile:
        variants["caloforge-compile"] = partial(CaloforgeStep("caloart-ds2", True, compile=True).step, x, c)
        t0 = time.perf_counter()
        variants["caloforge-compile"]()  # the compile, outside the timed rounds
        args.compile_seconds = time.perf_counter() - t0
    if args.compile and args.bf16:
        variants["caloforge-bf16-compile"] = partial(
            CaloforgeStep("caloart-ds2", True, "bf16", compile=True).step, x, c)
        variants["caloforge-bf16-compile"]()  # its own compile (bf16 graphs), also outside the rounds
    out = {k: [] for k in variants}
    for _ in range(args.rounds):
        for name, fn in variants.items():
            load0 = os.getloadavg()[0]
            out[name].append((timed(fn, args.steps), load0, os.getloadavg()[0]))
    return out


def loss_curves(steps: int, compile: bool = False) -> dict[str, list[float]]:
    """tiny-fm on identical batches and noise, with and without the levers (and bf16): same curve or not."""
    curves = {}
    runs = [("seedlike", False, "fp32", False), ("levers", True, "fp32", False), ("levers+bf16", True, "bf16", False)]
    if compile:
        runs.append(("levers+compile", True, "fp32", True))
    for name, levers, prec, comp in runs:
        torch.manual_seed(0)
        s = CaloforgeStep("tiny-fm", levers, prec, compile=comp)
        losses = []
        for i in range(steps):
            x, c = batch(32, 100 + i % 8)
            x = x.abs().log1p()  # a learnable structure
            losses.append(s.step(x, c, torch.Generator().manual_seed(i)))
        curves[name] = losses
    return curves


def report(args, rounds, curves) -> str:
    med = {k: statistics.median(r[0] for r in v) for k, v in rounds.items()}
    lines = ["# Training-step speed: caloforge vs a reference implementation (benchmarks/training_speed.py)", "",
             (f"`OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '?')} python benchmarks/training_speed.py "
             f"{' '.join(args.argv)}`; {cpu_model()} ({cpu_features()}), torch {torch.__version__}, {torch.get_num_threads()} threads, "
             f"caloart-ds2 (11,883,012 parameters in both), batch {args.batch}, {args.rounds} interleaved rounds of "
             f"{args.steps} steps after 1 warm-up step; fp32 unless said."), "",
             "| variant | median s/step | samples/s | speed vs reference | per-round s/step (load before-after) |",
             "|---|---|---|---|---|"]
    for k, v in rounds.items():
        per = ", ".join(f"{t:.2f} ({a:.1f}-{b:.1f})" for t, a, b in v)
        lines.append(f"| {k} | {med[k]:.3f} | {args.batch / med[k]:.1f} | {med['reference'] / med[k]:.2f}x | {per} |")
    if getattr(args, "compile_seconds", None) is not None:
        lines += ["", (f"torch.compile of caloart-ds2 (first forward + backward): {args.compile_seconds:.0f} s, "
                       "paid once per run (not in the timed rounds).")]
    base = curves["seedlike"]
    lines += ["", (f"Loss curves, tiny-fm, {len(base)} steps on identical batches and noise "
              "(largest |difference| relative to the seed-like loss, and the mean of the last 10 losses):"), ""]
    for k, v in curves.items():
        diff = max(abs(a - b) / abs(b) for a, b in zip(v, base))
        lines.append(f"- {k}: max rel. diff {diff:.2e}; last-10 mean {statistics.mean(v[-10:]):.4f}")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--curve-steps", type=int, default=60)
    ap.add_argument("--bf16", action="store_true", help="also time CPU bf16 autocast")
    ap.add_argument("--compile", action="store_true", help="also time the network under torch.compile")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "training_speed.md")
    args = ap.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    rounds = speed_rounds(args)
    curves = loss_curves(args.curve_steps, args.compile)
    text = report(args, rounds, curves)
    from caloforge.outputs import atomic_write_text

    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
