"""Single-core throughput of the GFlash generator (caloforge.simulate) on the DS2 and DS3 meshes, 1-100 GeV.

Run:  OMP_NUM_THREADS=1 python benchmarks/generator_throughput.py [--n-ds2 4000] [--n-ds3 1000]
Prints a table and writes benchmarks/results/generator_throughput.md with the machine description.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy is imported: one core, as the target is per core

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
from machine import cpu_model

from caloforge.simulate.generate import generate, sample_energies

TARGET_PER_S = 1000.0


def one_core():
    try:
        from threadpoolctl import threadpool_limits

        return threadpool_limits(1)
    except ImportError:
        import contextlib

        return contextlib.nullcontext()


def measure(preset: str, n: int, repeats: int = 3) -> dict:
    e = sample_energies(n, (1e3, 1e5), seed=0)
    generate(preset, e[:50], seed=0)  # warm-up (imports, caches)
    best = float("inf")
    for r in range(repeats):
        t0 = time.perf_counter()
        s = generate(preset, e, seed=r)
        best = min(best, time.perf_counter() - t0)
    return {"preset": preset, "n": n, "voxels": s.shape[1], "seconds": best, "rate": n / best}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-ds2", type=int, default=4000)
    ap.add_argument("--n-ds3", type=int, default=1000)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "generator_throughput.md"))
    args = ap.parse_args(argv)
    with one_core():
        rows = [measure("par04-siw", args.n_ds2), measure("par04-siw-ds3", args.n_ds3)]
    import torch  # only for the version line of the machine description

    lines = [
        "# GFlash generator throughput (one CPU core)",
        "",
        (f"Command: `OMP_NUM_THREADS=1 python benchmarks/generator_throughput.py --n-ds2 {args.n_ds2} "
         f"--n-ds3 {args.n_ds3}`"),
        "",
        (f"Machine: nproc={os.cpu_count()}, CPU `{cpu_model()}`, Python {platform.python_version()}, "
         f"numpy {np.__version__}, torch {torch.__version__} (not used by the generator), OMP_NUM_THREADS="
         f"{os.environ.get('OMP_NUM_THREADS')}, threadpoolctl limit 1 when installed. The machine is shared by "
         "other jobs; the best of 3 repeats is reported."),
        "",
        "Energies log-uniform 1-100 GeV (`sample_energies(n, (1e3, 1e5), seed=0)`), electrons, normal incidence.",
        "",
        "| preset | mesh voxels | showers | best time (s) | showers/s (1 core) | vs target 1000/s |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['preset']} | {r['voxels']} | {r['n']} | {r['seconds']:.3f} | {r['rate']:.0f} | "
                     f"{r['rate'] / TARGET_PER_S:.2f}x |")
    lines += [
        "",
        ("Cost is O(voxels) per shower (one Poisson draw per voxel, one Gamma draw per hit voxel), not O(spots), so "
         "it barely depends on energy; DS3 has 6.25x the voxels of DS2 and is correspondingly slower."),
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
