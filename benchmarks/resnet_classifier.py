"""The 3-D ResNet classifier (`evaluate --classifiers cnn`) at real size on the dataset-2 grid: AUC and cost.

For each pair of files (the agreement benchmark's pairs: Geant4 half B vs half A, parametrised par04-siw vs Geant4
half A, and optionally a trained model vs its Geant4 test split) ``caloforge.evaluation.report.evaluate`` runs the
ResNet on the low-level inputs (log10 E_inc + 6480 voxels as a (45, 16, 9) grid) and, beside it, the low-level DNN
on the same inputs, with the default protocol (split 0.6/0.2/0.2 per class, best test accuracy, isotonic
calibration on test, AUC on val). Reported: AUC, epochs run, CPU and wall seconds of each classifier.

    python benchmarks/resnet_classifier.py [--pairs ds2-halves,ds2-param] [--model-gen G.h5 --model-ref R.h5] \
        [--repeats 1] [--out benchmarks/results/resnet_classifier.md]
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch
from machine import cpu_model
from official_inputs import build_pairs

from caloforge.evaluation.report import evaluate

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "g4_par04_ds2_electrons_1-100GeV_A.h5"


def one(gen: Path, ref: Path, mode: str, repeats: int, work: Path) -> dict:
    """One classifier on one pair through ``evaluate`` (no FPD/KPD/plots): its entry plus CPU and wall time."""
    t_cpu, t_wall = time.process_time(), time.perf_counter()
    m = evaluate([gen], ref, dataset="2", out_dir=work / f"rep_{mode}_{gen.stem}", classifiers=(mode,), fpd=False,
                 kpd=False, plots=False, repeats=repeats, allow_overlap=True, device="cpu")
    entry = m["generated"][0]["classifiers"][mode]
    return {**entry, "cpu_s": time.process_time() - t_cpu, "wall_s": time.perf_counter() - t_wall}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=SHARED)
    p.add_argument("--pairs", default="ds2-halves,ds2-param")
    p.add_argument("--model-gen", type=Path, default=None)
    p.add_argument("--model-ref", type=Path, default=None)
    p.add_argument("--model-label", default="trained model")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "resnet_classifier.md")
    args = p.parse_args(argv)
    cmd = "python benchmarks/resnet_classifier.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    load0 = os.getloadavg()
    lines = ["# The 3-D ResNet classifier at real size (dataset-2 grid)", "", f"Command: `{cmd}`", "",
             (f"Machine: {os.cpu_count()} cores, {cpu_model()}, torch {torch.__version__}, {torch.get_num_threads()} "
              f"torch threads; load average at start {load0[0]:.1f}. Protocol: caloforge's default classifier "
              "protocol (split 0.6/0.2/0.2 per class, at most 30 epochs with patience 5 on test accuracy, isotonic "
              "calibration on test, AUC on the independent val split); the ResNet (`evaluation/resnet.py`: "
              "BasicBlocks [2, 2, 2, 2], planes [32, 64, 64, 128], 7x7x7 stride-2 stem) and the low-level DNN "
              "(3 x 512) see the same inputs: log10 E_inc and the 6480 voxels (as a 45 x 16 x 9 grid for the ResNet)."),
             "", "| pair | classifier | showers per class | AUC | JSD | epochs run | CPU s | wall s | load after |",
             "|---|---|---|---|---|---|---|---|---|"]
    data_args = SimpleNamespace(data=args.data.resolve(), model_gen=args.model_gen, model_ref=args.model_ref,
                                model_label=args.model_label, ds1_n=0, ds3_n=0)
    with tempfile.TemporaryDirectory(prefix="caloforge_resnet_") as tmp:
        pairs = build_pairs([s for s in args.pairs.split(",") if s], Path(tmp), data_args)
        for label, _, ref, gen in pairs:
            for mode in ("cnn", "low"):
                print(f"[{time.strftime('%H:%M:%S')}] {label}: {mode}", file=sys.stderr, flush=True)
                r = one(gen, ref, mode, args.repeats, Path(tmp))
                epochs = ", ".join(str(run["epochs_run"]) for run in r["per_run"])
                auc = f"{r['auc']:.4f}" + (f" ± {r['auc_std']:.4f}" if args.repeats > 1 else "")
                lines.append(f"| {label} | {'ResNet (cnn)' if mode == 'cnn' else 'DNN (low)'} | {r['n_per_class']} | "
                             f"{auc} | {r['jsd']:.4f} | {epochs} | {r['cpu_s']:.0f} | {r['wall_s']:.0f} | "
                             f"{os.getloadavg()[0]:.1f} |")
                args.out.write_text("\n".join(lines) + "\n")  # a long run killed half-way keeps its rows
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
