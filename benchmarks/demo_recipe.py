"""Which voxel preprocessing / learning rate serves the demo best: `caloforge demo` at a fixed step count, one run
per variant, every run on the same data, split and floor (the first run's, copied), one table row each.

    python benchmarks/demo_recipe.py [--steps 1500] [--work /tmp/caloforge-demo-recipe] [--variants a,b]
        [--out benchmarks/results/demo_recipe_rows.md] [--n 6000]

Step counts are fixed, so a loaded machine changes wall time, not the rows; two variants may run at once with
OMP_NUM_THREADS=1 (two invocations with different --variants and --out).
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

from machine import cpu_model

REPO = Path(__file__).resolve().parents[1]
LOG_CHAIN = "[{kind: divide_by_energy, k: 1.0}, {kind: log, eps: 1.0e-6}, {kind: standardise, mode: %s}]"
POW = "[{kind: power, p: %s}, {kind: standardise, mode: voxel}]"
#: the layer model before layer_model.batch_size (2026-11-30): 256 x 4 on the voxel model's batch of 64
OLD_LAYER = ["layer_model.width=256", "layer_model.depth=4", "layer_model.batch_size=null"]
#: name -> overrides of the current tiny-fm-2s (E^0.25 per voxel, lr 4e-3, layer model 128 x 3 at batch 1024); "old"
#: is the recipe before 2026-11-30; every variant but the last two keeps the old layer model, as when it was measured
VARIANTS = {
    "old": [f"transforms={LOG_CHAIN % 'global'}", "train.lr=2e-3"],
    "old-vox": [f"transforms={LOG_CHAIN % 'voxel'}", "train.lr=2e-3"],
    "abslog": ["transforms=[{kind: log, eps: 1.0e-3}, {kind: standardise, mode: voxel}]", "train.lr=2e-3"],
    "abslog-lr4": ["transforms=[{kind: log, eps: 1.0e-3}, {kind: standardise, mode: voxel}]"],
    "pow25": [],
    "pow50": [f"transforms={POW % 0.5}"],
    "noise-pow25": [("transforms=[{kind: noise, level: 0.0076}, {kind: power, p: 0.25}, "
                    "{kind: standardise, mode: voxel}]")],
    "abslog-xpred": ["transforms=[{kind: log, eps: 1.0e-3}, {kind: standardise, mode: voxel}]", "train.lr=2e-3",
                     "objective.prediction=x"],
    "noise-log": [("transforms=[{kind: noise, level: 0.0076}, {kind: log, eps: 1.0e-4}, "
                  "{kind: standardise, mode: voxel}]")],
    "pow25-lr8": ["train.lr=8e-3"],
    "pow25-bs32": ["train.batch_size=32"],  # 1.8x the steps per second: run it with --steps 2400
}
VARIANTS = {name: [*overrides, *OLD_LAYER] for name, overrides in VARIANTS.items()}
VARIANTS["layer1024"] = []  # the current recipe: the layer model's own batch (layer_model.batch_size)
# 2026-12-01, with the current layer model (run with --steps 3000 / 6000 for the learning curve)
VARIANTS["pow25-global"] = [f"transforms={POW.replace('voxel', 'global') % 0.25}"]
VARIANTS["old-chain"] = [f"transforms={LOG_CHAIN % 'global'}", "train.lr=2e-3"]
VARIANTS["patch549-d96"] = ["model.patch=[5,4,9]", "model.dim=96"]
VARIANTS["patch589-d128"] = ["model.patch=[5,8,9]", "model.dim=128"]


def run_variant(name: str, overrides: list[str], steps: int, work: Path, n: int) -> dict:
    """One `caloforge demo` into work/name, reusing work/data-source's data and floor; its summary.csv row."""
    out, source = work / name, work / "data-source"
    if source.is_dir() and not out.exists():
        out.mkdir(parents=True)
        shutil.copytree(source / "data", out / "data")
        shutil.copy(source / "floor.json", out / "floor.json")
    cmd = [sys.executable, "-m", "caloforge.cli.main", "demo", "--out", str(out), "--n", str(n), "--minutes", "0",
           "--steps", str(steps), *overrides]
    subprocess.run(cmd, check=True, env={**os.environ, "CALOFORGE_PROGRESS": "0"}, stdout=subprocess.DEVNULL)
    if not source.exists():  # the first run's data and floor serve every later one
        source.mkdir()
        shutil.copytree(out / "data", source / "data")
        shutil.copy(out / "floor.json", source / "floor.json")
    with open(out / "evaluation" / "summary.csv") as f:
        return next(csv.DictReader(f))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--n", type=int, default=6000, help="GFlash showers of the demo data")
    p.add_argument("--work", type=Path, default=Path("/tmp/caloforge-demo-recipe"))
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma list of {', '.join(VARIANTS)}")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "demo_recipe_rows.md")
    args = p.parse_args(argv)
    names = [v for v in args.variants.split(",") if v]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        p.error(f"--variants: unknown {unknown}; expected names from {list(VARIANTS)}")
    args.work.mkdir(parents=True, exist_ok=True)
    load0 = os.getloadavg()[0]
    lines = [(f"# demo recipe variants (`python benchmarks/demo_recipe.py --steps {args.steps} --n {args.n} "
             f"--variants {','.join(names)}`)"), "",
             (f"Machine: {os.cpu_count()} cores, {cpu_model()}; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '-')}; "
             f"load {load0:.1f} at start."), "",
             "| variant | overrides | steps | AUC high | AUC low | FPD x1e3 | KPD x1e3 | mean sep. power |",
             "|---|---|---|---|---|---|---|---|"]
    for name in names:
        r = run_variant(name, VARIANTS[name], args.steps, args.work, args.n)
        lines.append(f"| {name} | {' '.join(VARIANTS[name]) or '-'} | {args.steps} | {float(r['auc_high']):.3f} | "
                     f"{float(r['auc_low']):.3f} | {float(r['fpd_x1e3']):.0f} | {float(r['kpd_x1e3']):.3g} | "
                     f"{float(r['sep_mean_official']):.3f} |")
        print(lines[-1], flush=True)
    from caloforge.outputs import atomic_write_text

    atomic_write_text(args.out, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
