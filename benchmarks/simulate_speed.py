"""Cost of `caloforge simulate` (Geant4): seconds per shower vs energy on one core, and scaling with workers.

Part 1 runs the Geant4 application in one process (after a warm-up shower, so physics-table building is excluded)
and times par04-siw electrons at fixed energies. Part 2 runs the whole driver (`simulate_file`: worker start-up,
chunks, file) with 1 and 2 workers on the same request, side by side. The machine is shared: each row records the
load average when it started.

Run:  OMP_NUM_THREADS=1 python benchmarks/simulate_speed.py [--energies 1,10,100] [--showers 20,6,2]
      [--scaling-n 40] [--scaling-gev 2]
Writes benchmarks/results/simulate.md.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

from machine import cpu_model

_CHILD = """
import json, sys, time, numpy as np
from caloforge.simulate import g4env
g4env.prepare()
from caloforge.simulate.g4app import Simulator
from caloforge.simulate.detectors import PRESETS
sim = Simulator(PRESETS["par04-siw"], "e-")
sim.run([1000.0], [np.pi / 2], [0.0], [[1, 1]])
rows = []
for e, n in zip(json.loads(sys.argv[1]), json.loads(sys.argv[2])):
    load = __import__("os").getloadavg()[0]
    t = time.perf_counter(); c = time.process_time()
    sim.run([e * 1e3] * n, [np.pi / 2] * n, [0.0] * n, [[i + 2, 3] for i in range(n)])
    rows.append([e, n, (time.perf_counter() - t) / n, (time.process_time() - c) / n, load])
print("ROWS" + json.dumps(rows))
"""


def per_energy(energies, showers) -> list:
    proc = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(energies), json.dumps(showers)],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, check=True)
    line = next(x for x in proc.stdout.splitlines() if x.startswith("ROWS"))
    return json.loads(line[4:])


def scaling(n: int, gev: float) -> list:
    from caloforge.simulate.detectors import PRESETS
    from caloforge.simulate.g4run import Request, simulate_file

    rows = []
    for workers in (1, 2):
        req = Request(PRESETS["par04-siw"], "e-", n, seed=5, energy_range_gev=None, energy_list_gev=(gev,),
                      chunk=5)
        load = os.getloadavg()[0]
        t = time.perf_counter()
        simulate_file(req, f"/tmp/caloforge_speed_w{workers}.h5", workers=workers, force=True)
        rows.append([workers, n, time.perf_counter() - t, load])
    return rows


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--energies", default="1,10,100")
    ap.add_argument("--showers", default="20,6,2")
    ap.add_argument("--scaling-n", type=int, default=40)
    ap.add_argument("--scaling-gev", type=float, default=2.0)
    args = ap.parse_args()
    energies = [float(x) for x in args.energies.split(",")]
    showers = [int(x) for x in args.showers.split(",")]
    one = per_energy(energies, showers)
    two = scaling(args.scaling_n, args.scaling_gev)
    base = two[0][2]
    lines = [
        "# `caloforge simulate` (Geant4) cost", "",
        (f"Command: `OMP_NUM_THREADS=1 python benchmarks/simulate_speed.py --energies {args.energies} --showers "
        f"{args.showers} --scaling-n {args.scaling_n} --scaling-gev {args.scaling_gev:g}`"), "",
        (f"Machine: {cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}, geant4-pybind 0.1.3 "
        "(Geant4 11.4.p01), physics em_opt1, cut 0.7 mm, offline stand-in tables. The machine is shared by up to 8 "
        "jobs: wall time per shower inflates with the load; CPU time per shower is the better per-core figure."), "",
        "## Seconds per shower vs energy (par04-siw electrons, one process, tables already built)", "",
        "| E (GeV) | showers | wall s/shower | CPU s/shower | CPU ms/GeV | load avg (1 min) |", "|---|---|---|---|---|---|",
        *[f"| {e:g} | {n} | {w:.3f} | {c:.3f} | {1e3 * c / e:.1f} | {ld:.1f} |" for e, n, w, c, ld in one], "",
        f"## Scaling with workers (whole driver, {args.scaling_n} showers at {args.scaling_gev:g} GeV, chunks of 5)", "",
        "| workers | showers | wall s | showers/s | speed-up vs 1 | load avg (1 min) |", "|---|---|---|---|---|---|",
        *[f"| {w} | {n} | {t:.1f} | {n / t:.2f} | {base / t:.2f} | {ld:.1f} |" for w, n, t, ld in two], "",
        ("The wall time includes spawning the workers (~1.5 s each: import, geometry, physics tables) and writing the "
        "file. On 2 cores that other jobs also use, a second worker helps only as far as a core is free."), ""]
    text = "\n".join(lines)
    Path(__file__).with_name("results").joinpath("simulate.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
