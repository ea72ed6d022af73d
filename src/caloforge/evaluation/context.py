"""What a good number is: the context a report puts beside each headline metric.

A classifier AUC of 0.71 or an FPD of 583 x1e-3 means nothing on its own: at a few thousand showers even Geant4
against Geant4 gives FPD ~ 450 x1e-3, because FPD carries a finite-sample term ~ D (1/n1 + 1/n2). So every headline
number is shown with

- the **floor**: the same metrics of the reference against an independent reference sample of the same size (another
  split of the same data, e.g. the training split, or when none is given the two halves of the reference);
- the **published** CaloChallenge values (Geant4 and a few generators; measured on 100k showers, so FPD is not
  comparable in absolute terms, AUC and KPD roughly are);
- a one-line **verdict** that reads the number against its floor.
"""

from __future__ import annotations

import math

import numpy as np

from caloforge.data.geometry import Geometry
from caloforge.data.reader import ShowerFile
from caloforge.evaluation.features import compute_hlf, hlf_vector, voxel_inputs

# CaloChallenge final results (arXiv:2410.21611), from CaloChallenge/homepage final_results/*.hdf at commit
# 9b41df72a03aeecb48bfbaa946f9792f255e0ba7 via the scalar-metrics CSV derived from them. Columns: FPD x1e3 (std),
# KPD x1e3 (std), binary classifier AUC on high-level features (std), on low-level voxels (std). 100k showers.
PUBLISHED_SOURCE = "CaloChallenge final results (arXiv:2410.21611), 100k Geant4 showers per file"
PUBLISHED = {
    "ds2": [
        ("Geant4 vs Geant4", 10.776, 0.790, -0.0276, 0.0215, 0.4996, 0.0024, 0.4993, 0.0025),
        ("CaloDREAM", 24.649, 1.035, 0.0231, 0.0364, 0.5308, 0.0032, 0.5208, 0.0023),
        ("CaloDiffusion", 146.933, 0.870, 0.1741, 0.0422, 0.5766, 0.0039, 0.5910, 0.0086),
        ("CaloScore", 112.479, 0.908, 0.1486, 0.0568, 0.5946, 0.0035, 0.6657, 0.0024),
    ],
    "ds3": [
        ("Geant4 vs Geant4", 8.758, 0.559, -0.0091, 0.0466, 0.4975, 0.0021, 0.5001, 0.0028),
        ("CaloDREAM", 20.747, 1.077, 0.0098, 0.0145, 0.6300, 0.0051, 0.5241, 0.0039),
        ("CaloDiffusion", 71.238, 1.921, 0.2278, 0.0978, 0.5613, 0.0026, 0.6068, 0.0055),
    ],
}
_MESH_TO_DATASET = {(45, 16, 9): "ds2", (45, 50, 18): "ds3"}
FLOOR_MAX_ROWS = 20_000  # rows per side read for the floor; above this the floor is computed on a subset


def published_for(geometry: Geometry | None, dataset: str | None = None) -> list[dict]:
    """The published rows for this dataset (or for a geometry on the same mesh as DS2/DS3); [] when none apply."""
    key = None
    if dataset is not None:
        key = f"ds{dataset}" if not str(dataset).startswith("ds") else str(dataset)
    elif geometry is not None and geometry.is_regular:
        key = _MESH_TO_DATASET.get(tuple(geometry.grid_shape))
    cols = ("name", "fpd_x1e3", "fpd_err_x1e3", "kpd_x1e3", "kpd_err_x1e3", "auc_low", "auc_low_std",
            "auc_high", "auc_high_std")
    return [dict(zip(cols, row)) | {"dataset": key} for row in PUBLISHED.get(key, [])]


def load_inputs(path, geometry: Geometry, rows: np.ndarray | None = None, low: bool = True) -> dict:
    """High-level feature vector (n, D) and, with ``low``, low-level classifier inputs of the given rows of a file."""
    with ShowerFile(path, geometry=geometry) as f:
        idx = np.arange(f.n) if rows is None else np.sort(np.asarray(rows))
        batch = f.read(idx)
    out = {"n": len(idx), "hlf": hlf_vector(compute_hlf(batch.showers, batch.energies, geometry), geometry)}
    if low:
        out["low"] = voxel_inputs(batch.showers, batch.energies, "low", geometry, dtype=np.float32)
    return out


def compare(a: dict, b: dict, classifiers=("high", "low"), fpd_options=None, kpd_options=None, seed: int = 0,
            classifier_epochs: int | None = None, device: str = "cpu", classifier_settings=None) -> dict:
    """FPD, KPD and classifier AUCs of sample ``b`` against reference ``a`` (dicts from :func:`load_inputs`)."""
    import warnings

    from caloforge.evaluation import fpd_kpd
    from caloforge.evaluation.classifier import run_classifier

    out: dict = {"n": [int(a["n"]), int(b["n"])], "n_features": int(a["hlf"].shape[1]), "classifiers": {}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the small-sample advice is already in the main report
        for name, fn, opts in (("fpd", fpd_kpd.fpd, {"method": "eigh", **(fpd_options or {})}),
                               ("kpd", fpd_kpd.kpd, kpd_options or {})):
            try:
                v, e = fn(a["hlf"], b["hlf"], **opts)
            except getattr(fpd_kpd, "MetricRefused", ()) as exc:  # a degenerate sample: said, not hidden
                out[name] = {"value": None, "error": None, "refused": str(exc)}
                continue
            out[name] = {"value": v, "error": e, "value_x1e3": v * 1e3, "error_x1e3": e * 1e3}
    for mode in classifiers:
        xa, xb = (a["hlf"], b["hlf"]) if mode == "high" else (a.get(mode), b.get(mode))
        if xa is None or xb is None:
            continue
        res = run_classifier(xb, xa, seed=seed, epochs=classifier_epochs, device=device,
                             settings=classifier_settings, desc=f"floor cls-{mode}")
        out["classifiers"][mode] = {"auc": res["auc"], "auc_std": res["auc_std"], "n_per_class": res["n_per_class"]}
    return out


def reference_floor(ref_path, geometry: Geometry, n: int, other_path=None, seed: int = 0, **compare_kw) -> dict:
    """Reference against reference at ``n`` showers a side: ``n`` rows of ``other_path`` (an independent sample of
    the same data, e.g. the training split) against ``n`` rows of the reference; without ``other_path`` the
    reference's two halves (n/2 a side: FPD then reads high by about a factor two)."""
    rng = np.random.default_rng(seed + 7)
    low = any(c != "high" for c in compare_kw.get("classifiers", ("high", "low")))
    with ShowerFile(ref_path, geometry=geometry) as f:
        n_ref = f.n
    if other_path is not None:
        with ShowerFile(other_path, geometry=geometry) as f:
            n_other = f.n
        k = int(min(n, n_ref, n_other, FLOOR_MAX_ROWS))
        a = load_inputs(ref_path, geometry, rng.choice(n_ref, k, replace=False), low)
        b = load_inputs(other_path, geometry, rng.choice(n_other, k, replace=False), low)
        kind = "independent sample of the same size"
    else:
        k = int(min(n_ref, 2 * FLOOR_MAX_ROWS)) // 2
        perm = rng.permutation(n_ref)
        a = load_inputs(ref_path, geometry, perm[:k], low)
        b = load_inputs(ref_path, geometry, perm[k:2 * k], low)
        kind = "two halves of the reference"
    res = compare(a, b, seed=seed, **compare_kw)
    return {"kind": kind, "source": str(other_path) if other_path else str(ref_path), **res}


# ---- reading a number against its floor --------------------------------------------------------------------------
def fmt_x1e3(value: float | None, error: float | None = None) -> str:
    """'8.64 x1e-3' style: the value times 1e3 to 3 significant digits (as the published tables), optional error."""
    if value is None or not math.isfinite(value):
        return "-"
    text = _x1e3(value, 3)
    if error is not None and math.isfinite(error):
        text += f" ± {_x1e3(error, 2)}"
    return f"{text} x1e-3"


def _x1e3(value: float, digits: int) -> str:
    v = value * 1e3
    return f"{v:.{digits}g}" if abs(v) < 10 ** digits else f"{v:.0f}"


def auc_verdict(auc: float | None, floor: float | None) -> str:
    """One line: how well a classifier tells generated from reference showers, read against the floor."""
    if auc is None:
        return "not computed"
    excess = auc - (floor if floor is not None else 0.5)
    if excess <= 0.03:
        return "at the floor: the classifier cannot tell them apart"
    if auc <= 0.6:
        return "good: hard to tell apart (published DS2 leaders 0.52-0.59)"
    if auc <= 0.75:
        return "fair: a classifier sees differences; train longer or use a bigger recipe"
    if auc <= 0.9:
        return "weak: clearly distinguishable"
    return "poor: almost every shower is recognised as generated"


def distance_verdict(value: float | None, error: float | None, floor: float | None, floor_error: float | None) -> str:
    """One line for FPD/KPD: the ratio to the floor, or the distance in errors where the floor is ~0 (KPD)."""
    if value is None:
        return "not computed"
    if floor is None:
        return "no floor to compare with"
    noise = math.hypot(error or 0.0, floor_error or 0.0)
    if value <= floor + 2 * noise:
        return "at the floor (within 2 errors)"
    if floor > 2 * noise and floor > 0:
        ratio = value / floor
        word = "close to" if ratio <= 1.5 else "within 3x of" if ratio <= 3 else "far from"
        return f"{ratio:.1f}x the floor: {word} the reference"
    sig = (value - floor) / noise if noise > 0 else math.inf
    return f"{sig:.0f} errors above the floor" + (": far from the reference" if sig > 10 else "")


def headline_rows(entry: dict, floor: dict | None, published: list[dict] | None = None) -> list[dict]:
    """The headline table of one generated file: metric, value, floor, published range, verdict (all text)."""
    floor = floor or {}
    rows = []
    pub = published or []

    def pub_text(key: str, x1e3: bool) -> str:
        vals = [p[key] for p in pub if p.get(key) is not None]
        if not vals:
            return "-"
        g4 = next((p[key] for p in pub if p["name"].startswith("Geant4")), None)
        best = [p[key] for p in pub if not p["name"].startswith("Geant4")]
        unit = " x1e-3" if x1e3 else ""
        fmt = (lambda v: f"{v:.3g}") if x1e3 else (lambda v: f"{v:.2f}")
        return f"Geant4 {fmt(g4)}{unit}; generators {fmt(min(best))}-{fmt(max(best))}{unit}" if best else "-"

    for mode, res in (entry.get("classifiers") or {}).items():
        f = (floor.get("classifiers") or {}).get(mode, {})
        auc, std = res.get("auc"), res.get("auc_std")
        value = "-" if auc is None else f"{auc:.3f}" + (f" ± {std:.3f}" if std else "")
        rows.append({"metric": f"classifier AUC ({mode}-level)", "value": value,
                     "floor": "-" if f.get("auc") is None else f"{f['auc']:.3f}",
                     "published": pub_text(f"auc_{mode}", False) if mode in ("high", "low") else "-",
                     "verdict": auc_verdict(auc, f.get("auc"))})
    sizes = entry.get("n") if isinstance(entry.get("n"), list) else [entry.get("n") or 0]
    n_feat, n = floor.get("n_features"), min([*sizes, *floor.get("n", [])])
    for name in ("fpd", "kpd"):
        m, f = entry.get(name), floor.get(name) or {}
        if not m:
            continue
        verdict = distance_verdict(m.get("value"), m.get("error"), f.get("value"), f.get("error"))
        if m.get("refused") or f.get("refused"):
            verdict = f"refused: {m.get('refused') or 'floor: ' + f['refused']}"
        if name == "fpd" and n_feat and n < 2 * n_feat:
            verdict = f"not reliable: fewer than 2 x {n_feat} showers (the features' covariance is barely estimable)"
        rows.append({"metric": name.upper(), "value": fmt_x1e3(m.get("value"), m.get("error")),
                     "floor": fmt_x1e3(f.get("value"), f.get("error")) if f else "-",
                     "published": pub_text(f"{name}_x1e3", True), "verdict": verdict})
    return rows


def context_html(metrics: dict) -> str:
    """The report's headline section: per generated file each number beside its floor and the published values,
    with a verdict; then the published table. Plain HTML (no scripts), escaped."""
    import html

    e = html.escape
    floor, pub = metrics.get("floor"), metrics.get("published") or []
    parts = ["<h2>Headline: each number beside what a good number is</h2>"]
    if floor:
        n = "/".join(str(k) for k in floor.get("n", []))
        parts.append(f"<p><b>Floor</b>: the same metric of real showers against real showers at this size "
                     f"({e(floor.get('kind', ''))}, {e(n)} showers). A generator cannot be expected to beat it; "
                     "at a few thousand showers FPD is dominated by a finite-sample term, so read FPD as a ratio "
                     "to its floor.</p>")
    else:
        parts.append("<p>No floor was computed (pass a second reference sample to compute one).</p>")
    for g in metrics.get("generated", []):
        rows = headline_rows(g, floor, pub)
        head = "".join(f"<th>{k}</th>" for k in ("metric", "value", "floor", "published (100k showers)", "verdict"))
        body = "".join("<tr>" + "".join(f"<td>{e(str(r[k]))}</td>" for k in ("metric", "value", "floor",
                                                                                "published", "verdict")) + "</tr>"
                       for r in rows)
        parts.append(f"<h3>{e(str(g.get('label')))} ({g.get('n')} showers)</h3>"
                     f"<table class='headline'><tr>{head}</tr>{body}</table>")
    if pub:
        parts.append(f"<details><summary>Published values ({e(PUBLISHED_SOURCE)})</summary><table><tr><th>model</th>"
                     "<th>AUC high</th><th>AUC low</th><th>FPD x1e-3</th><th>KPD x1e-3</th></tr>"
                     + "".join(f"<tr><td>{e(p['name'])}</td><td>{p['auc_high']:.3f}</td><td>{p['auc_low']:.3f}</td>"
                               f"<td>{p['fpd_x1e3']:.3g} ± {p['fpd_err_x1e3']:.2g}</td>"
                               f"<td>{p['kpd_x1e3']:.3g} ± {p['kpd_err_x1e3']:.2g}</td></tr>" for p in pub)
                     + "</table><p>Measured on 100k showers per file: AUC and KPD compare roughly with the numbers "
                     "above, FPD does not (its finite-sample term is ~100x smaller there).</p></details>")
    return "\n".join(parts)
