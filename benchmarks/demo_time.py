"""The first ten minutes, measured as a new user meets them: clone the repository's HEAD into a fresh folder and run
`make demo` there (set-up included) under `/usr/bin/time -v`; report wall and CPU time, peak RSS, the demo's own
stage times and its headline numbers beside the floor.

    python benchmarks/demo_time.py [--out benchmarks/results/demo_time.md]

Run it on an idle machine: the demo's training budget is wall time, so a loaded machine buys fewer steps.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from machine import cpu_model

REPO = Path(__file__).resolve().parents[1]


def time_v(stderr: str, label: str) -> str:
    m = re.search(rf"{re.escape(label)}: (.+)", stderr)
    return m.group(1).strip() if m else "?"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "demo_time.md")
    args = p.parse_args(argv)
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, check=True).stdout.strip()
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="caloforge_demo_") as tmp:
        clone = Path(tmp) / "caloforge"
        subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
        env = {**os.environ, "CALOFORGE_PROGRESS": "lines"}
        run = subprocess.run(["/usr/bin/time", "-v", "make", "demo"], cwd=clone, env=env, capture_output=True,
                             text=True, check=False)
        if run.returncode != 0:
            print(run.stdout[-3000:], run.stderr[-3000:], sep="\n")
            return run.returncode
        out = clone / "demo-out"
        stages = json.loads((out / "stage_seconds.json").read_text())
        gen = json.loads((out / "evaluation" / "metrics.json").read_text())["generated"][0]
        floor = json.loads((out / "floor.json").read_text())
        state = json.loads((out / "demo_state.json").read_text()) if (out / "demo_state.json").exists() else {}
    load1 = os.getloadavg()
    auc = {k: gen["classifiers"][k]["auc"] for k in ("high", "low")}
    auc_floor = {k: floor["classifiers"][k]["auc"] for k in ("high", "low")}
    rows = [("wall, set-up included", time_v(run.stderr, "Elapsed (wall clock) time (h:mm:ss or m:ss)")),
            ("CPU user + sys (s)", (f"{time_v(run.stderr, 'User time (seconds)')} + "
                                    f"{time_v(run.stderr, 'System time (seconds)')}")),
            ("peak RSS (kB)", time_v(run.stderr, "Maximum resident set size (kbytes)")),
            ("stage times (s)", ", ".join(f"{k} {v:.0f}" for k, v in stages.items())),
            ("training plan (seconds per step from the probe)", json.dumps(state.get("plan", {}))),
            ("AUC high / low", (f"{auc['high']:.3f} / {auc['low']:.3f} (floor {auc_floor['high']:.3f} / "
                                f"{auc_floor['low']:.3f})")),
            ("FPD x1e-3", f"{gen['fpd']['value_x1e3']:.4g} (floor {floor['fpd']['value_x1e3']:.4g})"),
            ("KPD x1e-3", f"{gen['kpd']['value_x1e3']:.4g} (floor {floor['kpd']['value_x1e3']:.4g})")]
    lines = ["# `make demo` from a fresh clone (benchmarks/demo_time.py)", "",
             ("Command: `python benchmarks/demo_time.py` (clones HEAD, then `CALOFORGE_PROGRESS=lines "
              "/usr/bin/time -v make demo` in the clone)"), "",
             (f"Machine: {os.cpu_count()} cores, {cpu_model()}; commit {commit}; load average {load0[0]:.1f} "
              f"before, {load1[0]:.1f} after."), "", "| | value |", "|---|---|", *[f"| {k} | {v} |" for k, v in rows]]
    from caloforge.outputs import atomic_write_text

    atomic_write_text(args.out, "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
