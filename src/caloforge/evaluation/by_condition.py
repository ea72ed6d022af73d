"""Metrics per detector and per polar-angle bin: a multi-detector, angle-conditioned model can be right on average
and wrong for one detector or at grazing angles, so its evaluation is broken down by the conditions.

Reference and generated showers are grouped by their own conditions (``detector_id`` through ``detector_names``,
``incident_theta`` into bins); generated showers are normally drawn at the reference's conditions (``caloforge sample
--conditions-from``), so each group compares like with like. Per group: sizes, FPD (x1e3, scaled to the group size),
mean response E_dep / E_inc and mean shower depth (energy-weighted mean layer index) of both. Pure numpy.
"""

from __future__ import annotations

import itertools

import numpy as np

from caloforge.data.geometry import Geometry
from caloforge.evaluation.features import apply_threshold, compute_hlf, hlf_vector
from caloforge.evaluation.fpd_kpd import fpd, scaled_options

#: LEMURS polar-angle range split into four bins (pi/2 = normal incidence).
THETA_EDGES = (0.87, 1.22, 1.5708, 1.92, 2.27)


def mean_depth(showers: np.ndarray, geometry: Geometry) -> np.ndarray:
    """Energy-weighted mean layer index of each shower (n,): the shower depth in mesh units (NaN when empty)."""
    s = np.asarray(showers, dtype=np.float64)
    per_layer = np.stack([s[:, geometry.layer_slice(layer)].sum(1) for layer in range(geometry.n_layers)], 1)
    total = per_layer.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return per_layer @ np.arange(geometry.n_layers) / total


def condition_groups(n: int, extras: dict, detector_names=None, theta_edges=THETA_EDGES) -> dict[str, np.ndarray]:
    """Group name -> row mask: 'all', 'detector=<name>' and 'theta=[lo,hi)' (only for the columns present)."""
    groups = {"all": np.ones(n, bool)}
    ids = extras.get("detector_id")
    if ids is not None:
        ids = np.asarray(ids).reshape(-1)
        for i in np.unique(ids):
            name = detector_names[i] if detector_names is not None and 0 <= i < len(detector_names) else str(i)
            groups[f"detector={name}"] = ids == i
    theta = extras.get("incident_theta")
    if theta is not None and len(theta_edges) > 1:
        theta = np.asarray(theta).reshape(-1)
        for lo, hi in itertools.pairwise(theta_edges):
            groups[f"theta=[{lo:.2f},{hi:.2f})"] = (theta >= lo) & (theta < hi)
    return groups


def _group_metrics(ref, gen, geometry: Geometry, threshold: float, min_showers: int, seed: int) -> dict:
    (rs, re), (gs, ge) = ref, gen
    row = {"n_ref": len(re), "n_gen": len(ge)}
    for tag, s, e in (("ref", rs, re), ("gen", gs, ge)):
        t = apply_threshold(s, threshold)
        row[f"response_{tag}"] = float(np.mean(t.sum(1) / e)) if len(e) else float("nan")
        row[f"depth_{tag}"] = float(np.nanmean(mean_depth(t, geometry))) if len(e) else float("nan")
    if min(len(re), len(ge)) >= min_showers:
        fr = hlf_vector(compute_hlf(rs, re, geometry, threshold), geometry)
        fg = hlf_vector(compute_hlf(gs, ge, geometry, threshold), geometry)
        opts, _ = scaled_options(len(fr), len(fg))
        row["fpd_x1e3"] = 1e3 * fpd(fr, fg, seed=seed, method="eigh", **opts)[0]
    else:
        row["fpd_x1e3"] = float("nan")  # too few showers for a meaningful distance
    return row


def breakdown(ref: tuple, gen: tuple, geometry: Geometry, detector_names=None, theta_edges=THETA_EDGES,
              threshold: float | None = None, min_showers: int = 50, seed: int = 42) -> list[dict]:
    """Rows of metrics per group. ``ref`` and ``gen`` are (showers (n, V), energies (n,), extras dict)."""
    thr = geometry.threshold_mev if threshold is None else float(threshold)
    (rs, re, rx), (gs, ge, gx) = ref, gen
    rg = condition_groups(len(re), rx, detector_names, theta_edges)
    gg = condition_groups(len(ge), gx, detector_names, theta_edges)
    rows = []
    for name, mask in rg.items():
        gmask = gg.get(name, np.zeros(len(ge), bool))
        rows.append({"group": name, **_group_metrics((rs[mask], re[mask]), (gs[gmask], ge[gmask]), geometry, thr,
                                                     min_showers, seed)})
    return rows


def format_rows(rows: list[dict]) -> str:
    """A Markdown table of ``breakdown`` rows."""
    head = "| group | n ref | n gen | FPD x1e3 | response ref / gen | depth ref / gen (layers) |\n|---|---|---|---|---|---|"
    lines = [head]
    for r in rows:
        lines.append(f"| {r['group']} | {r['n_ref']} | {r['n_gen']} | {r['fpd_x1e3']:.1f} | "
                     f"{r['response_ref']:.3f} / {r['response_gen']:.3f} | {r['depth_ref']:.2f} / {r['depth_gen']:.2f} |")
    return "\n".join(lines)
