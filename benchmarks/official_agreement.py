"""Agreement of caloforge's evaluation with the official CaloChallenge code (and jetnet's FPD/KPD).

Runs the official ``HighLevelFeatures`` and ``evaluate_plotting_helper`` (hist-chi mode) next to
``caloforge.evaluation`` on the same showers and reports the largest differences, then jetnet's fpd/kpd next to ours.

    python benchmarks/official_agreement.py --official-code PATH/TO/homepage/code \
        [--jetnet-path DIR_CONTAINING_jetnet] [--data FILE.h5] [--out benchmarks/results/official_agreement.md]

The official files are not part of caloforge: clone CaloChallenge/homepage and point --official-code at its
``code/`` folder. jetnet's gen_metrics.py is loaded from --jetnet-path (e.g. the unzipped 0.2.5 wheel) with stub
modules for the parts fpd/kpd never touch (energyflow, jetnet.utils/datasets); numpy, scipy, numba and torch are
real and must be importable. Reference = first half of the (seeded-shuffled) file; "generated" = the second half
(Geant4 vs Geant4) and a perturbed copy of it (voxels x lognormal(0, 0.1) x 0.97).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import shlex
import sys
import tempfile
import time
import types
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import scipy

from caloforge.data.geometry import Geometry
from caloforge.evaluation.features import compute_hlf, hlf_vector
from caloforge.evaluation.fpd_kpd import fpd, kpd
from caloforge.evaluation.histograms import feature_histograms, voxel_histogram

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "g4_par04_ds2_electrons_1-100GeV_A.h5"
BINNING = REPO / "src" / "caloforge" / "data" / "binning" / "binning_dataset_2.xml"
FAMILIES = {  # ours -> (official attribute, layers attribute)
    "E_layer": ("E_layers", "relevantLayers"),
    "EC_eta": ("EC_etas", "layersBinnedInAlpha"),
    "EC_phi": ("EC_phis", "layersBinnedInAlpha"),
    "width_eta": ("width_etas", "layersBinnedInAlpha"),
    "width_phi": ("width_phis", "layersBinnedInAlpha"),
    "sparsity": ("sparsity", "relevantLayers"),
    "EC_r": ("EC_r", "relevantLayers"),
    "width_r": ("width_r", "relevantLayers"),
}
OFFICIAL_LABEL = {"E_ratio": "Etot / Einc", "E_layer": "E layer", "EC_eta": "EC Eta layer",
                  "EC_phi": "EC Phi layer", "width_eta": "Width Eta layer", "width_phi": "Width Phi layer",
                  "voxel": "Voxel distribution"}


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def machine() -> str:
    with open("/proc/cpuinfo") as f:
        cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "?")
    return (f"nproc {os.cpu_count()}, CPU {cpu}, Python {platform.python_version()}, numpy {np.__version__}, "
            f"scipy {scipy.__version__}")


def load_official(code_dir: Path):
    sys.path.insert(0, str(code_dir))
    import matplotlib

    matplotlib.use("Agg")
    import evaluate_plotting_helper as plot_helper
    import HighLevelFeatures as hlf_module

    return hlf_module, plot_helper


def load_jetnet(path: Path):
    """jetnet/evaluation/gen_metrics.py with stubs for the modules fpd/kpd do not use."""
    ef, ef_emd = types.ModuleType("energyflow"), types.ModuleType("energyflow.emd")
    ef_emd.emds, ef.emd = None, ef_emd
    jn, ju, jd = (types.ModuleType(n) for n in ("jetnet", "jetnet.utils", "jetnet.datasets"))
    jn.__path__, jn.utils, jd.JetNet = [], ju, object
    sys.modules.update({"energyflow": ef, "energyflow.emd": ef_emd, "jetnet": jn, "jetnet.utils": ju,
                        "jetnet.datasets": jd})
    spec = importlib.util.spec_from_file_location("jetnet_gen_metrics", path / "jetnet" / "evaluation" / "gen_metrics.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["jetnet_gen_metrics"] = module
    spec.loader.exec_module(module)
    return module


def official_features(hlf_module, showers32, energies32, min_energy):
    """What evaluate.py does: threshold the float32 showers in place, then CalculateFeatures."""
    x = showers32.copy()
    x[x < min_energy] = 0.0
    hlf = hlf_module.HighLevelFeatures("electron", filename=str(BINNING))
    hlf.CalculateFeatures(x)
    hlf.Einc = energies32
    return hlf, x


def official_vector(hlf, e_inc):
    """The cls-high concatenation of evaluate.py, written from the official HLF object."""
    def stack(d, layers):
        return np.concatenate([d[k].reshape(-1, 1) for k in layers], axis=1)
    rel, alpha = hlf.relevantLayers, hlf.layersBinnedInAlpha
    return np.concatenate([np.log10(e_inc), np.log10(stack(hlf.E_layers, rel) + 1e-8),
                           stack(hlf.EC_etas, alpha) / 1e2, stack(hlf.EC_phis, alpha) / 1e2,
                           stack(hlf.width_etas, alpha) / 1e2, stack(hlf.width_phis, alpha) / 1e2,
                           np.log10(hlf.E_tot.reshape(-1, 1) + 1e-8), stack(hlf.sparsity, rel),
                           stack(hlf.EC_r, rel) / 1e2, stack(hlf.width_r, rel) / 1e2], axis=1)


def diff_row(name, ours, theirs):
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    abs_d = np.abs(ours - theirs)
    rel = abs_d / np.maximum(np.abs(theirs), 1e-12)
    exact = float(np.mean(ours == theirs))
    return f"| {name} | {abs_d.max():.3g} | {rel.max():.3g} | {exact:.4f} |"


def official_separation_powers(plot_helper, hlf_gen, hlf_ref, x_gen, x_ref, min_energy) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as out:
        arg = SimpleNamespace(mode="hist-chi", dataset="2", output_dir=out, x_scale="log", min_energy=min_energy)
        for fn in ("plot_Etot_Einc", "plot_E_layers", "plot_ECEtas", "plot_ECPhis", "plot_ECWidthEtas",
                   "plot_ECWidthPhis"):
            getattr(plot_helper, fn)(hlf_gen, hlf_ref, arg)
        plot_helper.plot_cell_dist(x_gen, x_ref, arg)
        blocks = Path(out, "histogram_chi2_2.txt").read_text().strip().split("\n\n")
    return {b.split(":")[0].strip(): float(b.split("\n")[1]) for b in blocks}


def compare_pair(label, hlf_module, plot_helper, ref, gen, geo, lines):
    (e_ref, s_ref), (e_gen, s_gen) = ref, gen
    thr = geo.threshold_mev
    t0 = time.perf_counter()
    off_ref, x_ref = official_features(hlf_module, s_ref, e_ref, thr)
    off_gen, x_gen = official_features(hlf_module, s_gen, e_gen, thr)
    t_off = time.perf_counter() - t0
    t0 = time.perf_counter()
    ours_ref = compute_hlf(s_ref, e_ref, geo)
    ours_gen = compute_hlf(s_gen, e_gen, geo)
    t_ours = time.perf_counter() - t0
    lines += [f"\n## {label}\n", f"HLF time for both sets: official {t_off:.2f} s, caloforge {t_ours:.2f} s.\n",
              "| feature (all layers, both sets) | max abs diff | max rel diff | fraction bit-identical |",
              "|---|---|---|---|"]
    lines.append(diff_row("E_tot", np.r_[ours_ref["E_tot"], ours_gen["E_tot"]], np.r_[off_ref.E_tot, off_gen.E_tot]))
    for fam, (attr, layers_attr) in FAMILIES.items():
        layers = getattr(off_ref, layers_attr)
        theirs = np.concatenate([np.stack([getattr(o, attr)[k] for k in layers], 1) for o in (off_ref, off_gen)])
        lines.append(diff_row(fam, np.concatenate([ours_ref[fam], ours_gen[fam]]), theirs))
    vec_ours = np.concatenate([hlf_vector(ours_ref, geo), hlf_vector(ours_gen, geo)])
    vec_off = np.concatenate([official_vector(off_ref, e_ref), official_vector(off_gen, e_gen)])
    lines.append(diff_row("cls-high / FPD vector (362 cols)", vec_ours, vec_off))

    say(f"{label}: features compared; running the official hist-chi plots")
    seps_off = official_separation_powers(plot_helper, off_gen, off_ref, x_gen, x_ref, thr)
    ours_h = [h for h in feature_histograms(ours_ref, ours_gen, geo, "2") if h.official]
    ours_h.append(voxel_histogram(np.where(s_ref < np.float32(thr), 0, s_ref),
                                  np.where(s_gen < np.float32(thr), 0, s_gen), thr))
    rows = []
    for h in ours_h:
        key = OFFICIAL_LABEL[h.name] + ("" if h.layer is None else f" {h.layer}")
        rows.append((h.name, h.separation_power, seps_off[key]))
    lines += ["\n| separation power family | n | max abs diff | max rel diff | mean (official) | mean (ours) |",
              "|---|---|---|---|---|---|"]
    for fam in dict.fromkeys(r[0] for r in rows):
        ours_v = np.array([r[1] for r in rows if r[0] == fam])
        off_v = np.array([r[2] for r in rows if r[0] == fam])
        d = np.abs(ours_v - off_v)
        lines.append(f"| {fam} | {len(d)} | {d.max():.3g} | {(d / np.maximum(off_v, 1e-300)).max():.3g} | "
                     f"{off_v.mean():.6g} | {ours_v.mean():.6g} |")
    return vec_off[: len(e_ref)], vec_off[len(e_ref):]


def fpd_kpd_section(jetnet, pairs, args, lines):
    fpd_kw = {"min_samples": args.fpd_min, "max_samples": args.fpd_max, "num_batches": args.fpd_batches,
              "num_points": args.fpd_points}
    lines += ["\n## FPD / KPD\n",
              (f"Settings: fpd(min_samples={args.fpd_min}, max_samples={args.fpd_max}, "
               f"num_batches={args.fpd_batches}, num_points={args.fpd_points}), "
               f"kpd(num_batches=10, batch_size={args.kpd_batch}); seed 42, normalise=True (jetnet defaults), on the "
               "official cls-high vectors (reference first).\n"),
              ("| pair | FPD ours | FPD jetnet | FPD ours, method='eigh' | KPD ours | KPD jetnet | "
               "time ours FPD/KPD (s) | time jetnet FPD/KPD (s) |"),
              "|---|---|---|---|---|---|---|---|"]
    for label, (ref, gen) in pairs:
        say(f"FPD/KPD: {label}")
        t = time.perf_counter()
        f_o = fpd(ref, gen, **fpd_kw)
        t_fo, t = time.perf_counter() - t, time.perf_counter()
        k_o = kpd(ref, gen, batch_size=args.kpd_batch)
        t_ko, t = time.perf_counter() - t, time.perf_counter()
        f_e = fpd(ref, gen, **fpd_kw, method="eigh")
        t_fe = time.perf_counter() - t
        cells = ["not run"] * 2 + ["-"]
        if jetnet is not None:
            t = time.perf_counter()
            f_j = jetnet.fpd(ref, gen, **fpd_kw)
            t_fj, t = time.perf_counter() - t, time.perf_counter()
            k_j = jetnet.kpd(ref, gen, batch_size=args.kpd_batch)
            t_kj = time.perf_counter() - t
            cells = [f"{f_j[0]:.10g} ± {f_j[1]:.4g}", f"{k_j[0]:.10g} ± {k_j[1]:.4g}", f"{t_fj:.1f} / {t_kj:.1f}"]
        lines.append(f"| {label} | {f_o[0]:.10g} ± {f_o[1]:.4g} | {cells[0]} | {f_e[0]:.10g} ± {f_e[1]:.4g} ({t_fe:.1f} s) | "
                     f"{k_o[0]:.10g} ± {k_o[1]:.4g} | "
                     f"{cells[1]} | {t_fo:.1f} / {t_ko:.1f} | {cells[2]} |")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--official-code", type=Path, required=True)
    p.add_argument("--jetnet-path", type=Path)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "official_agreement.md")
    p.add_argument("--fpd-min", type=int, default=10_000)
    p.add_argument("--fpd-max", type=int, default=50_000)
    p.add_argument("--fpd-batches", type=int, default=20)
    p.add_argument("--fpd-points", type=int, default=10)
    p.add_argument("--kpd-batch", type=int, default=10_000)
    args = p.parse_args(argv)
    hlf_module, plot_helper = load_official(args.official_code)
    jetnet = load_jetnet(args.jetnet_path) if args.jetnet_path else None
    geo = Geometry.official("2")
    with h5py.File(args.data, "r") as f:
        showers, energies = f["showers"][:], f["incident_energies"][:]
    order = np.random.default_rng(0).permutation(len(showers))
    half = len(order) // 2
    ref = (energies[order[:half]], showers[order[:half]])
    gen = (energies[order[half:]], showers[order[half:]])
    noise = np.random.default_rng(1).lognormal(0.0, 0.1, gen[1].shape).astype(np.float32)
    perturbed = (gen[0], gen[1] * noise * np.float32(0.97))
    cmd = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    lines = ["# Agreement with the official CaloChallenge evaluation code", "",
             f"Command: `{cmd}`", "", f"Machine: {machine()}", "",
             (f"Data: `{args.data.name}` ({len(showers)} Geant4 showers, DS2 mesh), seeded split into two halves "
              f"of {half} / {len(showers) - half}; threshold {geo.threshold_mev:.7g} MeV. Official code: "
              f"`{args.official_code}`; jetnet: `{args.jetnet_path or 'not loaded'}`.")]
    vecs = {}
    say(f"loaded {len(showers)} showers")
    for label, g in (("Geant4 half A vs Geant4 half B", gen), ("Geant4 half A vs perturbed half B", perturbed)):
        vecs[label] = compare_pair(label, hlf_module, plot_helper, ref, g, geo, lines)
    fpd_kpd_section(jetnet, list(vecs.items()), args, lines)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".md.tmp")
    try:
        tmp.write_text("\n".join(lines) + "\n")
        os.replace(tmp, args.out)
    finally:
        tmp.unlink(missing_ok=True)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
