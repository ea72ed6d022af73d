"""Feature histograms with the official CaloChallenge binnings, separation power and a two-sample chi2.

Binnings follow ``evaluate_plotting_helper.py`` (spec §4.3). ``official=True`` marks the histograms evaluate.py at
HEAD really computes; sparsity, EC_r and width_r are defined there but not called (the published tables still
carry their separation powers), so they are returned with ``official=False``.

Note on "chi2": evaluate.py's ``hist-chi`` mode writes ``histogram_chi2_<ds>.txt`` but the number in it is the
separation power (triangular discrimination), nothing else. Our ``chi2`` is an extra, clearly separate statistic:
the standard two-sample chi2 of unweighted counts (the ROOT ``Chi2Test`` "UU" formula) and its ndf.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from caloforge.data.geometry import Geometry
from caloforge.errors import CaloforgeError

_EPS = 1e-16  # the official guard in the separation-power denominator
DS1_TARGET_ENERGIES = 2 ** np.linspace(8, 23, 16)  # edges around the 15 discrete DS1 energies (MeV)


@dataclass(frozen=True)
class HistResult:
    """One reference-vs-generated histogram comparison."""

    name: str  # feature family: 'E_ratio', 'E_layer', 'EC_eta', ..., 'E_ratio_at_E', 'voxel'
    layer: int | None  # layer id for per-layer features
    edges: np.ndarray
    ref_counts: np.ndarray
    gen_counts: np.ndarray
    ref_density: np.ndarray
    gen_density: np.ndarray
    separation_power: float
    chi2: float
    ndf: int
    official: bool  # computed by evaluate.py at HEAD
    energy: float | None = None  # DS1 per-energy histograms: the incident energy (MeV)
    note: str | None = None  # why separation_power is NaN (an empty histogram), shown in the report

    @property
    def label(self) -> str:
        if self.energy is not None:
            return f"{self.name} E={self.energy:g}"
        return self.name if self.layer is None else f"{self.name} layer {self.layer}"


# ---- statistics ---------------------------------------------------------------------------------------------------
def density(counts: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """np.histogram(density=True) from counts, with numpy's own operation order (so results are bit-identical)."""
    counts = np.asarray(counts, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return counts / np.diff(edges) / counts.sum()


def separation_power(h_ref: np.ndarray, h_gen: np.ndarray, edges: np.ndarray) -> float:
    """Official triangular discrimination of two density histograms: h_i = density_i * binwidth_i and
    S = 1/2 sum (h1 - h2)^2 / (h1 + h2 + 1e-16). 0 for identical, 1 for disjoint histograms."""
    widths = np.diff(edges)
    h1, h2 = np.asarray(h_ref) * widths, np.asarray(h_gen) * widths
    return float(0.5 * ((h1 - h2) ** 2 / (h1 + h2 + _EPS)).sum())


def chi2_two_sample(ref_counts: np.ndarray, gen_counts: np.ndarray) -> tuple[float, int]:
    """Two-sample chi2 of unweighted counts with different totals: sum over non-empty bins of
    (N2 n1 - N1 n2)^2 / (N1 N2 (n1 + n2)); ndf = non-empty bins - 1."""
    n1, n2 = np.asarray(ref_counts, np.float64), np.asarray(gen_counts, np.float64)
    t1, t2 = n1.sum(), n2.sum()
    used = (n1 + n2) > 0
    if t1 == 0 or t2 == 0 or not used.any():
        return float("nan"), 0
    chi2 = ((t2 * n1[used] - t1 * n2[used]) ** 2 / (t1 * t2 * (n1[used] + n2[used]))).sum()
    return float(chi2), int(used.sum() - 1)


def compare(name, layer, ref_values, gen_values, edges, official=True, energy=None) -> HistResult:
    """Histogram both samples on ``edges`` (values outside are dropped, as np.histogram does) and compare."""
    edges = np.asarray(edges, dtype=np.float64)
    ref_counts = np.histogram(np.asarray(ref_values, np.float64), bins=edges)[0]
    gen_counts = np.histogram(np.asarray(gen_values, np.float64), bins=edges)[0]
    return compare_counts(name, layer, ref_counts, gen_counts, edges, official, energy)


# ---- official binnings --------------------------------------------------------------------------------------------
def official_log_edges(min_energy: float | None, ref_values, n_edges: int) -> np.ndarray | None:
    """evaluate_plotting_helper's ``np.logspace(np.log10(min_energy), np.log10(ref.max()), n)``, operation for
    operation: the maximum keeps the reference's float type, so for float32 features its log10 is rounded to float32
    and the last edge may land a hair below (dropping the maximum shower) or above the maximum, exactly as in the
    official histogram. None when no reference value lies above the first edge (the official code fails there)."""
    ref_values = np.asarray(ref_values)
    if min_energy is None or ref_values.size == 0:
        return None
    top = ref_values.max()  # numpy scalar of the features' own type
    if not top > min_energy:
        return None
    edges = np.logspace(np.log10(float(min_energy)), np.log10(top), n_edges)
    return edges if np.all(np.diff(edges) > 0) else None


def _is_ds1(dataset: str | None) -> bool:
    return dataset in ("1-photons", "1-pions")


def feature_edges(name: str, layer: int | None, dataset: str | None, ref_values=None, min_energy: float | None = None):
    """Bin edges of one feature histogram, as evaluate_plotting_helper.py defines them.

    ``dataset`` is '1-photons', '1-pions', '2', '3' or None (any other geometry: evenly spaced bins over the
    reference range, clearly not an official binning). E_layer needs ``ref_values`` and ``min_energy``.
    """
    ds1 = _is_ds1(dataset)
    big = ds1 and layer in (12, 13)
    if name == "E_ratio":
        return np.linspace(0.5, 1.5, 101)
    if name == "E_layer":
        return official_log_edges(min_energy, ref_values, 40)
    if dataset is None and name in ("EC_eta", "EC_phi", "width_eta", "width_phi", "EC_r", "width_r"):
        lo, hi = (float(np.min(ref_values)), float(np.max(ref_values))) if np.size(ref_values) else (0.0, 1.0)
        return np.linspace(lo, hi if hi > lo else lo + 1.0, 101)
    if name in ("EC_eta", "EC_phi"):
        lim = 500.0 if big else 100.0 if ds1 else 30.0
        return np.linspace(-lim, lim, 101)
    if name in ("width_eta", "width_phi"):
        return np.linspace(0.0, 400.0 if big else 100.0 if ds1 else 30.0, 101)
    if name == "sparsity":
        return np.linspace(0.0, 1.0, 21)
    if name in ("EC_r", "width_r"):
        if ds1:
            return np.linspace(0.0, 1500.0 if layer in (12, 13, 14) else 500.0, 101)
        return np.linspace(0.0, 42.0 if name == "EC_r" else 20.0, 101)
    raise CaloforgeError(f"histograms: unknown feature {name!r}")


_LAYER_FEATURES = (
    ("E_layer", "relevant", True),
    ("EC_eta", "alpha", True),
    ("EC_phi", "alpha", True),
    ("width_eta", "alpha", True),
    ("width_phi", "alpha", True),
    ("sparsity", "relevant", False),
    ("EC_r", "relevant", False),
    ("width_r", "relevant", False),
)


def _ds1_energy_histograms(ref: dict, gen: dict, dataset: str) -> list[HistResult]:
    """E_tot/E_inc at each discrete DS1 energy; photons above index 3 (>= 4096 MeV) use (0.9, 1.1)."""
    out = []
    for i in range(len(DS1_TARGET_ENERGIES) - 1):
        lo, hi = DS1_TARGET_ENERGIES[i], DS1_TARGET_ENERGIES[i + 1]
        narrow = i > 3 and "photons" in dataset
        edges = np.linspace(0.9, 1.1, 21) if narrow else np.linspace(0.4, 1.4, 21)
        sel_r = (ref["E_inc"] >= lo) & (ref["E_inc"] < hi)
        sel_g = (gen["E_inc"] >= lo) & (gen["E_inc"] < hi)
        out.append(
            compare("E_ratio_at_E", None, ref["E_ratio"][sel_r], gen["E_ratio"][sel_g], edges, True, float(lo))
        )
    return out


def feature_histograms(
    ref_feats: dict, gen_feats: dict, geometry: Geometry, dataset: str | None = None, threshold: float | None = None
) -> list[HistResult]:
    """Every feature histogram of the official evaluation (plus the flagged extras) for two feature dicts from
    :func:`caloforge.evaluation.features.compute_hlf`."""
    min_energy = geometry.threshold_mev if threshold is None else float(threshold)
    layers = {"relevant": geometry.relevant_layers, "alpha": geometry.alpha_binned_layers}
    out = [compare("E_ratio", None, ref_feats["E_ratio"], gen_feats["E_ratio"], feature_edges("E_ratio", None, dataset))]
    if _is_ds1(dataset):
        out += _ds1_energy_histograms(ref_feats, gen_feats, dataset)
    for name, which, official in _LAYER_FEATURES:
        for j, layer in enumerate(layers[which]):
            ref_v, gen_v = ref_feats[name][:, j], gen_feats[name][:, j]
            edges = feature_edges(name, layer, dataset, ref_v, min_energy)
            if edges is None:
                out.append(undefined(name, layer, "no reference value above the threshold in this layer (the "
                                     "official code fails here); separation power undefined", official))
                continue
            out.append(compare(name, layer, ref_v, gen_v, edges, official))
    return out


def count_on_edges(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """``np.histogram(values, edges)[0]`` (bins [e_i, e_i+1), the last one closed; values outside dropped) without
    sorting: one searchsorted per value, so a stream of voxel batches can be counted exactly, batch by batch."""
    v = np.asarray(values).ravel()
    idx = np.searchsorted(edges, v, side="right") - 1  # (n,) float32 values compared exactly in float64
    n_bins = len(edges) - 1
    idx[v == edges[-1]] = n_bins - 1
    idx = idx[(idx >= 0) & (idx < n_bins)]
    return np.bincount(idx, minlength=n_bins).astype(np.int64)


def voxel_edges(threshold: float, ref_max) -> np.ndarray | None:
    """Official voxel-spectrum edges ``logspace(log10 threshold, log10 max reference voxel, 50)``; ``ref_max`` must
    keep the voxels' float type (float32 for official files), as ``ref_shower_arr.max()`` does."""
    return official_log_edges(threshold, np.asarray([ref_max]), 50)


def compare_counts(name, layer, ref_counts, gen_counts, edges, official=True, energy=None) -> HistResult:
    """A HistResult from counts already made on ``edges``."""
    edges = np.asarray(edges, dtype=np.float64)
    ref_counts, gen_counts = np.asarray(ref_counts), np.asarray(gen_counts)
    ref_d, gen_d = density(ref_counts, edges), density(gen_counts, edges)
    chi2, ndf = chi2_two_sample(ref_counts, gen_counts)
    note, sep = None, separation_power(ref_d, gen_d, edges)
    empty = [who for who, c in (("reference", ref_counts), ("generated", gen_counts)) if c.sum() == 0]
    if empty:  # a density of 0/0: the official code prints nan; we say why and keep NaN (null in metrics.json)
        note = (f"no {' and no '.join(empty)} value inside the histogram range [{edges[0]:.4g}, {edges[-1]:.4g}]; "
                "separation power undefined")
        sep = float("nan")
    return HistResult(name, layer, edges, ref_counts, gen_counts, ref_d, gen_d, sep, chi2, ndf, official, energy,
                      note)


def undefined(name, layer, reason: str, official=True) -> HistResult:
    """A histogram that cannot be made (no edges): NaN separation power and the reason."""
    empty = np.zeros(0)
    return HistResult(name, layer, empty, empty, empty, empty, empty, float("nan"), float("nan"), 0, official,
                      None, reason)


def voxel_histogram(ref_showers, gen_showers, threshold: float) -> HistResult:
    """Distribution of all voxel energies: logspace(log10 threshold, log10 max reference voxel, 50); zeros fall
    below the first edge and are dropped, as in the official plot_cell_dist. Pass thresholded showers."""
    ref = np.asarray(ref_showers).ravel()
    edges = voxel_edges(threshold, ref.max()) if ref.size else None
    if edges is None:
        raise CaloforgeError(f"voxel histogram: no reference voxel above the threshold {threshold} MeV")
    return compare("voxel", None, ref, np.asarray(gen_showers).ravel(), edges, True)


def summarise(results: list[HistResult]) -> dict[str, dict[str, float]]:
    """Per feature family: mean and max separation power (NaNs from empty selections ignored) and the count."""
    summary: dict[str, dict[str, float]] = {}
    for name in dict.fromkeys(r.name for r in results):
        seps = np.array([r.separation_power for r in results if r.name == name], dtype=np.float64)
        finite = seps[np.isfinite(seps)]
        summary[name] = {
            "mean": float(finite.mean()) if finite.size else float("nan"),
            "max": float(finite.max()) if finite.size else float("nan"),
            "n": int(seps.size),
            "official": all(r.official for r in results if r.name == name),
        }
    return summary
