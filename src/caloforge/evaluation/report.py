"""`caloforge evaluate`: one streaming pass per file (``scan.py``), then every metric of the official evaluation per
generated file, then one report with a column per file.

Histograms and separation powers, FPD / KPD and classifiers work on the small per-file summaries. Output (a directory
swapped in whole, so a failed or killed run leaves the previous report or nothing): ``metrics.json`` (schema in
docs/evaluate.md), ``summary.csv`` (one row per generated file), ``report.html`` and ``plots/*.png``.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from caloforge import __version__
from caloforge.data.geometry import Geometry
from caloforge.data.reader import ShowerFile
from caloforge.errors import CaloforgeError
from caloforge.evaluation import guards, histograms
from caloforge.evaluation.features import hlf_vector, hlf_vector_names
from caloforge.evaluation.report_html import render_html, summary_csv, summary_row  # noqa: F401  (re-exported)
from caloforge.evaluation.scan import FileScan, finish_reference_spectrum, scan_file, voxel_spectrum
from caloforge.outputs import OutputError, atomic_write_text, check_output, clean_stale_temps, replaced_dir

SCHEMA = "caloforge.evaluate/1"
CLASSIFIERS = ("high", "low", "low-normed", "cnn")
LOW_LEVEL_BUDGET_BYTES = 2 * 2**30  # both classes' low-level inputs together


def _resolve_geometry(ref_path, dataset, geometry) -> Geometry:
    if dataset is not None:
        return Geometry.official(str(dataset))
    if geometry is not None:
        return geometry
    with ShowerFile(ref_path) as f:
        if f.geometry is None:
            raise CaloforgeError(
                f"{ref_path}: dataset 'showers': {f.n_voxels} voxels match no official geometry and the file has no "
                "'caloforge_geometry' attribute; pass --dataset or --geometry regular:NZxNAxNR:DR_MM"
            )
        return f.geometry


def _labels(paths, labels=None) -> list[str]:
    if labels:
        if len(labels) != len(paths):
            raise CaloforgeError(f"evaluate: --label: expected one label per --gen ({len(paths)}), found {len(labels)}")
        if len(set(labels)) != len(labels):
            raise CaloforgeError(f"evaluate: --label: expected distinct labels, found {list(labels)}")
        return [str(x) for x in labels]
    stems = [Path(p).stem for p in paths]
    return [s if stems.count(s) == 1 else f"{s}#{i + 1}" for i, s in enumerate(stems)]


def check_report_dir(out_dir, inputs, force: bool) -> Path:
    """Refuse, before any work, a report directory that exists (without ``force``), is an input, or holds an input
    (replacing the directory as a whole would delete it, so that is refused even with ``force``)."""
    out = Path(out_dir)
    for src in inputs:
        if src is not None and Path(src).resolve().is_relative_to(out.resolve()):
            raise OutputError(f"{out}: the report directory would replace the folder holding the input {src}; "
                              "choose another --out")
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: --out exists and is not a directory; choose another path")
    check_output(out, force=force, inputs=inputs, what="directory")
    return out


def _clean(obj):
    """JSON-safe copy: numpy scalars/arrays to Python, NaN/inf to None."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _clean(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(float(obj)) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def _classifier_inputs(mode: str, ref: FileScan, gen: FileScan, geometry: Geometry):
    if mode == "high":
        return hlf_vector(gen.feats, geometry), hlf_vector(ref.feats, geometry)
    return gen.low[mode], ref.low[mode]


def evaluate(
    gen_paths: list,
    ref_path,
    dataset: str | None = None,
    out_dir="evaluation",
    geometry: Geometry | None = None,
    classifiers=("high", "low"),
    fpd: bool = True,
    kpd: bool = True,
    official: bool = False,
    repeats: int = 1,
    seed: int = 0,
    allow_overlap: bool = False,
    train_path=None,
    classifier_epochs: int | None = None,
    fpd_options: dict | None = None,
    kpd_options: dict | None = None,
    low_level_cap: int | None = None,
    device: str = "auto",
    classifier_settings=None,
    plots: bool = True,
    labels: list | None = None,
    ms_per_shower: list | None = None,
    force: bool = False,
) -> dict:
    """Evaluate generated files against a reference; writes metrics.json, summary.csv, report.html, plots/ into
    ``out_dir`` (refused if it exists unless ``force``; swapped in whole at the end).

    Returns the metrics dict (the content of metrics.json). ``classifier_settings`` (a ClassifierSettings)
    overrides the network/training settings, e.g. a tiny network in tests. ``labels`` names the generated files in
    the report; ``ms_per_shower`` (one number or None per file) adds generation cost and the quality-vs-time plot.
    """
    t_start = time.perf_counter()
    gen_paths = [str(p) for p in gen_paths]
    if not gen_paths:
        raise CaloforgeError("evaluate: --gen: expected at least one generated file, found none")
    classifiers = tuple(classifiers or ())
    bad = [c for c in classifiers if c not in CLASSIFIERS]
    if bad:
        raise CaloforgeError(f"evaluate: --classifiers: expected a subset of {list(CLASSIFIERS)}, found {bad}")
    names = _labels(gen_paths, labels)
    ms = list(ms_per_shower) if ms_per_shower is not None else [None] * len(gen_paths)
    if len(ms) != len(gen_paths):
        raise CaloforgeError(f"evaluate: ms_per_shower: expected one value per --gen ({len(gen_paths)}), found {len(ms)}")
    out = check_report_dir(out_dir, [ref_path, train_path, *gen_paths], force)
    clean_stale_temps(out.parent if str(out.parent) else Path("."))
    warn = guards.check_independence(ref_path, gen_paths, train_path, allow_overlap, content=False)
    geo = _resolve_geometry(ref_path, dataset, geometry)
    if dataset is None and geo.name.startswith("calochallenge-"):
        dataset = geo.name.split("-", 1)[1]  # an official file without --dataset: still the official binnings
    from caloforge.data.validate import require_valid

    # no NaN, inf, negative deposit or E <= 0 reaches a metric: one line naming the file, row and field
    require_valid(ref_path, geo, what="--ref")
    for p in gen_paths:
        require_valid(p, geo, what="--gen")
    if "cnn" in classifiers and not geo.is_regular:
        raise CaloforgeError(f"evaluate: --classifiers cnn: needs a regular mesh, geometry {geo.name} is not one")
    low_modes = tuple(c for c in classifiers if c != "high")
    row_bytes = (geo.n_voxels + len(geo.relevant_layers) + 1) * 4 * len(low_modes)
    cap = low_level_cap or max(1000, LOW_LEVEL_BUDGET_BYTES // max(2 * row_bytes, 1))
    timings: dict[str, float] = {}

    ref = scan_file(ref_path, geo, low_modes, cap, seed, desc="reference")
    edges = finish_reference_spectrum(ref, geo)
    timings["scan_reference"] = ref.seconds
    # the same row subset seed for every generated file: a file's numbers do not depend on its position
    gens = [scan_file(p, geo, low_modes, cap, seed + 1, desc=f"generated {i + 1}", voxel_edges=edges)
            for i, p in enumerate(gen_paths)]
    digests = {str(ref_path): ref.digests, **{g.path: g.digests for g in gens}}
    warn += guards.check_independence(ref_path, gen_paths, train_path, allow_overlap, digests=digests)
    if edges is None:
        warn.append(f"{ref_path}: no reference voxel above the threshold {geo.threshold_mev:.4g} MeV: no voxel "
                    "spectrum (the official code fails here)")

    settings = {"classifiers": classifiers, "fpd": fpd, "kpd": kpd, "official": official, "repeats": repeats,
                "seed": seed, "classifier_epochs": classifier_epochs, "fpd_options": fpd_options,
                "kpd_options": kpd_options, "device": device, "classifier_settings": classifier_settings}
    results = []
    for label, g, g_ms in zip(names, gens, ms):
        entry, entry_warn = evaluate_one(label, g, ref, geo, dataset, edges, **settings)
        entry["ms_per_shower"] = g_ms
        results.append(entry)
        warn += entry_warn
    warn = list(dict.fromkeys(warn))

    with replaced_dir(out) as tmp:
        (tmp / "plots").mkdir()
        t_plot = time.perf_counter()
        figures = []
        if plots:
            from caloforge.evaluation.plots import make_figures

            figures = make_figures(tmp / "plots", geo, ref, gens, names, results)
        timings["plots"] = round(time.perf_counter() - t_plot, 3)
        timings["total"] = round(time.perf_counter() - t_start, 3)
        metrics = _clean({
            "schema": SCHEMA,
            "caloforge_version": __version__,
            "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "dataset": dataset,
            "geometry": geo.name,
            "n_voxels": geo.n_voxels,
            "threshold_mev": geo.threshold_mev,
            "reference": {"path": str(ref_path), "n": ref.n},
            "train": str(train_path) if train_path else None,
            "settings": {"classifiers": list(classifiers), "official": official, "repeats": repeats, "seed": seed,
                         "fpd": fpd, "kpd": kpd, "allow_overlap": allow_overlap,
                         "classifier_epochs": classifier_epochs, "low_level_cap": cap if low_modes else None},
            "warnings": warn,
            "generated": [{k: v for k, v in r.items() if k != "_hists"} for r in results],
            "plots": [f["file"] for f in figures],
            "timings_s": timings,
        })
        atomic_write_text(tmp / "metrics.json", json.dumps(metrics, indent=1))
        atomic_write_text(tmp / "summary.csv", summary_csv(metrics))
        atomic_write_text(tmp / "report.html", render_html(metrics, figures))
    return metrics


def _separation_entry(hists: list) -> dict:
    """Separation powers of one file, with a note for every histogram that could not give a number."""
    notes = [f"separation power of {h.label}: {h.note}" for h in hists if h.note]
    seps = np.array([h.separation_power for h in hists if h.official], dtype=float)
    finite = seps[np.isfinite(seps)]
    return {"summary": histograms.summarise(hists),
            "features": [{"name": h.name, "layer": h.layer, "energy": h.energy, "official": h.official,
                          "separation_power": h.separation_power, "chi2": h.chi2, "ndf": h.ndf, "note": h.note}
                         for h in hists],
            "mean_official": float(finite.mean()) if finite.size else None,
            "notes": notes}


def evaluate_one(label, g: FileScan, ref: FileScan, geo: Geometry, dataset, edges, *, classifiers, fpd, kpd,
                 official, repeats, seed, classifier_epochs, fpd_options, kpd_options, device,
                 classifier_settings) -> tuple[dict, list[str]]:
    """Every metric of one generated file against the reference: (metrics entry, warnings). The same function for
    one file or many, so a multi-model report holds exactly the single-model numbers."""
    from caloforge.evaluation import fpd_kpd
    from caloforge.evaluation.classifier import run_classifier

    warn: list[str] = []
    t0, tim = time.perf_counter(), {"scan": round(g.seconds, 3)}
    e_check = guards.energy_distribution_check(g.feats["E_inc"], ref.feats["E_inc"])
    if e_check["warning"]:
        warn.append(f"{label}: {e_check['warning']}")
    hists = histograms.feature_histograms(ref.feats, g.feats, geo, dataset)
    if edges is not None:
        hists.append(voxel_spectrum(ref, g, edges))
    tim["histograms"] = round(time.perf_counter() - t0, 3)
    entry = {"path": g.path, "label": label, "n": g.n, "energy_check": e_check, "fpd": None, "kpd": None,
             "classifiers": {}, "separation_power": _separation_entry(hists)}
    x_ref, x_gen = hlf_vector(ref.feats, geo), hlf_vector(g.feats, geo)
    col_names = hlf_vector_names(geo)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # The fast Fréchet trace (eigh) agrees with scipy's sqrtm to ~1e-9 relative and is ~20x faster at 362
        # features; --official keeps jetnet's exact sqrtm call.
        fpd_opts = {"method": "sqrtm" if official else "eigh", **(fpd_options or {})}
        for name, enabled, fn, opts in (("fpd", fpd, fpd_kpd.fpd, fpd_opts), ("kpd", kpd, fpd_kpd.kpd, kpd_options)):
            if enabled:
                t1 = time.perf_counter()
                entry[name] = fpd_kpd.guarded(name, fn, x_ref, x_gen, col_names, **(opts or {}))
                tim[name] = round(time.perf_counter() - t1, 3)
    warn += [f"{label}: {w}" for w in dict.fromkeys(str(c.message) for c in caught)]
    for mode in classifiers:
        t1 = time.perf_counter()
        xg, xr = _classifier_inputs(mode, ref, g, geo)
        try:
            entry["classifiers"][mode] = run_classifier(
                xg, xr, official=official, repeats=repeats, seed=seed, epochs=classifier_epochs, device=device,
                settings=classifier_settings,
                network="cnn" if mode == "cnn" else "dnn", grid_shape=geo.grid_shape if mode == "cnn" else None,
                desc=f"cls-{mode} {label}")
        except CaloforgeError as exc:  # too few showers, non-finite inputs: this number is refused, not the report
            entry["classifiers"][mode] = {"auc": None, "auc_std": None, "jsd": None, "jsd_std": None,
                                          "refused": str(exc), "per_run": [], "roc": None}
            warn.append(f"{label}: cls-{mode} refused: {exc}")
        entry["classifiers"][mode]["inputs"] = "cls-" + mode
        tim[f"classifier_{mode}"] = round(time.perf_counter() - t1, 3)
    entry["timings_s"] = tim
    entry["_hists"] = hists
    return entry, warn
