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
    ref_d, gen_d = density(ref_counts, edges), density(gen_counts, edges)
    chi2, ndf = chi2_two_sample(ref_counts, gen_counts)
    return HistResult(
        name, layer, edges, ref_counts, gen_counts, ref_d, gen_d,
        separation_power(ref_d, gen_d, edges), chi2, ndf, official, energy,
    )


# ---- official binnings --------------------------------------------------------------------------------------------
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
        top = float(np.max(ref_values)) if np.size(ref_values) else 0.0
        if min_energy is None or not top > min_energy:
            return None  # no reference energy above threshold: nothing to histogram
        edges = np.logspace(np.log10(min_energy), np.log10(top), 40)
        # 10**log10(top) can land an ulp below top and drop the reference maximum; the official edges (a float32
        # log10 of float32 sums) usually land above it, so pin the last edge to cover the reference range.
        edges[-1] = max(edges[-1], top)
        return edges
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
                continue
            out.append(compare(name, layer, ref_v, gen_v, edges, official))
    return out


def voxel_histogram(ref_showers, gen_showers, threshold: float) -> HistResult:
    """Distribution of all voxel energies: logspace(log10 threshold, log10 max reference voxel, 50); zeros fall
    below the first edge and are dropped, as in the official plot_cell_dist. Pass thresholded showers."""
    ref = np.asarray(ref_showers).ravel()
    top = float(ref.max()) if ref.size else 0.0
    if not top > threshold:
        raise CaloforgeError(f"voxel histogram: no reference voxel above the threshold {threshold} MeV")
    edges = np.logspace(np.log10(threshold), np.log10(top), 50)
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
