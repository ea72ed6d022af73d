"""`caloforge evaluate`: one streaming pass per file, then every metric of the official evaluation, then a report.

Each file is read once, in batches: high-level features, row digests (for the overlap guard), average showers
(overall and per incident-energy decade), a voxel-energy spectrum and, only for the rows a low-level classifier
needs (capped so the arrays fit in memory), the voxel inputs. Everything else (histograms and separation powers,
FPD / KPD, classifiers, plots) works on those small summaries. Output: ``metrics.json`` (schema in
docs/evaluate.md), ``summary.csv`` (one row per generated file), ``report.html`` and ``plots/*.png``.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from caloforge import __version__
from caloforge.data.geometry import Geometry
from caloforge.data.reader import ShowerFile
from caloforge.errors import CaloforgeError
from caloforge.evaluation import guards, histograms
from caloforge.evaluation.features import apply_threshold, compute_hlf, hlf_vector, voxel_inputs
from caloforge.evaluation.plots import write_atomic
from caloforge.progress import progress

SCHEMA = "caloforge.evaluate/1"
CLASSIFIERS = ("high", "low", "low-normed", "cnn")
ENERGY_RANGES_MEV = ((1e3, 1e4), (1e4, 1e5), (1e5, 1e6))  # the official avg-E decades for DS2/3
LOW_LEVEL_BUDGET_BYTES = 2 * 2**30  # both classes' low-level inputs together
_FINE_PER_DECADE = 1000  # voxel-spectrum accumulation grid; official edges are snapped to it
_FINE_TOP_LOG10 = 8.0  # 100 TeV per voxel: above any physical deposit


@dataclass
class FileScan:
    """What one streaming pass keeps of a file."""

    path: str
    n: int
    feats: dict
    digests: np.ndarray
    mean_shower: np.ndarray  # (V,) MeV, thresholded
    range_means: list = field(default_factory=list)  # [(lo, hi, count, (V,) mean)]
    voxel_counts: np.ndarray | None = None  # fine log-grid counts of thresholded, non-zero voxels
    voxel_max: float = 0.0
    low: dict = field(default_factory=dict)  # mode -> (n_low, D) inputs of a row subset
    seconds: float = 0.0


def _fine_bin(values: np.ndarray, threshold: float) -> np.ndarray:
    return np.floor((np.log10(values) - math.log10(threshold)) * _FINE_PER_DECADE).astype(np.int64)


def scan_file(path, geometry: Geometry, low_modes=(), low_cap: int | None = None, seed: int = 0,
              batch_size: int | None = None, desc: str = "") -> FileScan:
    """Stream ``path`` once and keep the per-file summaries every later step needs (batches of at most 2048
    showers and ~128 MiB of float64, so a dataset-3 file streams in bounded memory)."""
    t0 = time.perf_counter()
    batch_size = batch_size or max(1, min(2048, 2**27 // (8 * geometry.n_voxels)))
    thr = geometry.threshold_mev
    n_fine = int((_FINE_TOP_LOG10 - math.log10(thr)) * _FINE_PER_DECADE) + 1
    with ShowerFile(path, geometry=geometry) as f:
        n = f.n
        rows = np.arange(n)
        if low_modes and low_cap is not None and n > low_cap:
            rows = np.sort(np.random.default_rng(seed).choice(n, low_cap, replace=False))
        parts, digests, low = [], [], {m: [] for m in low_modes}
        total = np.zeros(geometry.n_voxels)
        rsum = [np.zeros(geometry.n_voxels) for _ in ENERGY_RANGES_MEV]
        rcount = [0] * len(ENERGY_RANGES_MEV)
        counts, vmax = np.zeros(n_fine, dtype=np.int64), 0.0
        n_batches = math.ceil(n / batch_size)
        for b in progress(f.iter_batches(batch_size), desc=desc or Path(path).name, total=n_batches, unit="batch"):
            x = apply_threshold(b.showers, thr)  # (b, V) float64
            parts.append(compute_hlf(b.showers, b.energies, geometry, thr))
            digests.append(guards.row_digests(b.energies, b.showers))
            total += x.sum(axis=0)
            for k, (lo, hi) in enumerate(ENERGY_RANGES_MEV):
                sel = (b.energies >= lo) & (b.energies < hi)
                rsum[k] += x[sel].sum(axis=0)
                rcount[k] += int(sel.sum())
            pos = x[x > 0]
            if pos.size:
                vmax = max(vmax, float(pos.max()))
                fine = _fine_bin(pos, thr)  # float32 voxels a hair below the float64 threshold fall out, as official
                counts += np.bincount(np.minimum(fine[fine >= 0], n_fine - 1), minlength=n_fine)
            if low_modes:
                take = np.isin(b.index, rows)
                for m in low_modes:
                    vmode = "low" if m == "cnn" else m
                    low[m].append(voxel_inputs(b.showers[take], b.energies[take], vmode, geometry, thr, np.float32))
    feats = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]} if parts else {}
    if not parts:
        raise CaloforgeError(f"{path}: dataset 'showers': expected at least one shower, found 0")
    return FileScan(
        str(path), n, feats, np.concatenate(digests), total / n,
        [(lo, hi, c, s / max(c, 1)) for (lo, hi), c, s in zip(ENERGY_RANGES_MEV, rcount, rsum)],
        counts, vmax, {m: np.concatenate(v) for m, v in low.items()}, time.perf_counter() - t0,
    )


def voxel_spectrum(ref: FileScan, gen: FileScan, threshold: float) -> histograms.HistResult:
    """Official voxel-energy histogram (logspace(thr, ref max, 50)) from the fine streamed counts; the official
    edges are snapped to the 1/1000-decade accumulation grid (a relative edge shift below 0.12 %)."""
    top = math.ceil((math.log10(max(ref.voxel_max, threshold * 1.001)) - math.log10(threshold)) * _FINE_PER_DECADE)
    cuts = np.unique(np.round(np.linspace(0, top, 50)).astype(int))
    edges = threshold * 10 ** (cuts / _FINE_PER_DECADE)
    rc = np.add.reduceat(ref.voxel_counts[: cuts[-1]], cuts[:-1])
    gc = np.add.reduceat(gen.voxel_counts[: cuts[-1]], cuts[:-1])
    rd, gd = histograms.density(rc, edges), histograms.density(gc, edges)
    chi2, ndf = histograms.chi2_two_sample(rc, gc)
    return histograms.HistResult("voxel", None, edges, rc, gc, rd, gd,
                                 histograms.separation_power(rd, gd, edges), chi2, ndf, True)


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


def _labels(paths) -> list[str]:
    stems = [Path(p).stem for p in paths]
    return [s if stems.count(s) == 1 else f"{s}#{i + 1}" for i, s in enumerate(stems)]


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
) -> dict:
    """Evaluate generated files against a reference; writes metrics.json, summary.csv, report.html, plots/.

    Returns the metrics dict (the content of metrics.json). ``classifier_settings`` (a ClassifierSettings)
    overrides the network/training settings, e.g. a tiny network in tests.
    """
    from caloforge.evaluation import fpd_kpd
    from caloforge.evaluation.classifier import run_classifier
    from caloforge.evaluation.plots import make_figures

    t_start = time.perf_counter()
    gen_paths = [str(p) for p in gen_paths]
    if not gen_paths:
        raise CaloforgeError("evaluate: --gen: expected at least one generated file, found none")
    classifiers = tuple(classifiers or ())
    bad = [c for c in classifiers if c not in CLASSIFIERS]
    if bad:
        raise CaloforgeError(f"evaluate: --classifiers: expected a subset of {list(CLASSIFIERS)}, found {bad}")
    warn = guards.check_independence(ref_path, gen_paths, train_path, allow_overlap, content=False)
    geo = _resolve_geometry(ref_path, dataset, geometry)
    if dataset is None and geo.name.startswith("calochallenge-"):
        dataset = geo.name.split("-", 1)[1]  # an official file without --dataset: still the official binnings
    if "cnn" in classifiers and not geo.is_regular:
        raise CaloforgeError(f"evaluate: --classifiers cnn: needs a regular mesh, geometry {geo.name} is not one")
    low_modes = tuple(c for c in classifiers if c != "high")
    row_bytes = (geo.n_voxels + len(geo.relevant_layers) + 1) * 4 * len(low_modes)
    cap = low_level_cap or max(1000, LOW_LEVEL_BUDGET_BYTES // max(2 * row_bytes, 1))
    out = Path(out_dir)
    (out / "plots").mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    ref = scan_file(ref_path, geo, low_modes, cap, seed, desc="reference")
    timings["scan_reference"] = ref.seconds
    gens = [scan_file(p, geo, low_modes, cap, seed + 1 + i, desc=f"generated {i + 1}") for i, p in enumerate(gen_paths)]
    digests = {str(ref_path): ref.digests, **{g.path: g.digests for g in gens}}
    warn += guards.check_independence(ref_path, gen_paths, train_path, allow_overlap, digests=digests)
    warn = list(dict.fromkeys(warn))

    labels = _labels(gen_paths)
    results = []
    for label, g in zip(labels, gens):
        t0, tim = time.perf_counter(), {"scan": round(g.seconds, 3)}
        e_check = guards.energy_distribution_check(g.feats["E_inc"], ref.feats["E_inc"])
        if e_check["warning"]:
            warn.append(f"{label}: {e_check['warning']}")
        hists = histograms.feature_histograms(ref.feats, g.feats, geo, dataset) + [
            voxel_spectrum(ref, g, geo.threshold_mev)]
        tim["histograms"] = round(time.perf_counter() - t0, 3)
        entry = {"path": g.path, "label": label, "n": g.n, "energy_check": e_check, "fpd": None, "kpd": None,
                 "classifiers": {}, "separation_power": {
                     "summary": histograms.summarise(hists),
                     "features": [{"name": h.name, "layer": h.layer, "energy": h.energy, "official": h.official,
                                   "separation_power": h.separation_power, "chi2": h.chi2, "ndf": h.ndf}
                                  for h in hists]}}
        seps = np.array([h.separation_power for h in hists if h.official], dtype=float)
        entry["separation_power"]["mean_official"] = float(np.nanmean(seps)) if seps.size else None
        x_ref, x_gen = hlf_vector(ref.feats, geo), hlf_vector(g.feats, geo)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            # The fast Fréchet trace (eigh) agrees with scipy's sqrtm to ~1e-10 relative and is ~20x faster at 362
            # features; --official keeps jetnet's exact sqrtm call.
            fpd_opts = {"method": "sqrtm" if official else "eigh", **(fpd_options or {})}
            for name, enabled, fn, opts in (("fpd", fpd, fpd_kpd.fpd, fpd_opts), ("kpd", kpd, fpd_kpd.kpd, kpd_options)):
                if enabled:
                    t1 = time.perf_counter()
                    v, e = fn(x_ref, x_gen, **(opts or {}))
                    entry[name] = {"value": v, "error": e, "value_x1e3": v * 1e3, "error_x1e3": e * 1e3,
                                   "options": opts or {}}
                    tim[name] = round(time.perf_counter() - t1, 3)
        for w in {str(c.message) for c in caught}:
            warn.append(f"{label}: {w}")
        for mode in classifiers:
            t1 = time.perf_counter()
            xg, xr = _classifier_inputs(mode, ref, g, geo)
            entry["classifiers"][mode] = run_classifier(
                xg, xr, official=official, repeats=repeats, seed=seed, epochs=classifier_epochs, device=device,
                settings=classifier_settings,
                network="cnn" if mode == "cnn" else "dnn", grid_shape=geo.grid_shape if mode == "cnn" else None,
                desc=f"cls-{mode} {label}")
            entry["classifiers"][mode]["inputs"] = "cls-" + mode
            tim[f"classifier_{mode}"] = round(time.perf_counter() - t1, 3)
        entry["timings_s"] = tim
        entry["_hists"] = hists
        results.append(entry)

    t_plot = time.perf_counter()
    figures = make_figures(out / "plots", geo, ref, gens, labels, results) if plots else []
    timings["plots"] = round(time.perf_counter() - t_plot, 3)
    timings["total"] = round(time.perf_counter() - t_start, 3)
    metrics = {
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
                     "fpd": fpd, "kpd": kpd, "allow_overlap": allow_overlap, "classifier_epochs": classifier_epochs,
                     "low_level_cap": cap if low_modes else None},
        "warnings": warn,
        "generated": [{k: v for k, v in r.items() if k != "_hists"} for r in results],
        "plots": [f["file"] for f in figures],
        "timings_s": timings,
    }
    metrics = _clean(metrics)
    write_atomic(out / "metrics.json", json.dumps(metrics, indent=1).encode())
    write_atomic(out / "summary.csv", summary_csv(metrics).encode())
    write_atomic(out / "report.html", render_html(metrics, figures).encode())
    return metrics


def summary_row(entry: dict) -> dict:
    """One flat row of the headline numbers of a generated file (FPD/KPD x 10^3, as the published tables)."""
    row = {"label": entry["label"], "path": entry["path"], "n": entry["n"]}
    for mode, c in entry["classifiers"].items():
        row.update({f"auc_{mode}": c["auc"], f"auc_{mode}_std": c["auc_std"], f"jsd_{mode}": c["jsd"]})
    for name in ("fpd", "kpd"):
        row[f"{name}_x1e3"] = entry[name]["value_x1e3"] if entry[name] else None
        row[f"{name}_err_x1e3"] = entry[name]["error_x1e3"] if entry[name] else None
    row["sep_mean_official"] = entry["separation_power"]["mean_official"]
    row["energy_ks_p"] = entry["energy_check"]["ks_pvalue"]
    return row


def summary_csv(metrics: dict) -> str:
    rows = [summary_row(e) for e in metrics["generated"]]
    keys = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in keys})
    return buf.getvalue()


def _fmt(v, digits: int = 4) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}g}" if abs(v) < 1e4 else f"{v:.3e}"
    return html.escape(str(v))


_CSS = ("body{font-family:sans-serif;max-width:1200px;margin:auto;padding:1em;color:#222}"
        "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}"
        "th{background:#eee}td:first-child{text-align:left}.warn{background:#fdd;border:2px solid #c00;padding:.5em}"
        "figure{margin:1em 0}img{max-width:100%}figcaption{font-size:90%;color:#444}")


def _table(rows: list[dict]) -> str:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    head = "".join(f"<th>{html.escape(k)}</th>" for k in keys)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(r.get(k))}</td>" for k in keys) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def render_html(metrics: dict, figures: list[dict]) -> str:
    """A self-contained page (inline CSS, no scripts): inputs, warnings, headline table, separation-power summary,
    then the figures by section with captions. PNGs are referenced relative to the report."""
    e = html.escape
    parts = [(f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>caloforge evaluation</title>"
             f"<style>{_CSS}</style></head><body><h1>caloforge evaluation</h1>"),
             (f"<p>Reference: <code>{e(metrics['reference']['path'])}</code> ({metrics['reference']['n']} showers); "
             f"geometry {e(metrics['geometry'])}; dataset {e(str(metrics['dataset']))}; threshold "
             f"{_fmt(metrics['threshold_mev'])} MeV; classifier protocol "
             f"{'official' if metrics['settings']['official'] else 'fast (see docs/evaluate.md)'}.</p>")]
    if metrics["warnings"]:
        parts.append("<div class='warn'><b>Warnings</b><ul>" + "".join(f"<li>{e(w)}</li>" for w in metrics["warnings"])
                     + "</ul></div>")
    parts.append("<h2>Metrics</h2><p>AUC/JSD: calibrated classifier on the val split (0.5/0 = indistinguishable). "
                 "FPD/KPD x10<sup>3</sup> as in the published tables. sep_mean_official: mean separation power of "
                 "the histograms evaluate.py computes.</p>")
    parts.append(_table([summary_row(g) for g in metrics["generated"]]))
    parts.append("<h2>Separation power by feature</h2>")
    parts.append(_table([{"file": g["label"], "feature": name, "mean": s["mean"], "max": s["max"], "n": s["n"],
                          "official": s["official"]}
                         for g in metrics["generated"] for name, s in g["separation_power"]["summary"].items()]))
    section = None
    for f in figures:
        if f["section"] != section:
            section = f["section"]
            parts.append(f"<h2>{e(section)}</h2>")
        parts.append(f"<figure><img src='{e(f['file'])}' alt='{e(f['file'])}'><figcaption>{e(f['caption'])}"
                     "</figcaption></figure>")
    parts.append("<h2>Evaluation cost</h2>")
    parts.append(_table([{"file": "(all)", **metrics["timings_s"]}]
                        + [{"file": g["label"], **g["timings_s"]} for g in metrics["generated"]]))
    parts.append(f"<p>caloforge {e(metrics['caloforge_version'])}, {e(metrics['created_utc'])}, schema "
                 f"{e(metrics['schema'])}.</p></body></html>")
    return "\n".join(parts)
