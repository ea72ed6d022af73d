"""Fidelity at a fixed CPU budget on the shared Geant4 DS2-mesh electrons (issue 5).

One run = one row of benchmarks/results/fidelity.md: a fixed seeded split of the Geant4 file (train / val / test,
cached under the work dir, the test part never trained on), training of a recipe inside a wall-clock budget (a short
probe measures the time per step, the step count - and so the LR schedule - is set to fill the budget, and a timer
stops training at the deadline in any case), sampling as many showers as the test part with its incident energies,
and caloforge's evaluation against the test part.

Run:  python benchmarks/fidelity.py --recipe cpu-fm-v --budget-min 10 [key=value ...] [--tag T]
      python benchmarks/fidelity.py --baseline geant4        (floor: the two halves of the test part)
      python benchmarks/fidelity.py --baseline geant4-train  (floor at matched size: train-part showers vs test)
      python benchmarks/fidelity.py --baseline gflash        (GFlash par04-siw showers at the test energies)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "g4_par04_ds2_electrons_1-100GeV_A.h5"
RESULTS = REPO / "benchmarks" / "results" / "fidelity.md"
SPLIT_SEED = 1001
SPLIT_FRACTIONS = (0.7, 0.1, 0.2)
PROBE_STEPS = 30
PROBE_SHARE = 0.2  # the probe is stopped after this fraction of the budget, whatever it measured by then
SAFETY = 0.92  # fraction of the remaining budget the planned steps may fill (the machine is shared and noisy)

COLUMNS = ("date (UTC)", "tag", "recipe", "overrides", "budget min", "train min", "params", "steps", "NFE",
           "ms/shower", "AUC high", "AUC low", "FPD x1e3", "KPD x1e3", "sep E_tot/E_inc", "sep E_layer", "val loss",
           "load", "commit", "command")


# ---- pure parts (tested in tests/test_fidelity_script.py) --------------------------------------------------------
def split_dir(data: Path, work: Path, seed: int = SPLIT_SEED, fractions=SPLIT_FRACTIONS) -> Path:
    """Where the cached split of ``data`` lives; the name carries everything that defines the split."""
    frac = "-".join(f"{f:g}" for f in fractions)
    return Path(work) / f"split-{Path(data).stem}-seed{seed}-{frac}"


def cached_split(data: Path, work: Path, seed: int = SPLIT_SEED, fractions=SPLIT_FRACTIONS) -> dict[str, Path]:
    """train / val / test files of the seeded split, made once and reused while the source is unchanged."""
    from caloforge.data.split import split_file

    out = split_dir(data, work, seed, fractions)
    stat = Path(data).stat()
    manifest = {"source": str(Path(data).resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                "seed": seed, "fractions": list(fractions)}
    paths = {k: out / f"{Path(data).stem}_{k}.h5" for k in ("train", "val", "test")}
    man_path = out / "manifest.json"
    if (man_path.is_file() and all(p.is_file() for p in paths.values())
            and json.loads(man_path.read_text()) == manifest):
        return paths
    made = split_file(data, out_dir=out, fractions=fractions, seed=seed, force=True)  # a cache we own
    atomic_write(man_path, json.dumps(manifest, indent=1))
    return {k: Path(v) for k, v in made.items()}


def plan_steps(seconds_per_step: float, budget_s: float, spent_s: float, setup_s: float,
               safety: float = SAFETY) -> int:
    """Optimiser steps that fit in what is left of the budget after the probe and the next run's setup."""
    if not seconds_per_step > 0:
        raise ValueError(f"seconds_per_step must be > 0, found {seconds_per_step}")
    left = budget_s - spent_s - setup_s
    return max(int(safety * left / seconds_per_step), 1)


def seconds_per_step(records: list[dict], batch_size: int) -> float:
    """Median time per step from the trainer's metrics.jsonl records, ignoring the first (warm-up) interval."""
    rates = [r["samples_per_s"] for r in records if "samples_per_s" in r]
    rates = rates[1:] if len(rates) > 1 else rates
    if not rates:
        raise ValueError("no samples_per_s records in the probe's metrics")
    return batch_size / float(np.median(rates))


def _cell(value, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def format_row(row: dict) -> str:
    """One Markdown table row in COLUMNS order (missing values as '-', pipes escaped)."""
    return "| " + " | ".join(_cell(row.get(c)) for c in COLUMNS) + " |"


def table_header() -> str:
    return "| " + " | ".join(COLUMNS) + " |\n|" + "---|" * len(COLUMNS)


def headline(metrics: dict) -> dict:
    """The row's metric cells from caloforge.evaluation.report.evaluate's metrics dict (first generated file)."""
    g = metrics["generated"][0]
    summ = g["separation_power"]["summary"]
    cls = g["classifiers"]

    def auc(mode):
        c = cls.get(mode)
        return None if c is None else f"{c['auc']:.3f}" + (f"±{c['auc_std']:.3f}" if c.get("auc_std") else "")

    def pd(name):
        v = g.get(name)
        return None if v is None else f"{v['value_x1e3']:.3g}±{v['error_x1e3']:.2g}"

    return {"AUC high": auc("high"), "AUC low": auc("low"), "FPD x1e3": pd("fpd"), "KPD x1e3": pd("kpd"),
            "sep E_tot/E_inc": summ.get("E_ratio", {}).get("mean"), "sep E_layer": summ.get("E_layer", {}).get("mean")}


def atomic_write(path: Path, text: str) -> None:
    from caloforge.outputs import atomic_write_text

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)


def append_row(path: Path, row: dict, preamble: str) -> None:
    """Append a row to the results table; a new file starts with the preamble and the header."""
    path = Path(path)
    text = path.read_text() if path.is_file() else preamble.rstrip() + "\n\n" + table_header() + "\n"
    atomic_write(path, text.rstrip("\n") + "\n" + format_row(row) + "\n")


# ---- machine and provenance --------------------------------------------------------------------------------------
def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                             check=False)
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "src", "benchmarks/fidelity.py"], cwd=REPO,
                               check=False).returncode == 1
        return (out.stdout.strip() or "none") + ("+dirty" if dirty else "")
    except OSError:
        return "none"


def preamble(data: Path) -> str:
    import torch

    return (f"# Fidelity at a fixed CPU budget (issue 5)\n\n"
            f"Machine: {os.cpu_count()} cores (`nproc`), {cpu_model()}, Python {platform.python_version()}, "
            f"torch {torch.__version__}, numpy {np.__version__}. The machine is shared: `load` is the 1-minute load "
            f"average when the run started (2 cores; above 2 the run got less than the whole machine).\n\n"
            f"Data: `{data.name}` (8500 Geant4 electrons, 1-100 GeV, DS2 mesh), split train/val/test "
            f"{'/'.join(f'{f:g}' for f in SPLIT_FRACTIONS)} with seed {SPLIT_SEED} (5950/850/1700 showers); the test "
            f"part is never trained on.\n\n"
            f"Protocol (docs/fidelity.md): budget = probe + training wall time; sample one shower per test energy; "
            f"`caloforge.evaluation.report.evaluate` against the test part with the fast classifier protocol "
            f"(high- and low-level DNN, mean±std over repeats), FPD/KPD x1e3 (jetnet algorithm, draw sizes scaled to "
            f"the samples; FPD carries a finite-sample term ~ 362 (1/n1 + 1/n2), so compare it with the matched-size "
            f"`geant4-train` floor, not with published values), separation power of "
            f"E_tot/E_inc and mean over layers of the layer energies. `steps` = done/planned. Reproduce a row with "
            f"its `command`.\n")


# ---- training, sampling, evaluation ------------------------------------------------------------------------------
def _train_with_deadline(recipe, train_path, val_path, out: Path, deadline: float):
    """trainer.train, stopped by SIGTERM at the wall-clock deadline (the trainer saves and returns cleanly)."""
    from caloforge.training.trainer import train

    # a late SIGTERM (after the trainer restored our handler) must not kill the benchmark
    previous = signal.signal(signal.SIGTERM, lambda *_: None)
    timer = threading.Timer(max(deadline - time.monotonic(), 0.0), os.kill, (os.getpid(), signal.SIGTERM))
    timer.daemon = True
    timer.start()
    try:
        return train(recipe, train_path, out, val_path=val_path, device="cpu")
    finally:
        timer.cancel()
        signal.signal(signal.SIGTERM, previous)


def _read_metrics(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def _with_train(recipe, **fields):
    return recipe.model_copy(update={"train": recipe.train.model_copy(update=fields)})


def train_in_budget(recipe, paths: dict, run_dir: Path, budget_s: float, fixed_steps: int | None = None) -> dict:
    """Probe, plan, train; returns what the row needs about training. ``fixed_steps`` replaces the plan (a row at the
    step count of another, e.g. x- against v-prediction when their probes read different loads); the deadline holds."""
    t0 = time.monotonic()
    deadline = t0 + budget_s
    probe_dir = run_dir / "probe"
    probe = _with_train(recipe, steps=PROBE_STEPS, log_every=5, ckpt_every=PROBE_STEPS, val_every=10**9,
                        warmup_steps=min(recipe.train.warmup_steps, PROBE_STEPS // 3))
    t_probe = time.monotonic()
    done = _train_with_deadline(probe, paths["train"], None, probe_dir, t0 + PROBE_SHARE * budget_s).step
    probe_s = time.monotonic() - t_probe
    try:
        sps = seconds_per_step(_read_metrics(probe_dir), recipe.train.batch_size)
    except ValueError:  # stopped before the first log interval (a very slow or loaded machine): a crude upper bound
        sps = probe_s / max(done, 1)
    setup_s = max(probe_s - done * sps, 0.0)
    steps = fixed_steps or plan_steps(sps, budget_s, time.monotonic() - t0, setup_s)
    warmup = min(recipe.train.warmup_steps, steps // 10)
    main = _with_train(recipe, steps=steps, warmup_steps=warmup, log_every=max(steps // 40, 1), ckpt_every=steps,
                       val_every=steps)
    res = _train_with_deadline(main, paths["train"], paths["val"], run_dir / "main", deadline)
    wall = time.monotonic() - t0
    val = [r["val_loss"] for r in _read_metrics(run_dir / "main") if "val_loss" in r]
    auto = [f"train.steps={steps}", f"train.warmup_steps={warmup}"]
    return {"steps": f"{res.step}/{steps}", "train_s": wall, "probe_s_per_step": sps, "val_loss": val[-1] if val
            else None, "completed": res.completed, "auto": auto}


def sample_test_energies(run_dir: Path, test_path: Path, out_path: Path, seed: int = 0, solver: str | None = None,
                         steps: int | None = None, use_ema: bool = True) -> dict:
    from caloforge.data.reader import ShowerFile
    from caloforge.data.writer import write_showers
    from caloforge.sampling.generator import Generator

    gen = Generator.load(run_dir, use_ema=use_ema, device="cpu")
    with ShowerFile(test_path) as f:
        energies = f.energies()
    showers, stats = gen.generate(energies, solver=solver, steps=steps, seed=seed, batch_size=500)
    write_showers(out_path, energies, showers, geometry=gen.geometry)
    params = sum(p.numel() for p in gen.net.parameters())
    return {"params": params, "nfe": stats["nfe"], "ms": stats["ms_per_shower"], "redrawn": stats.get("redrawn"),
            "step": gen.step, "recipe": gen.config.name}


def resample_row(args, paths: dict, stamp: str) -> dict:
    """Sampling-only ablations (solver, steps, EMA) on the trained model of an earlier fidelity run."""
    run = Path(args.from_run)
    if not (run / "main").is_dir():
        raise SystemExit(f"fidelity: --from-run: {run} holds no main/ training run (expected a fidelity run dir)")
    out = run / f"resample-{args.tag or 'x'}-{stamp}"
    out.mkdir(parents=True, exist_ok=False)
    smp = sample_test_energies(run / "main", paths["test"], out / "generated.h5", solver=args.solver,
                               steps=args.steps, use_ema=not args.no_ema)
    metrics = evaluate_against(out / "generated.h5", paths["test"], out / "eval", paths["train"], args.repeats)
    how = [f"sampler.solver={args.solver}" if args.solver else "", f"sampler.steps={args.steps}" if args.steps else "",
           "weights=raw (no EMA)" if args.no_ema else ""]
    return {"recipe": f"{smp['recipe']} (model of {run.name})", "overrides": " ".join(h for h in how if h) or "-",
            "params": smp["params"], "steps": str(smp["step"]), "NFE": smp["nfe"], "ms/shower": smp["ms"],
            **headline(metrics)}


def pd_options(n_ref: int, n_gen: int) -> tuple[dict, dict]:
    """FPD / KPD draw sizes scaled to the samples we have (see caloforge.evaluation.fpd_kpd.scaled_options)."""
    from caloforge.evaluation.fpd_kpd import scaled_options

    return scaled_options(n_ref, n_gen)


def evaluate_against(gen_path: Path, ref_path: Path, out_dir: Path, train_path: Path | None, repeats: int) -> dict:
    from caloforge.data.reader import ShowerFile
    from caloforge.evaluation.report import evaluate

    with ShowerFile(gen_path) as g, ShowerFile(ref_path) as r:
        fpd_opts, kpd_opts = pd_options(r.n, g.n)
    return evaluate([gen_path], ref_path, out_dir=out_dir, classifiers=("high", "low"), repeats=repeats, seed=0,
                    train_path=train_path, fpd_options=fpd_opts, kpd_options=kpd_opts, device="cpu",
                    force=True)


def _write_part(src: Path, rows: np.ndarray, out: Path) -> Path:
    from caloforge.data.reader import ShowerFile
    from caloforge.data.writer import write_showers

    with ShowerFile(src) as f:
        b = f.read(rows)
        write_showers(out, b.energies, b.showers, geometry=f.geometry)
    return out


def baseline_dir(kind: str, paths: dict, work: Path) -> Path:
    """One folder per baseline and data set (rows of different files may share --work and run at once)."""
    return Path(work) / f"baseline-{kind}-{Path(paths['test']).parent.name}"


def baseline_files(kind: str, paths: dict, work: Path) -> tuple[Path, Path, float | None]:
    """(generated, reference, generation ms/shower or None) of a baseline."""
    from caloforge.data.reader import ShowerFile

    base = baseline_dir(kind, paths, work)
    base.mkdir(parents=True, exist_ok=True)
    with ShowerFile(paths["test"]) as f:
        n, energies = f.n, f.energies()
    if kind == "geant4":
        perm = np.random.default_rng(SPLIT_SEED).permutation(n)
        half = n // 2
        return (_write_part(paths["test"], np.sort(perm[:half]), base / "test_half_a.h5"),
                _write_part(paths["test"], np.sort(perm[half:2 * half]), base / "test_half_b.h5"), None)
    if kind == "geant4-train":
        with ShowerFile(paths["train"]) as f:
            rows = np.sort(np.random.default_rng(SPLIT_SEED).choice(f.n, n, replace=False))
        return _write_part(paths["train"], rows, base / "train_subset.h5"), paths["test"], None
    if kind == "gflash":
        from caloforge.data.writer import write_showers
        from caloforge.simulate.generate import generate

        t0 = time.perf_counter()
        showers = generate("par04-siw", energies, seed=SPLIT_SEED)
        ms = 1e3 * (time.perf_counter() - t0) / n
        with ShowerFile(paths["test"]) as f:
            geo = f.geometry
        write_showers(base / "gflash.h5", energies, showers, geometry=geo)
        return base / "gflash.h5", paths["test"], ms
    raise SystemExit(f"fidelity: --baseline: expected geant4, geant4-train or gflash, found {kind!r}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--recipe")
    ap.add_argument("--budget-min", type=float)
    ap.add_argument("--baseline", choices=("geant4", "geant4-train", "gflash"))
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    # outside the repository: the split files are copies of the Geant4 data, which must never enter the repo
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "caloforge-fidelity")
    ap.add_argument("--tag", default="")
    ap.add_argument("--repeats", type=int, default=3, help="classifier repeats (mean and std)")
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument("overrides", nargs="*", help="recipe key=value overrides, e.g. model.patch=[5,4,3]")
    ap.add_argument("--threads", type=int, help="torch threads (default: torch's choice); 1 helps on a loaded machine")
    ap.add_argument("--fixed-steps", type=int, help="train exactly this many steps instead of the probe's plan "
                    "(the budget's deadline still stops it)")
    ap.add_argument("--from-run", help="sampling-only ablation: reuse the model of this earlier fidelity run dir")
    ap.add_argument("--solver", help="with --from-run: sampler solver (default the recipe's)")
    ap.add_argument("--steps", type=int, help="with --from-run: sampler steps (default the recipe's)")
    ap.add_argument("--no-ema", action="store_true", help="with --from-run: sample with the raw (not EMA) weights")
    args = ap.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.baseline is None and args.from_run is None and (args.recipe is None or args.budget_min is None):
        ap.error("expected --recipe and --budget-min, --baseline, or --from-run")
    command = "python benchmarks/fidelity.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    row = {"date (UTC)": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M"), "tag": args.tag,
           "load": f"{os.getloadavg()[0]:.1f}", "commit": git_commit(), "command": f"`{command}`"}
    paths = cached_split(args.data, args.work)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")

    if args.from_run:
        row.update(resample_row(args, paths, stamp))
        append_row(args.results, row, preamble(args.data))
        print(format_row(row))
        return 0
    if args.baseline:
        gen_path, ref_path, ms = baseline_files(args.baseline, paths, args.work)
        metrics = evaluate_against(gen_path, ref_path, baseline_dir(args.baseline, paths, args.work) / "eval", None,
                                   args.repeats)
        row.update({"recipe": f"baseline: {args.baseline}", "overrides": "-",
                    "ms/shower": ms})
    else:
        from caloforge.training.recipe_io import load_recipe

        recipe = load_recipe(args.recipe, args.overrides)
        run_dir = args.work / f"run-{recipe.name}-{args.tag or 'x'}-{stamp}"
        tr = train_in_budget(recipe, paths, run_dir, args.budget_min * 60.0, args.fixed_steps)
        smp = sample_test_energies(run_dir / "main", paths["test"], run_dir / "generated.h5")
        metrics = evaluate_against(run_dir / "generated.h5", paths["test"], run_dir / "eval", paths["train"],
                                   args.repeats)
        row.update({"recipe": recipe.name, "overrides": " ".join(args.overrides + tr["auto"]),
                    "budget min": args.budget_min, "train min": tr["train_s"] / 60, "params": smp["params"],
                    "steps": tr["steps"] + ("" if tr["completed"] else " (stopped at deadline)"), "NFE": smp["nfe"],
                    "ms/shower": smp["ms"], "val loss": tr["val_loss"]})
    row.update(headline(metrics))
    append_row(args.results, row, preamble(args.data))
    print(format_row(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
