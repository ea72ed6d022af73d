"""Wall time and peak memory of a full `caloforge evaluate` (features, histograms, FPD/KPD, high-level classifier,
plots, report) at official sizes: DS2 100k vs 100k, and a DS3-sized stream (N x 40500 voxels).

Input files are written on the fly into a temporary folder from a simple random shower model (longitudinal
Gaussian profile, exponential radial fall-off, gamma fluctuations, 50 % empty voxels): the cost of the evaluation
depends on the sizes, not on the physics. Each evaluation runs as a child process so that its peak RSS is measured
alone (``getrusage(RUSAGE_CHILDREN)``). Writes benchmarks/results/evaluation_cost.md.

    python benchmarks/evaluation_cost.py                       # DS2 100k + DS3 20k, default settings
    python benchmarks/evaluation_cost.py --ds2-n 20000 --ds3-n 5000 --epochs 3   # quicker
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
from machine import cpu_model

ROOT = Path(__file__).resolve().parents[1]
#: The evaluation runs in a child that reports its own peak RSS (RUSAGE_SELF), so cases do not mix.
_CHILD = ("import resource, sys; from caloforge.cli.main import main; rc = main(sys.argv[1:]); "
          "print('PEAK_RSS_KIB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr); sys.exit(rc)")


def toy_file(path: Path, n: int, grid: tuple[int, int, int], seed: int) -> None:
    """n showers on a (layers, alpha, r) grid, written in chunks of 1000 rows (uncompressed)."""
    nz, na, nr = grid
    rng = np.random.default_rng(seed)
    z = np.arange(nz, dtype=np.float32)[:, None, None]
    r = np.arange(nr, dtype=np.float32)[None, None, :] * (9 / nr)
    with h5py.File(path, "w") as f:
        de = f.create_dataset("incident_energies", (n, 1), dtype="f4")
        ds = f.create_dataset("showers", (n, nz * na * nr), dtype="f4", chunks=(min(100, n), nz * na * nr))
        for i in range(0, n, 1000):
            m = min(1000, n - i)
            e = (10 ** rng.uniform(3, 6, m)).astype(np.float32)
            tmax = (8 + 2 * np.log10(e / 1e3))[:, None, None, None]
            prof = np.exp(-0.5 * ((z - tmax) / 5) ** 2) * np.exp(-r / 1.5)  # (m, nz, 1, nr)
            prof = prof / prof.sum(axis=(1, 3), keepdims=True) * (0.7 / na) * e[:, None, None, None]
            noise = rng.gamma(2.0, 0.5, (m, nz, na, nr)).astype(np.float32) * (rng.random((m, nz, na, nr)) < 0.5)
            de[i : i + m, 0] = e
            ds[i : i + m] = (prof * noise).reshape(m, -1)


def run_case(name: str, dataset: str, n: int, grid, workdir: Path, extra: list[str]) -> dict:
    ref, gen = workdir / f"{name}_ref.h5", workdir / f"{name}_gen.h5"
    t0 = time.perf_counter()
    toy_file(ref, n, grid, 1)
    toy_file(gen, n, grid, 2)
    t_make = time.perf_counter() - t0
    out = workdir / f"{name}_eval"
    args = ["evaluate", "--gen", str(gen), "--ref", str(ref), "--dataset", dataset, "--classifiers", "high",
            "--out", str(out), *extra]
    cmd = [sys.executable, "-c", _CHILD, *args]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, check=True, env={**os.environ, "CALOFORGE_PROGRESS": "0"}, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    peak_kib = int(proc.stderr.rsplit("PEAK_RSS_KIB", 1)[1].split()[0])
    m = json.loads((out / "metrics.json").read_text())
    g = m["generated"][0]
    return {
        "name": name, "n": n, "voxels": int(np.prod(grid)), "file_gib": ref.stat().st_size / 2**30,
        "make_s": t_make, "wall_s": wall, "peak_rss_gib": peak_kib / 2**20,
        "steps": {"scan_reference": m["timings_s"]["scan_reference"],
                                                            **g["timings_s"], "plots": m["timings_s"]["plots"]},
        "auc_high": g["classifiers"]["high"]["auc"], "epochs_run": g["classifiers"]["high"]["per_run"][0]["epochs_run"],
        "fpd_x1e3": (g["fpd"] or {}).get("value_x1e3"), "kpd_x1e3": (g["kpd"] or {}).get("value_x1e3"),
        "command": " ".join(["caloforge", *args]),
    }


def machine() -> str:
    import torch

    load = os.getloadavg()
    return (f"{os.cpu_count()} cores (`nproc`), {cpu_model()}; torch {torch.__version__}, numpy {np.__version__}, "
            f"Python {platform.python_version()}; load average at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}")


def to_markdown(rows: list[dict], args, argv: list[str]) -> str:
    lines = ["# Evaluation cost (`caloforge evaluate`)", "",
             f"Machine: {machine()}.", "",
             ("The load average was above the core count: other jobs shared the machine, so wall times are upper "
              "bounds for a dedicated machine." if os.getloadavg()[1] > (os.cpu_count() or 1) else
              "The machine was otherwise idle while this ran."), "",
             f"Reproduce: `python benchmarks/evaluation_cost.py {' '.join(argv)}`", "",
             ("| case | showers per file | voxels | file size | wall time | peak RSS | scan ref | scan gen | hist | FPD | "
             "KPD | cls-high (epochs) | plots |"),
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        s = r["steps"]
        lines.append(
            f"| {r['name']} | {r['n']} | {r['voxels']} | {r['file_gib']:.2f} GiB | {r['wall_s']:.0f} s | "
            f"{r['peak_rss_gib']:.2f} GiB | {s['scan_reference']:.0f} s | {s['scan']:.0f} s | {s['histograms']:.1f} s | "
            f"{s.get('fpd', float('nan')):.0f} s | {s.get('kpd', float('nan')):.0f} s | "
            f"{s.get('classifier_high', float('nan')):.0f} s ({r['epochs_run']}) | {s['plots']:.0f} s |")
    lines += ["", "Commands run (inputs written on the fly by the script, uncompressed HDF5):", ""]
    lines += [f"- {r['name']}: `{r['command']}`" for r in rows]
    aucs = ", ".join(f"{r['name']} {r['auc_high']:.3f}" for r in rows)
    lines += ["", "Notes:", "",
              "- Peak RSS is the child process's maximum resident set (all inputs are streamed in batches; what stays",
              "  in memory is the high-level features, the average showers and the classifier's feature matrix).",
              "- The classifier is the fast default protocol (float32, 3 x 512, patience 5); `--official` (float64,",
              "  3 x 2048, 50 epochs) costs roughly 16x more per epoch and is meant for a GPU.",
              "- FPD/KPD use the official jetnet settings (FPD: 10 sizes x 20 draws up to 50k rows; KPD: 10 x 10k).",
              f"- AUC (high) of the two toy draws: {aucs} (same model: ~0.5 expected).", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ds2-n", type=int, default=100_000)
    p.add_argument("--ds3-n", type=int, default=20_000)
    p.add_argument("--epochs", type=int, default=None, help="cap the classifier epochs (default: the fast protocol)")
    p.add_argument("--workdir", default=None, help="where the temporary inputs go (default: a temp folder)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "evaluation_cost.md"))
    args = p.parse_args(argv)
    extra = ["--epochs", str(args.epochs)] if args.epochs else []
    work = Path(args.workdir or tempfile.mkdtemp(prefix="caloforge_evalcost_"))
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cases = [("DS2", "2", args.ds2_n, (45, 16, 9)), ("DS3", "3", args.ds3_n, (45, 50, 18))]
    try:
        for name, dataset, n, grid in cases:
            if not n:
                continue
            rows.append(run_case(name, dataset, n, grid, work, extra))
            for f in work.glob(f"{name}_*.h5"):
                f.unlink()
            text = to_markdown(rows, args, argv)  # rewritten after every case: partial results survive
            tmp = out.with_suffix(".md.tmp")
            tmp.write_text(text)
            os.replace(tmp, out)
            print(rows[-1], flush=True)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    print(text)


if __name__ == "__main__":
    main()
