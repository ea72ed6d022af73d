"""GPU check of the training paths no CPU test reaches: nccl DDP, bf16 autocast, torch.compile, real-size speed.

Run where a GPU is (under 5 minutes on one H200); it writes a markdown result file with the commands, return codes,
losses and samples/s:

    python benchmarks/gpu_check.py                              # cuda when available, results/gpu_check.md
    python benchmarks/gpu_check.py --device cpu --out /tmp/g.md --tiny-steps 4 --ds2-steps 2 --ds2-batch 8

1. ``tiny-fm`` under ``torchrun --nproc_per_node N`` (a world of one still runs every collective: DDP's gradient
   all-reduce, the stop flag, the logged loss, the checkpoint barrier) with ``train.precision=bf16`` and
   ``train.compile=true`` (compile is applied on CUDA only), then a resume of the same run to a later step (constant
   lr, so the longer total is allowed: docs/train.md).
2. ``caloart-ds2`` (11.9M parameters, batch 256) under the same launcher for a few dozen steps: samples/s from its
   metrics, leaving out the first logged interval (compilation, warm-up).
On CPU the same script runs with gloo and fp32/bf16 eager (the fallback the unit tests exercise).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from machine import cpu_model

REPO = Path(__file__).resolve().parents[1]


def write_ds2_file(path: Path, n: int, seed: int = 0) -> Path:
    """DS2-mesh showers with a longitudinal peak and radial fall-off (shape only matters for the loss to fall)."""
    from caloforge.data.energies import log_uniform
    from caloforge.data.geometry import Geometry
    from caloforge.data.writer import write_showers

    geo = Geometry.official("2")
    nz, na, nr = geo.grid_shape
    rng = np.random.default_rng(seed)
    e = log_uniform(n, (1e3, 1e5), rng)  # 1-100 GeV: inside every recipe's data.energy_range_mev
    z, r = np.arange(nz)[None, :, None, None], np.arange(nr)[None, None, None, :]
    peak = rng.uniform(0.2, 0.5, (n, 1, 1, 1)) * nz
    shape = np.exp(-0.5 * ((z - peak) / 5.0) ** 2) * np.exp(-r / 1.5) * rng.lognormal(0, 0.3, (n, nz, na, nr))
    shape /= shape.sum(axis=(1, 2, 3), keepdims=True)
    s = (0.8 * e[:, None, None, None] * shape).astype(np.float32)
    s[s < 0.0151515] = 0.0
    write_showers(path, e, s.reshape(n, -1), geometry=geo)
    return path


def torchrun_train(nproc: int, recipe: str, data: Path, out: Path, steps: int, device: str, *overrides: str):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
           "-m", "caloforge.cli.main", "train", "--recipe", recipe, "--data", str(data), "--out", str(out),
           "--steps", str(steps), "--device", device, *overrides]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=REPO,
                          env={**_env(), "CALOFORGE_PROGRESS": "0"})
    return cmd, proc, time.perf_counter() - t0


def _env() -> dict:
    import os

    env = dict(os.environ)
    env["PYTHONPATH"] = f"{REPO / 'src'}:{env.get('PYTHONPATH', '')}"
    return env


def metrics(run: Path) -> list[dict]:
    path = run / "metrics.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.is_file() else []


def speed(rows: list[dict]) -> float | None:
    """Median samples/s over the logged intervals after the first (which holds compilation and warm-up)."""
    rates = [r["samples_per_s"] for r in rows if "samples_per_s" in r][1:]
    return float(np.median(rates)) if rates else None


def run_checks(args) -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        return _checks_in(Path(tmp), args)


def _checks_in(work: Path, args) -> list[dict]:
    data = write_ds2_file(work / "ds2.h5", args.showers)
    rows = []
    tiny = ["train.precision=bf16", "train.compile=true", "train.log_every=2", f"train.ckpt_every={args.tiny_steps}",
            f"train.batch_size={args.tiny_batch}", "train.warmup_steps=2", "train.schedule=constant"]
    for label, steps in (("tiny-fm: DDP + bf16 + compile", args.tiny_steps),
                         ("tiny-fm: resumed to a later step", 2 * args.tiny_steps)):
        cmd, proc, wall = torchrun_train(args.nproc, "tiny-fm", data, work / "tiny", steps, args.device, *tiny)
        rows.append(_row(label, cmd, proc, wall, metrics(work / "tiny")))
    if args.skip_ds2:
        return rows
    ds2 = ["train.log_every=5", f"train.ckpt_every={10 * args.ds2_steps}", f"train.batch_size={args.ds2_batch}",
           "train.warmup_steps=5"]
    cmd, proc, wall = torchrun_train(args.nproc, "caloart-ds2", data, work / "ds2", args.ds2_steps, args.device, *ds2)
    rows.append(_row(f"caloart-ds2: DDP, batch {args.ds2_batch}", cmd, proc, wall, metrics(work / "ds2")))
    return rows


def _row(label, cmd, proc, wall, rows) -> dict:
    losses = [r["loss"] for r in rows if "loss" in r]
    return {"check": label, "rc": proc.returncode, "wall_s": round(wall, 1), "steps": rows[-1]["step"] if rows else 0,
            "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None,
            "samples_per_s": speed(rows), "command": " ".join(cmd[2:]),
            "error": proc.stderr.strip().splitlines()[-1] if proc.returncode and proc.stderr.strip() else ""}


def device_line(device: str) -> str:
    import torch

    if device != "cpu" and torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        return f"{p.name} ({p.total_memory / 2**30:.0f} GiB), torch {torch.__version__}, CUDA {torch.version.cuda}"
    return f"CPU {cpu_model()}, torch {torch.__version__} (no GPU: gloo + eager fallback)"


def write_report(path: Path, rows: list[dict], args) -> None:
    import os

    lines = ["# GPU check (benchmarks/gpu_check.py)", "",
             (f"`python benchmarks/gpu_check.py {' '.join(args.argv)}` on {platform.node()}: "
              f"{device_line(args.device)}; world size {args.nproc}; load average {os.getloadavg()[0]:.2f}"), "",
             "| check | rc | steps | first loss | last loss | samples/s | wall s |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        sps = f"{r['samples_per_s']:.0f}" if r["samples_per_s"] else "-"
        fl = f"{r['first_loss']:.4f}" if r["first_loss"] is not None else "-"
        ll = f"{r['last_loss']:.4f}" if r["last_loss"] is not None else "-"
        lines.append(f"| {r['check']} | {r['rc']} | {r['steps']} | {fl} | {ll} | {sps} | {r['wall_s']} |")
    lines += ["", "Commands (python -m ...):", ""] + [f"- `{r['command']}`" for r in rows]
    errors = [f"- {r['check']}: {r['error']}" for r in rows if r["error"]]
    lines += (["", "Errors:", ""] + errors) if errors else []
    path.parent.mkdir(parents=True, exist_ok=True)
    from caloforge.outputs import atomic_write_text

    atomic_write_text(path, "\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--nproc", type=int, default=1, help="processes (GPUs) for torchrun")
    ap.add_argument("--showers", type=int, default=2048)
    ap.add_argument("--tiny-steps", type=int, default=60)
    ap.add_argument("--tiny-batch", type=int, default=64)
    ap.add_argument("--ds2-steps", type=int, default=60)
    ap.add_argument("--ds2-batch", type=int, default=256)
    ap.add_argument("--skip-ds2", action="store_true", help="only the tiny-fm checks")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "gpu_check.md")
    args = ap.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    rows = run_checks(args)
    write_report(args.out, rows, args)
    print(args.out.read_text())
    return 0 if all(r["rc"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
