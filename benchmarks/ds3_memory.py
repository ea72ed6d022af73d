"""Peak memory of a dataset-3-size file through make, train, sample and evaluate (issue 13).

Question: does a 20,000-shower file on the dataset-3 mesh (40,500 voxels; 3.2 GB of float32 showers) go through
training, sampling and evaluation with a bounded peak RSS (target <= 4 GB each), i.e. is nothing holding the whole
file in RAM? Each stage runs as its own process under ``/usr/bin/time -v``; the row records the command, the
maximum resident set size, the wall time and the 1-minute load average at the start.

    python benchmarks/ds3_memory.py --work /scratch/ds3 [--n 20000] [--sample-n 1000] [--skip-make]

Writes ``benchmarks/results/ds3_memory_rerun.md`` (rewritten atomically; ``ds3_memory.md`` is the annotated
record). The work folder holds the data and the run; keep it outside the repository.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_model

RESULTS = Path(__file__).resolve().parent / "results" / "ds3_memory_rerun.md"  # ds3_memory.md: annotated record
CLI = [sys.executable, "-m", "caloforge.cli.main"]


def stage_commands(work: Path, n: int, sample_n: int) -> dict[str, list[str]]:
    data, run, gen = work / "ds3_train.h5", work / "run", work / "ds3_gen.h5"
    return {
        "make": [*CLI, "data", "make", "--detector", "par04-siw-ds3", "--n", str(n), "--energy-range", "1:1000",
                 "--chunk", "500", "--out", str(data)],
        "train": [*CLI, "train", "--recipe", "cpu-ds3-largepatch", "--data", str(data), "--out", str(run),
                  "--device", "cpu"],
        "sample": [*CLI, "sample", "--checkpoint", str(run), "--energies-from", str(data), "--n", str(sample_n),
                   "--chunk", "250", "--batch-size", "250", "--device", "cpu", "--out", str(gen)],
        "evaluate": [*CLI, "evaluate", "--gen", str(gen), "--ref", str(data), "--dataset", "3", "--classifiers",
                     "high", "--no-kpd", "--epochs", "5", "--device", "cpu", "--out", str(work / "eval")],
    }


def timed(cmd: list[str]) -> dict:
    """Run cmd under /usr/bin/time -v; peak RSS (MB), wall time and exit status."""
    load = os.getloadavg()[0]
    proc = subprocess.run(["/usr/bin/time", "-v", *cmd], check=False, capture_output=True, text=True)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", proc.stderr)
    return {"rss_mb": int(rss.group(1)) / 1024 if rss else float("nan"), "wall": wall.group(1) if wall else "?",
            "rc": proc.returncode, "load": load, "tail": proc.stderr.strip().splitlines()[-1:] if proc.returncode else []}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--sample-n", type=int, default=1000)
    ap.add_argument("--skip-make", action="store_true", help="reuse WORK/ds3_train.h5")
    args = ap.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    rows = []
    for stage, cmd in stage_commands(args.work, args.n, args.sample_n).items():
        if stage == "make" and args.skip_make:
            continue
        r = timed(cmd)
        rows.append(f"| {stage} | {r['rss_mb']:.0f} | {r['wall']} | {r['rc']} | {r['load']:.1f} | "
                    f"`{' '.join(cmd[2:])}` |")
        print(rows[-1], flush=True)
        if r["rc"]:
            print(f"{stage} failed: {r['tail']}", file=sys.stderr)
            break
    from caloforge.outputs import atomic_write_text

    atomic_write_text(RESULTS, "\n".join([
        "# Dataset-3 size through make / train / sample / evaluate: peak memory", "",
        (f"Machine: {os.cpu_count()} cores, {cpu_model()}. Command: `python benchmarks/ds3_memory.py --work "
         f"{args.work} --n {args.n} --sample-n {args.sample_n}`."), "",
        "| stage | peak RSS MB | wall | exit | load | command (python -m caloforge.cli.main ...) |",
        "|---|---|---|---|---|---|", *rows, ""]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
