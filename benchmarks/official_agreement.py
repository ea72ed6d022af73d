"""Agreement of caloforge's evaluation with the official CaloChallenge code, number by number, on several pairs.

For every pair of files the official ``HighLevelFeatures`` + ``evaluate_plotting_helper`` (hist-chi mode, i.e. the
separation powers evaluate.py writes), jetnet's fpd/kpd on evaluate.py's own cls-high arrays and, optionally,
evaluate.py's classifier protocol run next to caloforge's streaming path (``scan_file`` -> histograms -> FPD/KPD ->
``run_classifier``), i.e. what ``caloforge evaluate`` computes. Every separation power is written side by side with
its relative difference to a CSV; the markdown has the summary per family and every row that is not identical.

    python benchmarks/official_agreement.py --official-code DIR_WITH_evaluate.py --jetnet-path DIR_WITH_jetnet \
        [--pairs ds2-halves,ds2-param,ds2-model,ds1,ds3] [--model-gen G.h5 --model-ref R.h5] \
        [--cls-pairs ds2-halves,ds2-model] [--cls-rows 1500] [--cls-repeats 3] [--cost-pair ds2-halves]

The official files are not part of caloforge: take ``code/`` of github.com/CaloChallenge/homepage. jetnet 0.2.5's
gen_metrics.py is loaded from --jetnet-path (the unzipped wheel) with stubs for the modules fpd/kpd never touch;
numba must be importable (pip install --target DIR numba llvmlite; PYTHONPATH=DIR).
"""

from __future__ import annotations

import argparse
import csv
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from machine import cpu_model
from official_inputs import build_pairs, load_jetnet, load_official, write_h5

from caloforge.data.geometry import Geometry
from caloforge.evaluation.features import hlf_vector
from caloforge.evaluation.fpd_kpd import fpd, kpd
from caloforge.evaluation.histograms import feature_histograms
from caloforge.evaluation.scan import finish_reference_spectrum, scan_file, voxel_spectrum

SHARED = REPO.parent / "shared" / "data" / "g4_par04_ds2_electrons_1-100GeV_A.h5"
OFFICIAL_LABEL = {"E_ratio": "Etot / Einc", "E_layer": "E layer", "EC_eta": "EC Eta layer",
                  "EC_phi": "EC Phi layer", "width_eta": "Width Eta layer", "width_phi": "Width Phi layer",
                  "voxel": "Voxel distribution", "E_ratio_at_E": "Etot / Einc at E ="}
PARTICLE = {"1-photons": "photon", "1-pions": "pion", "2": "electron", "3": "electron"}
MIN_ENERGY = {"1-photons": 1.0, "1-pions": 1.0, "2": 0.5e-3 / 0.033, "3": 0.5e-3 / 0.033}


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---- the two sides ------------------------------------------------------------------------------------------------
def official_side(official, dataset: str, ref_path: Path, gen_path: Path):
    """evaluate.py's own steps: load, float32 np.where threshold, HighLevelFeatures, hist-chi plots."""
    xml = f"binning_dataset_{dataset.replace('-', '_')}.xml"
    thr = MIN_ENERGY[dataset]
    hlfs, showers = [], []
    for path in (gen_path, ref_path):
        with h5py.File(path, "r") as f:
            s, e = official.extract_shower_and_energy(f, which=str(path))
        s = np.where(s < thr, np.zeros_like(s), s)
        h = official.HLF.HighLevelFeatures(PARTICLE[dataset], filename=xml)
        h.CalculateFeatures(s)
        h.Einc = e
        hlfs.append(h)
        showers.append(s)
    with tempfile.TemporaryDirectory() as out:
        arg = SimpleNamespace(mode="hist-chi", dataset=dataset, output_dir=out, x_scale="log", min_energy=thr)
        official.plot_histograms(hlfs[0], hlfs[1], arg)
        official.plot_cell_dist(showers[0], showers[1], arg)
        blocks = Path(out, f"histogram_chi2_{dataset}.txt").read_text().strip().split("\n\n")
    seps = {b.split(":")[0].strip(): float(b.split("\n")[1]) for b in blocks}
    arrays = []
    for path, h, label in ((gen_path, hlfs[0], 0.0), (ref_path, hlfs[1], 1.0)):
        with h5py.File(path, "r") as f:
            arrays.append(official.prepare_high_data_for_classifier(f, h, label))
    return seps, arrays[0], arrays[1]  # gen, ref cls-high arrays (last column = label)


def ours_side(dataset: str, ref_path: Path, gen_path: Path):
    """caloforge evaluate's path: streaming scans, exact voxel spectrum, official binnings."""
    geo = Geometry.official(dataset)
    ref = scan_file(ref_path, geo, batch_size=512)
    edges = finish_reference_spectrum(ref, geo)
    gen = scan_file(gen_path, geo, batch_size=512, voxel_edges=edges)
    hists = feature_histograms(ref.feats, gen.feats, geo, dataset) + [voxel_spectrum(ref, gen, edges)]
    seps = {}
    for h in hists:
        if not h.official:
            continue
        if h.name == "E_ratio_at_E":
            key = f"{OFFICIAL_LABEL[h.name]} {h.energy}"
        else:
            key = OFFICIAL_LABEL[h.name] + ("" if h.layer is None else f" {h.layer}")
        seps[key] = h.separation_power
    return seps, hlf_vector(gen.feats, geo), hlf_vector(ref.feats, geo)


def label_key(label: str) -> str:
    return label.split(":")[0]


def rel(a: float, b: float) -> float:
    return 0.0 if a == b else abs(a - b) / max(abs(b), 1e-300)


def sep_section(label, seps_ours, seps_off, rows_csv, lines) -> float:
    keys = list(seps_off)
    missing = [k for k in keys if k not in seps_ours] + [k for k in seps_ours if k not in seps_off]
    families: dict[str, list] = {}
    worst = 0.0
    for k in keys:
        if k not in seps_ours:
            continue
        fam = k.rsplit(" ", 1)[0] if k[-1].isdigit() and not k.startswith("Etot / Einc at") else k
        fam = "Etot / Einc at E" if k.startswith("Etot / Einc at") else fam
        r = rel(seps_ours[k], seps_off[k])
        worst = max(worst, r)
        families.setdefault(fam, []).append((k, seps_off[k], seps_ours[k], r))
        rows_csv.append([label, k, repr(seps_off[k]), repr(seps_ours[k]), f"{r:.3g}"])
    lines += ["", "| separation power family | n | identical | max rel diff | mean (official) | mean (ours) |",
              "|---|---|---|---|---|---|"]
    for fam, rs in families.items():
        off, ours = np.array([r[1] for r in rs]), np.array([r[2] for r in rs])
        lines.append(f"| {fam} | {len(rs)} | {sum(r[3] == 0 for r in rs)} | {max(r[3] for r in rs):.3g} | "
                     f"{np.nanmean(off):.6g} | {np.nanmean(ours):.6g} |")
    odd = [r for rs in families.values() for r in rs if r[3] > 0]
    if odd:
        lines += ["", "Rows that are not bit-identical:", "", "| histogram | official | ours | rel diff |", "|---|---|---|---|"]
        lines += [f"| {k} | {o!r} | {u!r} | {r:.3g} |" for k, o, u, r in odd]
    if missing:
        lines.append(f"\nOnly on one side: {missing}")
    return worst


def fpd_kpd_rows(label, jetnet, x_ref_off, x_gen_off, x_ref, x_gen, args, lines) -> None:
    fpd_kw = {"min_samples": args.fpd_min, "max_samples": args.fpd_max, "num_batches": args.fpd_batches,
              "num_points": args.fpd_points}
    t = time.process_time()
    f_o = fpd(x_ref, x_gen, **fpd_kw, method="eigh")
    k_o = kpd(x_ref, x_gen, batch_size=args.kpd_batch)
    t_o, t = time.process_time() - t, time.process_time()
    f_j = jetnet.fpd(x_ref_off, x_gen_off, **fpd_kw)
    k_j = jetnet.kpd(x_ref_off, x_gen_off, batch_size=args.kpd_batch)
    t_j = time.process_time() - t
    fmt = lambda v: f"{v[0] * 1e3:.4f} ± {v[1] * 1e3:.4f}"
    same = fmt(f_o) == fmt(f_j) and fmt(k_o) == fmt(k_j)
    lines.append(f"| {label.split(':')[0]} | {fmt(f_j)} | {fmt(f_o)} | {rel(f_o[0], f_j[0]):.2g} | {fmt(k_j)} | "
                 f"{fmt(k_o)} | {rel(k_o[0], k_j[0]):.2g} | {'yes' if same else 'NO'} | {t_j:.0f} / {t_o:.0f} |")


def official_classifier(official, gen_arr, ref_arr, dataset, repeats, epochs, seed0=0) -> list[float]:
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    aucs = []
    with tempfile.TemporaryDirectory() as out:
        for k in range(repeats):
            np.random.seed(seed0 + k)
            torch.manual_seed(seed0 + k)
            torch.set_default_dtype(torch.float64)
            try:
                train, test, val = official.ttv_split(gen_arr.copy(), ref_arr.copy())
                arg = SimpleNamespace(mode="cls-high", dataset=dataset, output_dir=out, cls_n_epochs=epochs,
                                      save_mem=False, device=torch.device("cpu"))
                model = official.DNN(num_layer=2, num_hidden=2048, input_dim=train.shape[1] - 1)
                opt = torch.optim.Adam(model.parameters(), lr=2e-4)
                dl = [DataLoader(TensorDataset(torch.tensor(d)), batch_size=1000, shuffle=s)
                      for d, s in ((train, True), (test, False), (val, False))]
                official.train_and_evaluate_cls(model, dl[0], dl[1], opt, arg)
                model = official.load_classifier(model, arg)
                with torch.no_grad():
                    _, auc, _ = official.evaluate_cls(model, dl[2], arg, final_eval=True, calibration_data=dl[1])
                aucs.append(float(auc))
            finally:
                torch.set_default_dtype(torch.float32)
    return aucs


def classifier_rows(label, official, gen_arr, ref_arr, x_gen, x_ref, dataset, args, lines) -> None:
    from contextlib import redirect_stdout
    from io import StringIO

    from caloforge.evaluation.classifier import run_classifier

    n = min(args.cls_rows, len(gen_arr), len(ref_arr))
    t = time.process_time()
    with redirect_stdout(StringIO()):
        off = official_classifier(official, gen_arr[:n], ref_arr[:n], dataset, args.cls_repeats, args.cls_epochs)
    t_off, t = time.process_time() - t, time.process_time()
    ours = run_classifier(x_gen[:n], x_ref[:n], repeats=args.cls_repeats, seed=0, official=args.cls_official)
    t_ours = time.process_time() - t
    a_off, a_ours = np.array(off), np.array([r["auc"] for r in ours["per_run"]])
    mode = "official (`--official`)" if args.cls_official else "fast default"
    lines.append(f"| {label.split(':')[0]} | {n} | {', '.join(f'{a:.4f}' for a in a_off)} | "
                 f"{a_off.mean():.4f} ± {a_off.std(ddof=1):.4f} | {mode} | {', '.join(f'{a:.4f}' for a in a_ours)} | "
                 f"{a_ours.mean():.4f} ± {a_ours.std(ddof=1):.4f} | {abs(a_off.mean() - a_ours.mean()):.4f} | "
                 f"{t_off:.0f} / {t_ours:.0f} |")


def cost_section(official, jetnet, pair, n: int, work: Path, lines, args) -> None:
    """CPU time of the whole evaluation, side by side in this process (same pair, same machine, same load): the
    official steps a user runs for the paper's table (load + threshold + HighLevelFeatures, hist-chi, cls-high at
    its defaults, jetnet fpd/kpd at evaluate.py's settings) against ``caloforge.evaluation.report.evaluate`` with its
    defaults (fast classifier, eigh FPD, plots and report written)."""
    from contextlib import redirect_stdout
    from io import StringIO

    import torch

    from caloforge.evaluation.report import evaluate

    label, dataset, ref_path, gen_path = pair
    cut = []
    for path in (ref_path, gen_path):
        with h5py.File(path, "r") as f:
            cut.append(write_h5(work / f"cost_{path.name}", f["incident_energies"][:n], f["showers"][:n]))
    ref_path, gen_path = cut
    load0 = os.getloadavg()
    steps_off = {}
    if args.cost_official_fpd:  # evaluate.py's own calls
        fpd_kw, kpd_kw = {"min_samples": 10000}, {"batch_size": 10000}
    else:  # the same smaller settings on both sides
        fpd_kw = {"min_samples": args.fpd_min, "max_samples": args.fpd_max, "num_batches": args.fpd_batches,
                  "num_points": args.fpd_points}
        kpd_kw = {"batch_size": args.kpd_batch}
    t = time.process_time()
    with redirect_stdout(StringIO()):
        _, gen_off, ref_off = official_side(official, dataset, ref_path, gen_path)
        steps_off["features + hist-chi"] = time.process_time() - t
        t1 = time.process_time()
        auc_off = official_classifier(official, gen_off, ref_off, dataset, 1, args.cost_cls_epochs)[0]
        t_cls = time.process_time() - t1
        if args.cost_cls_epochs == 50:
            steps_off["cls-high (50 epochs)"] = t_cls
        else:  # every epoch costs the same (no early stop below test accuracy 1): scale to evaluate.py's 50
            steps_off[f"cls-high: {args.cost_cls_epochs} epochs measured ({t_cls:.1f} s) x 50/{args.cost_cls_epochs}"] = \
                t_cls * 50 / args.cost_cls_epochs
        t1 = time.process_time()
        f_j = jetnet.fpd(ref_off[:, :-1], gen_off[:, :-1], **fpd_kw)
        steps_off["fpd"] = time.process_time() - t1
        t1 = time.process_time()
        k_j = jetnet.kpd(ref_off[:, :-1], gen_off[:, :-1], **kpd_kw)
        steps_off["kpd"] = time.process_time() - t1
    t_off = sum(steps_off.values())
    t = time.process_time()
    m = evaluate([gen_path], ref_path, dataset=dataset, out_dir=work / "cost_report", classifiers=("high",),
                 fpd_options=fpd_kw, kpd_options=kpd_kw)
    t_ours = time.process_time() - t
    g = m["generated"][0]
    load1 = os.getloadavg()
    lines += ["", "## Cost: the whole evaluation, official code vs caloforge, side by side in one process", "",
              (f"Pair: {label.split(':')[0]}, first {n} showers of each file; torch threads "
               f"{torch.get_num_threads()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; load "
               f"average {load0[0]:.1f} before, {load1[0]:.1f} after (2 cores shared with other jobs: CPU times, not "
               "wall times, are compared). Official classifier: ttv_split by fractions (its fixed 60k/20k/20k split "
               "needs 100k showers), otherwise evaluate.py's defaults (float64, 3 x 2048, 50 epochs). FPD/KPD settings, "
               f"the same on both sides: fpd{fpd_kw}, kpd{kpd_kw}. caloforge: `evaluate()` with its defaults "
               "otherwise (fast classifier, eigh Fréchet trace, plots and report.html written)."), "",
              "| | official CPU s | caloforge CPU s |", "|---|---|---|"]
    lines += [f"| {k} | {v:.1f} | |" for k, v in steps_off.items()]
    ours_steps = {**{k: v for k, v in g["timings_s"].items()}, "plots": m["timings_s"]["plots"]}
    lines += [f"| caloforge {k} (wall s) | | {v:.1f} |" for k, v in ours_steps.items()]
    lines += [f"| **total** | **{t_off:.0f}** | **{t_ours:.0f}** |", "",
              f"**Cost ratio: {t_off / t_ours:.1f}x** (official / caloforge CPU time).", "",
              (f"Numbers of that run: FPD x10^3 official {f_j[0] * 1e3:.4f} ± {f_j[1] * 1e3:.4f}, caloforge "
               f"{g['fpd']['value_x1e3']:.4f} ± {g['fpd']['error_x1e3']:.4f}; KPD x10^3 official "
               f"{k_j[0] * 1e3:.4f} ± {k_j[1] * 1e3:.4f}, caloforge {g['kpd']['value_x1e3']:.4f} ± "
               f"{g['kpd']['error_x1e3']:.4f}; AUC cls-high official {auc_off:.4f} (1 run), caloforge "
               f"{g['classifiers']['high']['auc']:.4f} (1 run, fast default).")]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--official-code", type=Path, required=True)
    p.add_argument("--jetnet-path", type=Path, required=True)
    p.add_argument("--data", type=Path, default=SHARED)
    p.add_argument("--pairs", default="ds2-halves,ds2-param,ds1,ds3")
    p.add_argument("--cls-pairs", default="ds2-param", help="pairs that also run both classifier protocols ('' none)")
    p.add_argument("--cls-rows", type=int, default=1500, help="showers per class for the classifier comparison")
    p.add_argument("--cls-repeats", type=int, default=3)
    p.add_argument("--cls-epochs", type=int, default=50, help="official protocol epochs (50 = evaluate.py)")
    p.add_argument("--cls-official", action="store_true",
                   help="caloforge's side of the classifier rows in its official mode (evaluate --official)")
    p.add_argument("--model-gen", type=Path, default=None, help="ds2-model pair: a trained model's showers")
    p.add_argument("--model-ref", type=Path, default=None, help="ds2-model pair: the Geant4 showers to compare with")
    p.add_argument("--model-label", default="trained model", help="ds2-model pair: how the model is named")
    p.add_argument("--ds1-n", type=int, default=3000)
    p.add_argument("--ds3-n", type=int, default=500)
    p.add_argument("--fpd-min", type=int, default=1000)
    p.add_argument("--fpd-max", type=int, default=4000)
    p.add_argument("--fpd-batches", type=int, default=4)
    p.add_argument("--fpd-points", type=int, default=5)
    p.add_argument("--kpd-batch", type=int, default=2000)
    p.add_argument("--cost-pair", default="", help="pair whose whole evaluation is timed both ways ('' none)")
    p.add_argument("--no-fpd", action="store_true", help="skip the FPD/KPD comparison")
    p.add_argument("--cost-only", action="store_true", help="only the cost comparison (no agreement tables)")
    p.add_argument("--cost-official-fpd", action="store_true",
                   help="cost comparison with evaluate.py's FPD/KPD settings (10k-50k draws; slow) instead of --fpd-*")
    p.add_argument("--cost-cls-epochs", type=int, default=50,
                   help="official classifier epochs actually run in the cost comparison (scaled to 50)")
    p.add_argument("--cost-n", type=int, default=1000,
                   help="showers per file for the cost comparison (>= 850: evaluate.py's training loop needs 2 batches)")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "official_agreement.md")
    args = p.parse_args(argv)
    args.data, args.out = args.data.resolve(), args.out.resolve()
    cmd = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    official = load_official(args.official_code.resolve())
    jetnet = load_jetnet(args.jetnet_path.resolve())
    names = [s for s in args.pairs.split(",") if s]
    lines = ["# Agreement with the official CaloChallenge evaluation code", "", f"Command: `{cmd}`", "",
             f"Machine: {os.cpu_count()} cores, {cpu_model()}, numpy {np.__version__}; load average at start {os.getloadavg()[0]:.1f}", "",
             ("Official side: evaluate.py, HighLevelFeatures.py, evaluate_plotting_helper.py of CaloChallenge/homepage "
             "HEAD, unmodified, imported as modules (hist-chi mode: the separation powers evaluate.py writes); jetnet "
             "0.2.5 fpd/kpd on evaluate.py's own cls-high arrays. caloforge side: the streaming path of "
             "`caloforge evaluate` (scan_file, exact voxel spectrum, feature_histograms, fpd(method='eigh'), kpd)."),
             "Every separation power, side by side: `official_agreement_seps.csv`."]
    rows_csv, fk_lines, cls_lines, worst = [], [], [], {}
    with tempfile.TemporaryDirectory(prefix="caloforge_agree_") as tmp:
        pairs = build_pairs(names, Path(tmp), args)
        for label, dataset, ref_path, gen_path in ([] if args.cost_only else pairs):
            say(f"{label}: official side")
            t = time.process_time()
            seps_off, gen_off, ref_off = official_side(official, dataset, ref_path, gen_path)
            t_off, t = time.process_time() - t, time.process_time()
            say(f"{label}: caloforge side")
            seps_ours, x_gen, x_ref = ours_side(dataset, ref_path, gen_path)
            t_ours = time.process_time() - t
            lines += ["", f"## {label}", "", (f"Features + histograms CPU time: official {t_off:.1f} s, caloforge "
                      f"{t_ours:.1f} s. cls-high/FPD vectors: max abs diff "
                      f"{np.abs(np.r_[x_ref, x_gen] - np.r_[ref_off, gen_off][:, :-1]).max():.3g}.")]
            worst[label] = sep_section(label.split(":")[0], seps_ours, seps_off, rows_csv, lines)
            if not args.no_fpd:
                say(f"{label}: FPD/KPD")
                fpd_kpd_rows(label, jetnet, ref_off[:, :-1], gen_off[:, :-1], x_ref, x_gen, args, fk_lines)
            if label.split(":")[0] in args.cls_pairs.split(","):
                say(f"{label}: classifiers")
                classifier_rows(label, official, gen_off, ref_off, x_gen, x_ref, dataset, args, cls_lines)
        cost_lines: list[str] = []
        for pair in pairs:
            if label_key(pair[0]) == args.cost_pair:
                say(f"{pair[0]}: cost, both ways")
                cost_section(official, jetnet, pair, args.cost_n, Path(tmp), cost_lines, args)
    lines += ["", "## Separation powers: worst relative difference per pair", "",
              "| pair | max rel diff over every histogram |", "|---|---|"]
    lines += [f"| {k} | {v:.3g} |" for k, v in worst.items()]
    lines += ["", "## FPD / KPD (x10^3, evaluate.py's print precision)", "",
              (f"Settings: fpd(min_samples={args.fpd_min}, max_samples={args.fpd_max}, num_batches={args.fpd_batches}, "
               f"num_points={args.fpd_points}), kpd(batch_size={args.kpd_batch}); jetnet's sqrtm vs caloforge's "
               "default eigh Fréchet trace."), "",
              "| pair | FPD jetnet | FPD ours | rel | KPD jetnet | KPD ours | rel | equal printed | CPU s jetnet / ours |",
              "|---|---|---|---|---|---|---|---|---|", *fk_lines]
    if cls_lines:
        lines += ["", f"## High-level classifier AUC, {args.cls_repeats} repeats each", "",
                  (f"Official: evaluate.py's DNN, ttv_split, train_and_evaluate_cls ({args.cls_epochs} epochs), "
                   "load_classifier and evaluate_cls (isotonic calibration on test), float64, np.random seeded per "
                   "repeat. Ours: `run_classifier`, fast default (float32, 3 x 512, standardised, patience 5) or "
                   "official mode (float64, 3 x 2048, 50 epochs, raw inputs)."), "",
                  ("| pair | showers per class | official AUCs | official mean ± std | caloforge mode | ours AUCs | "
                   "ours mean ± std | |diff of means| | CPU s official / ours |"), "|---|---|---|---|---|---|---|---|---|",
                  *cls_lines]
    lines += cost_lines
    csv_path = args.out.with_name(args.out.stem + "_seps.csv")
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["pair", "histogram", "official", "caloforge", "rel_diff"])
        w.writerows(rows_csv)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
