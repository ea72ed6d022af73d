"""Adaptation benchmark: a model pre-trained on four parametrised (GFlash) detectors is adapted to a fifth detector and
to the shared Geant4 showers (sim-to-real), against the same network trained from scratch, at several data sizes.

Questions: optimiser steps and CPU minutes to reach the from-scratch model's best in-loop Fréchet distance, final
FPD / KPD / classifier AUC (high-level and voxel inputs) on the held-out test part, and a memorisation check (distance
of generated showers to their nearest training shower vs the same for test showers).

Phases (each idempotent: finished runs are skipped), all under --work (outside the repository):
  python benchmarks/adapt.py --work /work/scratch/adapt data                 # GFlash files, splits, subsets
  python benchmarks/adapt.py --work ... pretrain                             # tiny-fm-multi on four detectors
  python benchmarks/adapt.py --work ... runs --target cld-like --mode scratch
  python benchmarks/adapt.py --work ... runs --target cld-like --mode adapt --source RUN_OR_CKPT
  python benchmarks/adapt.py --work ... report --out benchmarks/results/adapt.md
Set OMP_NUM_THREADS explicitly; every run records the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

PRETRAIN = ("par04-siw", "par04-scipb-ds2", "odd-like", "allegro-like")
FIFTH = "cld-like"
G4_FILE = Path("/work/shared/data/g4_par04_ds2_electrons_1-100GeV_A.h5")
G4_NAME = "g4-par04"
SIZES = (250, 1000, None)  # None: the whole training part
N_GFLASH = 6000
N_PRETRAIN = 3000  # showers per pre-training detector (the first ones of each file)
STEPS = {"scratch": 1500, "adapt": 150}  # adaptation gets a tenth of the scratch budget
VAL_EVERY = {"scratch": 100, "adapt": 10}  # in-loop quality cadence (steps)
BATCH = 64  # the recipe's batch
QUALITY = ["train.quality_showers=100", "train.log_every=10", "sampler.steps=4", f"train.batch_size={BATCH}"]
N_EVAL = 600  # test showers compared per run (at most; the cld-like test part holds 600)
CLS_EPOCHS = 5


def load() -> str:
    return " ".join(os.getloadavg().__repr__().strip("()").split(", "))


# ---- data ----------------------------------------------------------------------------------------------------
def make_data(work: Path) -> None:
    from caloforge.data.convert import convert_file
    from caloforge.data.split import split_file
    from caloforge.simulate.generate import make_file

    d = work / "data"
    d.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate((*PRETRAIN, FIFTH)):  # the seeds of the data make commands in docs/adapt.md
        seed = 101 + i
        if not (d / f"{name}.h5").exists():
            make_file(name, N_GFLASH, d / f"{name}.h5", energy_range=(1e3, 1e5), seed=seed,
                      theta_range=(0.87, 2.27), phi_range=(-3.14159, 3.14159))
        if name in PRETRAIN and not pretrain_file(work, name).exists():
            subset(d / f"{name}.h5", pretrain_file(work, name), N_PRETRAIN)
    if not (d / "g4.h5").exists():
        convert_file(G4_FILE, d / "g4.h5", detector=G4_NAME, theta=np.pi / 2, phi=0.0)  # normal incidence
    for target, src, fr in ((FIFTH, d / f"{FIFTH}.h5", (0.8, 0.1, 0.1)), (G4_NAME, d / "g4.h5", (0.7, 0.1, 0.2))):
        parts = {k: d / f"{target}_{k}.h5" for k in ("train", "val", "test")}
        if not parts["test"].exists():
            split_file(src, out_paths=parts, fractions=fr, seed=1001)
        for n in SIZES[:-1]:
            if not (d / f"{target}_train{n}.h5").exists():
                subset(parts["train"], d / f"{target}_train{n}.h5", n)


def subset(src: Path, dst: Path, n: int) -> None:
    """The first n showers of a (seeded, already shuffled) training part, with extras and attributes."""
    from caloforge.data.reader import ShowerFile
    from caloforge.data.writer import write_showers

    with ShowerFile(src) as f:
        b = f.read(np.arange(n), with_extras=True)
        attrs = {k: v for k, v in f.attrs.items() if k not in ("caloforge_geometry", "caloforge_split")}
        write_showers(dst, b.energies, b.showers, extras=b.extras, attrs=attrs, geometry=f.geometry)


def pretrain_file(work: Path, name: str) -> Path:
    return work / "data" / f"{name}_{N_PRETRAIN // 1000}k.h5"


def train_file(work: Path, target: str, n) -> Path:
    return work / "data" / (f"{target}_train.h5" if n is None else f"{target}_train{n}.h5")


# ---- runs ----------------------------------------------------------------------------------------------------
def pretrain(work: Path, steps: int) -> Path:
    from caloforge.training.recipe_io import load_recipe
    from caloforge.training.trainer import train

    out = work / "runs" / "pretrain"
    recipe = load_recipe("tiny-fm-multi", [f"train.steps={steps}", "sampler.steps=4", f"train.batch_size={BATCH}",
                                           "train.ckpt_every=100"])
    load0, c0 = load(), time.process_time()
    train(recipe, [pretrain_file(work, n) for n in PRETRAIN], out, device="cpu")
    (work / "results").mkdir(parents=True, exist_ok=True)
    (work / "results" / "pretrain.txt").write_text(f"steps {steps} cpu_s {time.process_time() - c0:.0f} "
                                                   f"load {load0} -> {load()}\n")
    return out


def one_run(work: Path, target: str, n, mode: str, source: str | None, steps: int) -> dict:
    from caloforge.training.adapt import adapt
    from caloforge.training.recipe_io import load_recipe
    from caloforge.training.sources import DataSource
    from caloforge.training.trainer import train

    tag = f"{target}-{n or 'all'}-{mode}"
    out = work / "runs" / tag
    result_path = work / "results" / f"{tag}.json"
    if result_path.exists():
        return json.loads(result_path.read_text())
    data, val = train_file(work, target, n), work / "data" / f"{target}_val.h5"
    load0, t0, c0 = load(), time.perf_counter(), time.process_time()
    if mode == "adapt":
        adapt(source, data, out, detector=target, val=val, steps=steps, device="cpu",
              overrides=[*QUALITY, f"train.val_every={VAL_EVERY[mode]}"])
    else:  # the same network and slot layout, random initialisation, own transform statistics, full lr
        recipe = load_recipe("tiny-fm-multi", [f"data.new_detector={target}", "data.detector_weights={}",
                                               f"train.steps={steps}", f"train.ckpt_every={steps}", *QUALITY,
                                               f"train.val_every={VAL_EVERY[mode]}"])
        train(recipe, DataSource(data, target), out, val_path=DataSource(val, target), device="cpu")
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    curve = [(r["step"], r["quality_fd_x1e3"]) for r in _lines(out / "metrics.jsonl") if "quality_fd_x1e3" in r]
    record = {"target": target, "n_train": _count(data), "mode": mode, "steps": steps, "cpu_s": cpu, "wall_s": wall,
              "load_before": load0, "load_after": load(), "curve": curve, "source": source,
              "threads": os.environ.get("OMP_NUM_THREADS", "unset"),
              "final": evaluate_run(out, work, target, data)}
    result_path.parent.mkdir(parents=True, exist_ok=True)
    result_path.write_text(json.dumps(record, indent=1))
    return record


def _lines(path: Path):
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def _count(path: Path) -> int:
    from caloforge.data.reader import ShowerFile

    with ShowerFile(path) as f:
        return f.n


# ---- evaluation ----------------------------------------------------------------------------------------------
def nearest_distances(a: np.ndarray, b: np.ndarray, block: int = 256) -> np.ndarray:
    """Euclidean distance of every row of a to its nearest row of b."""
    bb = (b * b).sum(1)
    out = np.empty(len(a))
    for i in range(0, len(a), block):
        x = a[i:i + block]
        d2 = (x * x).sum(1)[:, None] + bb[None, :] - 2 * x @ b.T
        out[i:i + block] = np.sqrt(np.maximum(d2.min(1), 0))
    return out


def shower_vectors(showers: np.ndarray, energies: np.ndarray, thr: float) -> np.ndarray:
    """log(1 + voxel / E_inc x 1e4) of thresholded showers: a space where shape differences count, not scale."""
    s = np.where(showers < thr, 0.0, showers) / energies[:, None]
    return np.log1p(1e4 * s).astype(np.float32)


def evaluate_run(run: Path, work: Path, target: str, data: Path) -> dict:
    from caloforge.data.reader import ShowerFile
    from caloforge.evaluation.classifier import run_classifier
    from caloforge.evaluation.features import compute_hlf, hlf_vector, voxel_inputs
    from caloforge.evaluation.fpd_kpd import fpd, guarded, kpd, scaled_options
    from caloforge.sampling.generator import Generator

    gen = Generator.load(run, device="cpu")
    with ShowerFile(work / "data" / f"{target}_test.h5") as f:
        geo = f.geometry
        t = f.read(np.arange(min(f.n, N_EVAL)), with_extras=True)
    with ShowerFile(data) as f:
        tr = f.read(np.arange(f.n))
    slot = np.full(len(t), gen.encoder.slot(target)) if gen.encoder.n_detectors else None
    fake, _ = gen.generate(t.energies, t.extras.get("incident_phi"), t.extras.get("incident_theta"), slot, seed=0,
                           batch_size=500)
    thr = geo.threshold_mev
    fr, fg = (hlf_vector(compute_hlf(s, t.energies, geo, thr), geo) for s in (t.showers, fake))
    fopts, kopts = scaled_options(len(fr), len(fg))
    # guarded as in the report: reference columns that are ~0 everywhere (round-off widths) are left out
    f_entry, k_entry = guarded("FPD", fpd, fr, fg, method="eigh", **fopts), guarded("KPD", kpd, fr, fg, **kopts)
    out = {"fpd_x1e3": f_entry["value_x1e3"], "kpd_x1e3": k_entry["value_x1e3"], "n_test": len(t),
           "dropped_columns": f_entry["dropped_columns"]}
    out["auc_high"] = run_classifier(fg, fr, seed=0, epochs=CLS_EPOCHS, device="cpu", desc="cls-high")["auc"]
    low_g, low_r = (voxel_inputs(s, t.energies, "low", geo, thr) for s in (fake, t.showers))
    out["auc_low"] = run_classifier(low_g, low_r, seed=0, epochs=CLS_EPOCHS, device="cpu", desc="cls-low")["auc"]
    train_v = shower_vectors(tr.showers, tr.energies, thr)
    d_gen = nearest_distances(shower_vectors(fake, t.energies, thr), train_v)
    d_test = nearest_distances(shower_vectors(t.showers, t.energies, thr), train_v)
    out["mem_median_ratio"] = float(np.median(d_gen) / np.median(d_test))  # < 1: closer to training than new data
    out["mem_frac_below_test_p1"] = float(np.mean(d_gen < np.percentile(d_test, 1)))  # 0.01 expected
    return out


# ---- report --------------------------------------------------------------------------------------------------
def steps_to_reach(curve, target_value):
    for step, value in curve:
        if value <= target_value:
            return step
    return None


def against_full_scratch(rows: list[dict]) -> list[str]:
    """Per target: every adapted run against the scratch run on the most data, in steps and data."""
    lines = []
    for target in sorted({r["target"] for r in rows}):
        scratch = [r for r in rows if r["target"] == target and r["mode"] == "scratch" and r["curve"]]
        if not scratch:
            continue
        full = max(scratch, key=lambda r: r["n_train"])
        best_step, best = min(full["curve"], key=lambda p: p[1])
        for r in sorted((r for r in rows if r["target"] == target and r["mode"] == "adapt"), key=lambda r: r["n_train"]):
            reach = steps_to_reach(r["curve"], best)
            head = (f"- {target}: adapt on {r['n_train']} showers vs scratch on {full['n_train']} (best FD {best:.4g} "
                    f"at step {best_step}): ")
            lines.append(head + (f"reached at step {reach}: {best_step / reach:.1f}x fewer steps, "
                                 f"{full['n_train'] / r['n_train']:.1f}x less data" if reach else
                                 f"not reached in {r['steps']} steps (its best {min(v for _, v in r['curve']):.4g})"))
    return lines


def report(work: Path, out: Path) -> str:
    import platform

    import torch
    from machine import cpu_model

    rows = [json.loads(p.read_text()) for p in sorted((work / "results").glob("*.json"))]
    rows.sort(key=lambda r: (r["target"], r["n_train"], r["mode"] != "scratch"))
    pre = (work / "results" / "pretrain.txt").read_text().strip() if (work / "results" / "pretrain.txt").exists() else "?"
    lines = ["# Adaptation to a new detector (CPU-scale study)", "",
             ("Pre-training: `tiny-fm-multi` (DiT D 64, 2 blocks, flow matching) on four GFlash LEMURS-like detectors "
             f"({', '.join(PRETRAIN)}; {N_PRETRAIN} showers each, theta 0.87-2.27, phi uniform, 1-100 GeV), batch "
             f"{BATCH}. {pre}."),
             (f"Targets: the fifth detector `{FIFTH}` (GFlash, split 0.8/0.1/0.1 seed 1001) and the shared Geant4 set "
             f"(`caloforge data convert --detector {G4_NAME} --theta 1.5708 --phi 0`, split 0.7/0.1/0.2 seed 1001)."),
             (f"Per target and training size: `adapt` ({STEPS['adapt']} steps from the pre-trained EMA, lr x 0.25, "
             f"in-loop quality every {VAL_EVERY['adapt']}) vs `scratch` (same network and slot layout, random init, "
             f"{STEPS['scratch']} steps, quality every {VAL_EVERY['scratch']}). In-loop quality = Fréchet distance of "
             "the high-level features of 100 EMA samples vs 100 validation showers (Heun 4 steps). Final metrics on "
             f"the first {N_EVAL} test showers: FPD / KPD (x1e3, scaled to the sample size), classifier AUC (DNN, "
             f"{CLS_EPOCHS} epochs) on high-level features and on voxels; memorisation: median distance of generated "
             "showers to their nearest training shower / the same for test showers (log(1 + 1e4 E_voxel / E_inc) "
             "space; < 1 means closer to the training set than fresh data) and the fraction of generated showers "
             "closer than the 1st percentile of the test distances (0.01 expected without memorisation)."), "",
             (f"Machine: {os.cpu_count()} cores, {cpu_model()}, Python "
             f"{platform.python_version()}, torch {torch.__version__}"), ""]
    lines += [("| target | train showers | mode | steps | CPU min (wall min) | best in-loop FD x1e3 (step) | steps to "
               "scratch best | CPU min to scratch best | FPD x1e3 | KPD x1e3 | AUC high | AUC low | mem ratio | "
               "mem frac < p1 | load 1-min |"),
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        scratch = next((s for s in rows if s["target"] == r["target"] and s["n_train"] == r["n_train"]
                        and s["mode"] == "scratch"), None)
        best = min(r["curve"], key=lambda p: p[1]) if r["curve"] else (None, float("nan"))
        reach = steps_to_reach(r["curve"], min(v for _, v in scratch["curve"])) if scratch and scratch["curve"] else None
        cpu_min = r["cpu_s"] / 60
        reach_min = f"{cpu_min * reach / r['steps']:.2f}" if reach else "not reached"
        f = r["final"]
        fpd_text, kpd_text = ("refused" if f[k] is None else f"{f[k]:.4g}" for k in ("fpd_x1e3", "kpd_x1e3"))
        lines.append(f"| {r['target']} | {r['n_train']} | {r['mode']} | {r['steps']} | {cpu_min:.2f} "
                     f"({r['wall_s'] / 60:.0f}) | {best[1]:.4g} ({best[0]}) | {reach or 'not reached'} | {reach_min} | "
                     f"{fpd_text} | {kpd_text} | {f['auc_high']:.3f} | {f['auc_low']:.3f} | "
                     f"{f['mem_median_ratio']:.2f} | {f['mem_frac_below_test_p1']:.3f} | "
                     f"{r['load_before'].split()[0][:5]} -> {r['load_after'].split()[0][:5]} |")
    lines += ["", ("Against the from-scratch model on the whole training part (the issue's target: its best in-loop FD "
                   "with >= 10x fewer steps and >= 10x less data):"), ""] + against_full_scratch(rows)
    lines += ["", "In-loop Fréchet distance (x1e3) against optimiser steps:", ""]
    for r in rows:
        pts = ", ".join(f"{step}: {v:.3g}" for step, v in r["curve"])
        lines.append(f"- {r['target']} {r['n_train']} {r['mode']}: {pts}")
    text = "\n".join(lines) + "\n"
    out.write_text(text)
    return text


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("/work/scratch/adapt"))
    ap.add_argument("phase", choices=("data", "pretrain", "runs", "report"))
    ap.add_argument("--target", choices=(FIFTH, G4_NAME))
    ap.add_argument("--mode", choices=("scratch", "adapt"))
    ap.add_argument("--source", default=None, help="pre-trained run or checkpoint (adapt)")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--sizes", default="250,all,1000")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/adapt.md"))
    a = ap.parse_args()
    os.environ.setdefault("CALOFORGE_PROGRESS", "0")
    if a.phase == "data":
        make_data(a.work)
    elif a.phase == "pretrain":
        pretrain(a.work, a.steps or 3000)
    elif a.phase == "runs":
        for s in a.sizes.split(","):
            n = None if s == "all" else int(s)
            r = one_run(a.work, a.target, n, a.mode, a.source, a.steps or STEPS[a.mode])
            print(json.dumps({k: v for k, v in r.items() if k != "curve"}), flush=True)
    else:
        print(report(a.work, a.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
