"""One- and few-step generation (issue 10): each distillation method at 1, 2 and 4 steps beside its teacher at the
teacher's default steps and the matched-size Geant4 floor, on the fidelity benchmark's split of the shared Geant4 set.

A row = one (method, steps): the distilled run is made once under --work (reused when present; its CPU time is read
from the run's distill.json), sampled at the test energies, evaluated like benchmarks/fidelity.py (same split, same
`evaluate_against`), and timed with one thread at batch 100 and batch 1 (caloforge.evaluation.timing).
Consistency and reflow runs are sampled at several step counts (one model); progressive keeps each round's student
(rounds/steps-N); bespoke learns one solver per step count.

Run:  python benchmarks/fewstep.py --teacher RUN --rows teacher,floor,consistency:1,progressive:4 [--threads 1]
      [--set consistency:train.steps=600 ...]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fidelity

RESULTS = fidelity.REPO / "benchmarks" / "results" / "fewstep.md"
COLUMNS = ("date (UTC)", "row", "steps", "NFE (voxel/layer)", "distill CPU min", "ms/shower bs100", "ms/shower bs1",
           "AUC high", "AUC low", "FPD x1e3", "KPD x1e3", "sep E_tot/E_inc", "sep E_layer", "load", "commit",
           "command")
#: settings of the distillations in the table (CPU-sized; see docs/distill.md), overridable with --set
DEFAULTS = {
    "consistency": ["train.steps=300", "train.lr=2e-4", "train.batch_size=32"],
    "progressive": ["train.steps=100", "train.lr=2e-4", "train.batch_size=32", "progressive.start_steps=8"],
    "reflow": ["train.steps=300", "train.lr=2e-4", "train.batch_size=32", "reflow.pairs=512"],
    "bespoke": ["bespoke.iterations=100", "bespoke.trajectories=32", "bespoke.knots=16", "bespoke.batch=8"],
}


def parse_rows(spec: str) -> list[tuple[str, int | None]]:
    """'teacher,floor,consistency:1' -> [('teacher', None), ('floor', None), ('consistency', 1)]."""
    rows = []
    for item in (s.strip() for s in spec.split(",") if s.strip()):
        name, _, steps = item.partition(":")
        if name in ("teacher", "floor") and not steps:
            rows.append((name, None))
        elif name in DEFAULTS and steps.isdigit() and int(steps) >= 1:
            rows.append((name, int(steps)))
        else:
            raise SystemExit(f"fewstep: --rows: expected teacher, floor or METHOD:STEPS (METHOD one of "
                             f"{', '.join(DEFAULTS)}), found {item!r}")
    return rows


def run_for(method: str, steps: int, work: Path) -> tuple[Path, int, Path]:
    """(run to sample, steps to sample at, run whose distill.json holds the cost) of a table row."""
    if method in ("consistency", "reflow"):
        run = work / f"{method}"
        return run, steps, run
    if method == "progressive":
        run = work / "progressive"
        return (run if steps == 1 else run / "rounds" / f"steps-{steps}"), steps, run
    run = work / f"bespoke-{steps}"
    return run, steps, run


def ensure_run(method: str, steps: int, teacher: Path, train: Path, work: Path, extra: list[str]) -> Path:
    from caloforge.training.distill import distill

    _, _, made = run_for(method, steps, work)
    if not (made / "distill.json").is_file():
        final = steps if method == "bespoke" else 1
        distill(method, teacher, train, made, steps=final, overrides=DEFAULTS[method] + extra, device="cpu")
    return made


def load_at(run: Path, steps: int | None):
    """The run's Generator with BOTH stages at ``steps`` (a consistency/reflow model serves every step count; the
    Generator's ``steps`` argument moves only the voxel stage, the layer stage follows ``layer_model.steps``)."""
    from caloforge.sampling.generator import Generator

    gen = Generator.load(run, device="cpu")
    if steps is not None and gen.two_stage:
        lm = gen.config.layer_model.model_copy(update={"steps": steps})
        gen.config = gen.config.model_copy(update={"layer_model": lm})
    return gen


def sample_test(run: Path, steps: int | None, test_path: Path, out_path: Path) -> dict:
    from caloforge.data.reader import ShowerFile
    from caloforge.data.writer import write_showers

    gen = load_at(run, steps)
    with ShowerFile(test_path) as f:
        energies = f.energies()
    showers, _ = gen.generate(energies, steps=steps, seed=0, batch_size=500)
    write_showers(out_path, energies, showers, geometry=gen.geometry)
    return {"params": sum(p.numel() for p in gen.net.parameters())}


def timing(run: Path, steps: int | None) -> dict:
    from caloforge.evaluation.timing import bench_generator

    gen = load_at(run, steps)
    res = bench_generator(gen, batch_sizes=(1, 100), threads=(1,), steps=steps, repeats=2, warmup=1)
    ms = {r["batch_size"]: r.get("ms_per_shower") for r in res["rows"]}
    return {"ms/shower bs100": ms.get(100), "ms/shower bs1": ms.get(1),
            "NFE (voxel/layer)": f"{gen.nfe(None, steps)}/{gen.layer_nfe()}"}


def evaluate_against(gen_path: Path, ref_path: Path, out_dir: Path, train_path: Path | None, repeats: int) -> dict:
    """fidelity.evaluate_against without the plots (they cost minutes on a loaded machine and no number)."""
    from caloforge.data.reader import ShowerFile
    from caloforge.evaluation.report import evaluate

    with ShowerFile(gen_path) as g, ShowerFile(ref_path) as r:
        fpd_opts, kpd_opts = fidelity.pd_options(r.n, g.n)
    return evaluate([gen_path], ref_path, out_dir=out_dir, classifiers=("high", "low"), repeats=repeats, seed=0,
                    train_path=train_path, fpd_options=fpd_opts, kpd_options=kpd_opts, device="cpu", plots=False)


def measure(run: Path, steps: int | None, paths: dict, out: Path, repeats: int) -> dict:
    smp = sample_test(run, steps, paths["test"], out / "generated.h5")
    metrics = evaluate_against(out / "generated.h5", paths["test"], out / "eval", paths["train"], repeats)
    return {**fidelity.headline(metrics), **timing(run, steps), "params": smp["params"]}


def table_header() -> str:
    return "| " + " | ".join(COLUMNS) + " |\n|" + "---|" * len(COLUMNS)


def format_row(row: dict) -> str:
    return "| " + " | ".join(fidelity._cell(row.get(c)) for c in COLUMNS) + " |"


PREAMBLE = """# One- and few-step generation (issue 10)

Reproduce a row with its `command` (`benchmarks/fewstep.py`; protocol in docs/distill.md). Data and evaluation as in
benchmarks/results/fidelity.md: the seeded 0.7/0.1/0.2 split of the shared Geant4 file (seed 1001), one sample per
test energy (1700), `evaluate_against` with the fast classifier protocol, FPD/KPD x1e3 with the finite-sample term
(compare with the `floor` row, Geant4 train-part showers vs the test part at matched size). ms/shower: one thread,
batch 100 and batch 1, median of 2 repeats after a warm-up, on a shared 2-core machine (`load` = 1-minute load
average when the row started: above 2 the row got less than the whole machine, so timings are upper bounds).
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--teacher", type=Path, required=True, help="the teacher run directory")
    ap.add_argument("--rows", default="teacher,floor,consistency:1,consistency:2,consistency:4,progressive:1,"
                                      "progressive:2,progressive:4,reflow:1,reflow:2,reflow:4,bespoke:4")
    ap.add_argument("--data", type=Path, default=fidelity.DEFAULT_DATA)
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "caloforge-fewstep")
    ap.add_argument("--split-work", type=Path, default=Path(tempfile.gettempdir()) / "caloforge-fidelity",
                    help="where the fidelity split is cached")
    ap.add_argument("--set", action="append", default=[], metavar="METHOD:key=value",
                    help="extra distill settings for one method, e.g. consistency:train.steps=1000")
    ap.add_argument("--repeats", type=int, default=1, help="classifier repeats")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument("--tag", default="")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    rows = parse_rows(args.rows)
    extra: dict[str, list[str]] = {m: [] for m in DEFAULTS}
    for s in args.set:
        method, _, kv = s.partition(":")
        if method not in extra or "=" not in kv:
            raise SystemExit(f"fewstep: --set: expected METHOD:key=value, found {s!r}")
        extra[method].append(kv)
    paths = fidelity.cached_split(args.data, args.split_work)
    args.work.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/fewstep.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    for name, steps in rows:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        row = {"date (UTC)": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M"), "steps": steps,
               "load": f"{os.getloadavg()[0]:.1f}", "commit": fidelity.git_commit(),
               "command": f"`{command} --rows {name}{'' if steps is None else f':{steps}'}`"}
        out = args.work / f"eval-{name}-{steps}-{stamp}"
        out.mkdir(parents=True)
        t0 = time.monotonic()
        if name == "floor":
            gen_path, ref_path, _ = fidelity.baseline_files("geant4-train", paths, args.work)
            metrics = evaluate_against(gen_path, ref_path, out / "eval", None, args.repeats)
            row.update({"row": "Geant4 floor (train-part showers vs test, matched size)", **fidelity.headline(metrics)})
        elif name == "teacher":
            row.update({"row": f"teacher {args.teacher.name} (default solver/steps)",
                        **measure(args.teacher, None, paths, out, args.repeats)})
        else:
            made = ensure_run(name, steps, args.teacher, paths["train"], args.work, extra[name])
            info = json.loads((made / "distill.json").read_text())
            run, k, _ = run_for(name, steps, args.work)
            row.update({"row": f"{name}" + (f" ({' '.join(extra[name])})" if extra[name] else ""),
                        "distill CPU min": info["cpu_seconds"] / 60, **measure(run, k, paths, out, args.repeats)})
        print(format_row(row), f"({time.monotonic() - t0:.0f} s)", flush=True)
        text = args.results.read_text() if args.results.is_file() else PREAMBLE + "\n" + table_header() + "\n"
        fidelity.atomic_write(args.results, text.rstrip("\n") + "\n" + format_row(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
