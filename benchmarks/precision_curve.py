"""Does CPU bf16 autocast harm training? The same recipe trained twice side by side, `train.precision=fp32` and
`bf16`, one thread each, same data, seed and batches: validation loss at every `--val-every` steps and the training
speed of each. bf16 is a lever only where it leaves this curve alone (issue 15).

    python benchmarks/precision_curve.py --data train.h5 --val val.h5 --recipe caloart-ds2 --steps 300 --batch 16

The data used for benchmarks/results/precision_curve.md is the demo's split (`caloforge demo` writes it under
`demo-out/data/split/`: 6000 GFlash par04-siw electrons on the dataset-2 mesh).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from machine import cpu_features, cpu_model

REPO = Path(__file__).resolve().parents[1]
PRECISIONS = ("fp32", "bf16")


def train_command(args, precision: str, out: Path) -> list[str]:
    return [sys.executable, "-m", "caloforge.cli.main", "train", "--recipe", args.recipe, "--data", str(args.data),
            "--val", str(args.val), "--out", str(out), "--steps", str(args.steps), "--device", "cpu",
            "--outside-energy-range", "warn", f"train.batch_size={args.batch}", f"train.precision={precision}",
            f"train.val_every={args.val_every}", f"train.ckpt_every={args.steps}",
            f"train.warmup_steps={max(1, args.steps // 10)}", *args.overrides]


def read_run(run: Path) -> tuple[dict[int, float], float]:
    """Validation loss per step and the median training samples/s the trainer logged."""
    val, rates = {}, []
    for line in (run / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if "val_loss" in rec:
            val[rec["step"]] = rec["val_loss"]
        elif "samples_per_s" in rec:
            rates.append(rec["samples_per_s"])
    rates.sort()
    return val, rates[len(rates) // 2] if rates else float("nan")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--val", type=Path, required=True)
    ap.add_argument("--recipe", default="caloart-ds2")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--val-every", type=int, default=50)
    ap.add_argument("--work", type=Path, default=Path("precision-curve-work"))
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "precision_curve.md")
    ap.add_argument("overrides", nargs="*", help="further recipe key=value overrides for both runs")
    args = ap.parse_args(argv)
    for f in (args.data, args.val):
        if not f.is_file():
            ap.error(f"{f}: no such shower file")
    if args.work.exists():
        ap.error(f"{args.work}: exists; give a new --work folder")
    env = dict(os.environ, OMP_NUM_THREADS="1", CALOFORGE_PROGRESS="0")
    load0, t0 = os.getloadavg()[0], time.perf_counter()
    procs = {p: subprocess.Popen(train_command(args, p, args.work / p), env=env) for p in PRECISIONS}
    walls = {}
    while len(walls) < len(procs):  # poll both, so each wall time is its own
        for p, proc in procs.items():
            if p not in walls and proc.poll() is not None:
                walls[p] = time.perf_counter() - t0
        time.sleep(1)
    failed = [f"{p} (exit {proc.returncode})" for p, proc in procs.items() if proc.returncode != 0]
    if failed:
        print(f"precision_curve: run failed: {', '.join(failed)}; logs under {args.work}", file=sys.stderr)
        return 1
    runs = {p: read_run(args.work / p) for p in PRECISIONS}
    steps = sorted(runs["fp32"][0])
    lines = ["# CPU bf16 autocast against fp32: the training curve (benchmarks/precision_curve.py)", "",
             (f"`python benchmarks/precision_curve.py {' '.join(sys.argv[1:] if argv is None else argv)}`; "
              f"{cpu_model()} ({cpu_features()}), both runs at once, one thread each, load {load0:.1f} at the start."),
             "", "| step | val loss fp32 | val loss bf16 | bf16 / fp32 |", "|---|---|---|---|"]
    for s in steps:
        a, b = runs["fp32"][0][s], runs["bf16"][0].get(s, float("nan"))
        lines.append(f"| {s} | {a:.4f} | {b:.4f} | {b / a:.3f} |")
    rate = {p: runs[p][1] for p in PRECISIONS}
    lines += ["", (f"Median training samples/s (trainer log): fp32 {rate['fp32']:.1f}, bf16 {rate['bf16']:.1f} "
                   f"({rate['bf16'] / rate['fp32']:.2f}x); wall, validation included: fp32 {walls['fp32']:.0f} s, "
                   f"bf16 {walls['bf16']:.0f} s.")]
    from caloforge.outputs import atomic_write_text

    atomic_write_text(args.out, "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
