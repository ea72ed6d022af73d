"""The rest of the CaloChallenge at a fixed CPU budget (issue 13): CaloArt's dataset-3 question (x- against
v-prediction, loss in v, at large patches) and a fidelity row for each dataset-1 recipe.

    python benchmarks/challenge_sets.py ds3 [--budget-min 8] [--patches 5x10x6,9x10x6] [--n 10000]
    python benchmarks/challenge_sets.py ds1 [--budget-min 8] [--n 10000]
        [--work /tmp/caloforge-challenge] [--out benchmarks/results/challenge_sets.md] [--threads 1]

Each row is one `benchmarks/fidelity.py` run (probe, training inside the budget, one shower per test energy, the
fidelity evaluation) on a parametrised file made here with `caloforge data make` (`par04-siw-ds3`, 1-1000 GeV;
`atlas-ds1-photons` / `atlas-ds1-pions`, 256 MeV-4.2 TeV), split 70/10/20 with fidelity.py's seed; the `floor` row is
training-part showers against the test part at the same size. Rows run one after another; two invocations with
different --only values may run at once with --threads 1 (the rows record the load).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from machine import cpu_model

REPO = Path(__file__).resolve().parents[1]
FIDELITY = REPO / "benchmarks" / "fidelity.py"
#: set -> (preset, energy range GeV, file seed)
DATA = {"ds3": [("par04-siw-ds3", "1:1000", 3)],
        "ds1": [("atlas-ds1-photons", "0.256:4194.304", 11), ("atlas-ds1-pions", "0.256:4194.304", 12)]}
RECIPE = {"par04-siw-ds3": "cpu-ds3-largepatch", "atlas-ds1-photons": "ds1-photons", "atlas-ds1-pions": "ds1-pions"}


def parse_patch(text: str) -> list[int]:
    """'5x10x6' -> [5, 10, 6]."""
    try:
        patch = [int(p) for p in text.split("x")]
    except ValueError:
        patch = []
    if len(patch) != 3 or min(patch) < 1:
        raise SystemExit(f"challenge_sets: --patches: expected ZxAxR patch sizes like 5x10x6, found {text!r}")
    return patch


def rows(which: str, budget: float, patches: list[str]) -> list[tuple[str, str, list[str]]]:
    """(preset, tag, fidelity.py arguments after --data) of every row of one set, the floor first."""
    out = []
    for preset, _, _ in DATA[which]:
        repeats = ["--repeats", "1"] if which == "ds3" else []  # a 40,500-input classifier: one repeat per row
        out.append((preset, f"{preset}-floor", ["--baseline", "geant4-train", *repeats]))
        if which == "ds1":
            out.append((preset, preset, ["--recipe", RECIPE[preset], "--budget-min", f"{budget:g}"]))
            continue
        for patch in patches:
            p = parse_patch(patch)
            for pred in ("x", "v"):
                out.append((preset, f"ds3-{pred}-p{patch}",
                            ["--recipe", RECIPE[preset], "--budget-min", f"{budget:g}", *repeats,
                             f"model.patch=[{p[0]},{p[1]},{p[2]}]", f"objective.prediction={pred}"]))
    return out


def ensure_data(preset: str, energy: str, seed: int, n: int, work: Path) -> Path:
    path = work / f"{preset}_{n}.h5"
    if not path.is_file():
        subprocess.run([sys.executable, "-m", "caloforge.cli.main", "data", "make", "--detector", preset, "--n",
                        str(n), "--energy-range", energy, "--seed", str(seed), "--out", str(path)], check=True)
    return path


def preamble(which: str, n: int) -> str:
    import torch

    return (f"# The rest of the CaloChallenge at a fixed CPU budget (issue 13)\n\n"
            f"Script: `python benchmarks/challenge_sets.py {which}` (rows by `benchmarks/fidelity.py`; each row's "
            f"command reproduces it). Machine: {os.cpu_count()} cores, {cpu_model()}, torch {torch.__version__}. "
            f"Data: {n} parametrised showers per preset, split 70/10/20; the test part is never trained on.\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("which", choices=sorted(DATA))
    ap.add_argument("--budget-min", type=float, default=8.0)
    ap.add_argument("--patches", default="5x10x6,9x10x6", help="ds3: patch sizes (z x alpha x r), comma-separated")
    ap.add_argument("--n", type=int, default=10000, help="showers per data file")
    ap.add_argument("--work", type=Path, default=Path("/tmp/caloforge-challenge"))
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "challenge_sets.md")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", help="comma-separated row tags to run (default: all)")
    args = ap.parse_args(argv)
    table = rows(args.which, args.budget_min, args.patches.split(","))
    only = set(args.only.split(",")) if args.only else None
    if only and not only <= {tag for _, tag, _ in table}:
        raise SystemExit(f"challenge_sets: --only: unknown tags {sorted(only - {t for _, t, _ in table})}; "
                         f"expected some of {[t for _, t, _ in table]}")
    args.work.mkdir(parents=True, exist_ok=True)
    files = {p: ensure_data(p, e, s, args.n, args.work) for p, e, s in DATA[args.which]}
    if not args.out.is_file():
        from fidelity import table_header

        from caloforge.outputs import atomic_write_text

        atomic_write_text(args.out, preamble(args.which, args.n) + "\n" + table_header() + "\n")
    for preset, tag, extra in table:
        if only and tag not in only:
            continue
        subprocess.run([sys.executable, str(FIDELITY), "--data", str(files[preset]), "--work", str(args.work),
                        "--results", str(args.out), "--threads", str(args.threads), "--tag", tag, *extra], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
