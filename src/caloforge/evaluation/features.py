"""High-level shower features, exactly the official CaloChallenge ``HighLevelFeatures`` definitions.

Every feature is computed from thresholded voxels (voxels below ``threshold`` set to 0, as ``evaluate.py`` does for
both files before anything else). Energies follow the official arithmetic bit for bit: E_tot and E_layer are numpy
sums of the thresholded voxels *in their own float type* (float32 for the official files, as ``HighLevelFeatures``
sums them), E_ratio = E_tot / E_inc in that type, and the centre/width denominators are those same sums. Otherwise a
~2e-7 relative difference moves showers across the E_layer histogram edges (up to 6 % in a layer's separation power).
The coordinate moments are accumulated in float64 with BLAS products (one batched product for a regular mesh, one per
layer otherwise), so the DS3 mesh streams at memory speed. Coordinates (r midpoints, ``eta = r cos(alpha)``,
``phi = r sin(alpha)``) come from :class:`caloforge.data.geometry.Geometry`. Pure numpy.

Feature dict (n showers): ``E_inc``, ``E_tot``, ``E_ratio`` (n,); ``E_layer``, ``EC_r``, ``width_r``, ``sparsity``
(n, len(relevant_layers)); ``EC_eta``, ``EC_phi``, ``width_eta``, ``width_phi`` (n, len(alpha_binned_layers)).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from caloforge.data.geometry import Geometry
from caloforge.errors import CaloforgeError, DataError
from caloforge.transforms.postprocess import apply_threshold  # the one readout cut (float64 copies here)

#: Keys of the per-layer features and which layer list indexes their columns.
PER_LAYER = ("E_layer", "EC_r", "width_r", "sparsity")
PER_ALPHA_LAYER = ("EC_eta", "EC_phi", "width_eta", "width_phi")
SCALARS = ("E_inc", "E_tot", "E_ratio")
FEATURE_KEYS = SCALARS + PER_LAYER + PER_ALPHA_LAYER

_EPS = 1e-16  # the official denominator guard in every energy-weighted mean
_CHUNK_ELEMENTS = 1 << 23  # ~64 MB of float64 per chunk of showers


def _native_float(a) -> np.ndarray:
    """The array in its own float type (float32 stays float32, as in evaluate.py); anything else as float64."""
    a = np.asarray(a)
    return a if a.dtype in (np.float32, np.float64) else a.astype(np.float64)


def _as_inputs(showers, energies, geometry: Geometry) -> tuple[np.ndarray, np.ndarray]:
    showers = _native_float(showers)
    energies = _native_float(energies).reshape(-1)
    if showers.ndim != 2 or showers.shape[1] != geometry.n_voxels:
        raise DataError(
            f"showers: expected shape (n, {geometry.n_voxels}) for geometry {geometry.name}, found {showers.shape}"
        )
    if len(energies) != len(showers):
        raise DataError(f"energies: expected {len(showers)} incident energies (one per shower), found {len(energies)}")
    return showers, energies




def _layer_moment_matrices(geometry: Geometry) -> list[tuple[int, slice, np.ndarray]]:
    """Per relevant layer: (layer id, flat slice, (v_l, 7) columns [1, r, r^2, eta, eta^2, phi, phi^2])."""
    out = []
    for layer in geometry.relevant_layers:
        sl = geometry.layer_slice(layer)
        r, x, y = geometry.voxel_r[sl], geometry.voxel_x[sl], geometry.voxel_y[sl]
        cols = np.stack([np.ones_like(r), r, r * r, x, x * x, y, y * y], axis=1)  # (v_l, 7)
        out.append((layer, sl, cols))
    return out


def _weighted_mean_and_width(denominator: np.ndarray, first: np.ndarray, second: np.ndarray):
    """Official EC = sum(c E)/(sum E + 1e-16); width = sqrt(max(sum(c^2 E)/(sum E + 1e-16) - EC^2, 0)).
    ``denominator`` is sum E + 1e-16 already (computed in the voxels' float type, as the official code does)."""
    mean = first / denominator
    width = np.sqrt(np.clip(second / denominator - mean**2, 0.0, None))
    return mean, width


def _hlf_chunk(xn: np.ndarray, energies: np.ndarray, geometry: Geometry, mats) -> dict[str, np.ndarray]:
    """``xn``: thresholded voxels in their own float type; ``energies`` in theirs."""
    n = len(xn)
    n_rel, alpha_layers = len(mats), set(geometry.alpha_binned_layers)
    x = xn.astype(np.float64, copy=False)
    if geometry.is_regular:  # one batched product over all layers: (n, Z, A*R) @ (A*R, 7)
        grid = x.reshape(n, n_rel, -1)
        moments = grid @ mats[0][2]  # (n, Z, 7)
        sparsity = 1.0 - (grid > 0).mean(axis=2)  # (n, Z)
        e_layer = xn.reshape(n, n_rel, -1).sum(axis=2)  # (n, Z) official: data[:, a:b].sum(axis=-1), own type
    else:  # irregular layers (DS1): one product per layer
        moments = np.empty((n, n_rel, 7))  # (n, L, 7)
        sparsity = np.empty((n, n_rel))
        e_layer = np.empty((n, n_rel), dtype=xn.dtype)
        for j, (_, sl, cols) in enumerate(mats):
            block = x[:, sl]  # (n, v_l)
            moments[:, j] = block @ cols
            sparsity[:, j] = 1.0 - (block > 0).mean(axis=1)
            e_layer[:, j] = xn[:, sl].sum(axis=1)
    den = (e_layer + e_layer.dtype.type(_EPS)).astype(np.float64)  # float32 sum + 1e-16 stays float32 officially
    ec_r, width_r = _weighted_mean_and_width(den, moments[..., 1], moments[..., 2])
    ec_eta, width_eta = _weighted_mean_and_width(den, moments[..., 3], moments[..., 4])
    ec_phi, width_phi = _weighted_mean_and_width(den, moments[..., 5], moments[..., 6])
    alpha_cols = [j for j, (layer, _, _) in enumerate(mats) if layer in alpha_layers]
    e_tot = xn.sum(axis=1)
    return {
        "E_inc": energies,
        "E_tot": e_tot,
        "E_ratio": e_tot / energies,
        "E_layer": e_layer,
        "EC_r": ec_r,
        "width_r": width_r,
        "sparsity": sparsity,
        "EC_eta": ec_eta[:, alpha_cols],
        "EC_phi": ec_phi[:, alpha_cols],
        "width_eta": width_eta[:, alpha_cols],
        "width_phi": width_phi[:, alpha_cols],
    }


def _concat(parts: list[dict[str, np.ndarray]], geometry: Geometry) -> dict[str, np.ndarray]:
    if not parts:
        n_rel, n_alpha = len(geometry.relevant_layers), len(geometry.alpha_binned_layers)
        empty = {k: np.zeros(0) for k in SCALARS}
        empty.update({k: np.zeros((0, n_rel)) for k in PER_LAYER})
        empty.update({k: np.zeros((0, n_alpha)) for k in PER_ALPHA_LAYER})
        return empty
    return {k: np.concatenate([p[k] for p in parts], axis=0) for k in FEATURE_KEYS}


def compute_hlf(showers, energies, geometry: Geometry, threshold: float | None = None) -> dict[str, np.ndarray]:
    """All official high-level features of ``showers`` (n, V) MeV with incident ``energies`` (n,) MeV.

    ``threshold`` defaults to ``geometry.threshold_mev`` (1 MeV for DS1, 0.5e-3/0.033 MeV for DS2/3); pass 0 to
    use the voxels as they are.
    """
    showers, energies = _as_inputs(showers, energies, geometry)
    thr = geometry.threshold_mev if threshold is None else float(threshold)
    mats = _layer_moment_matrices(geometry)
    step = max(1, _CHUNK_ELEMENTS // max(geometry.n_voxels, 1))
    parts = []
    for start in range(0, len(showers), step):
        x = apply_threshold(showers[start : start + step], thr)  # (c, V) in the data's float type
        parts.append(_hlf_chunk(x, energies[start : start + step], geometry, mats))
    return _concat(parts, geometry)


def compute_hlf_stream(batches: Iterable, geometry: Geometry, threshold: float | None = None) -> dict[str, np.ndarray]:
    """Features of a stream of batches with ``.energies`` (n,) and ``.showers`` (n, V), e.g.
    ``ShowerFile.iter_batches``; the features are small, so they are concatenated in memory."""
    return _concat([compute_hlf(b.showers, b.energies, geometry, threshold) for b in batches], geometry)


def hlf_vector(feats: dict[str, np.ndarray], geometry: Geometry | None = None) -> np.ndarray:
    """The official cls-high / FPD / KPD feature matrix (n, D), in evaluate.py's column order:

    [log10 E_inc, log10(E_layer + 1e-8), EC_eta/100, EC_phi/100, width_eta/100, width_phi/100,
    log10(E_tot + 1e-8), sparsity, EC_r/100, width_r/100] -> D = 30 (DS1 photons), 46 (DS1 pions), 362 (DS2/3).
    """
    missing = [k for k in FEATURE_KEYS if k not in feats]
    if missing:
        raise CaloforgeError(f"features: expected keys {list(FEATURE_KEYS)}, missing {missing}")
    if geometry is not None and feats["E_layer"].shape[1] != len(geometry.relevant_layers):
        raise DataError(
            f"features: E_layer has {feats['E_layer'].shape[1]} columns, geometry {geometry.name} has "
            f"{len(geometry.relevant_layers)} non-empty layers"
        )
    # log10 in the features' own float type (float32 for official files), as evaluate.py does
    e_inc = np.asarray(feats["E_inc"]).reshape(-1, 1)
    e_tot = np.asarray(feats["E_tot"]).reshape(-1, 1)
    cols = [
        np.log10(e_inc),
        np.log10(feats["E_layer"] + 1e-8),
        feats["EC_eta"] / 1e2,
        feats["EC_phi"] / 1e2,
        feats["width_eta"] / 1e2,
        feats["width_phi"] / 1e2,
        np.log10(e_tot + 1e-8),
        feats["sparsity"],
        feats["EC_r"] / 1e2,
        feats["width_r"] / 1e2,
    ]
    return np.concatenate(cols, axis=1)


def hlf_vector_names(geometry: Geometry) -> list[str]:
    """Column names of :func:`hlf_vector` for ``geometry``, e.g. 'log10 E_layer 3', 'width_eta 12'."""
    rel, alpha = geometry.relevant_layers, geometry.alpha_binned_layers
    names = ["log10 E_inc"] + [f"log10 E_layer {k}" for k in rel]
    for fam in ("EC_eta", "EC_phi", "width_eta", "width_phi"):
        names += [f"{fam} {k}" for k in alpha]
    names.append("log10 E_tot")
    for fam in ("sparsity", "EC_r", "width_r"):
        names += [f"{fam} {k}" for k in rel]
    return names


def voxel_inputs(
    showers,
    energies,
    mode: str = "low",
    geometry: Geometry | None = None,
    threshold: float | None = None,
    dtype=np.float64,
) -> np.ndarray:
    """Classifier inputs of evaluate.py, from thresholded voxels.

    'low': [log10 E_inc, voxels / E_inc]  (n, 1 + V)
    'low-normed': [log10 E_inc, voxel / (E_layer of its layer + 1e-16), log10(E_layer + 1e-8)]  (n, 1 + V + L)
    ``geometry`` defaults to the official one with this many voxels; ``threshold`` to its ``threshold_mev``.
    """
    showers = np.asarray(showers)
    if geometry is None:
        geometry = Geometry.for_voxels(showers.shape[-1]) if showers.ndim == 2 else None
        if geometry is None:
            raise DataError(
                f"showers: no official geometry has {showers.shape[-1] if showers.ndim else '?'} voxels; "
                "pass geometry= explicitly"
            )
    showers, energies = _as_inputs(showers, energies, geometry)
    thr = geometry.threshold_mev if threshold is None else float(threshold)
    x = apply_threshold(showers, thr, np.float64)  # (n, V) float64
    log_e = np.log10(energies).reshape(-1, 1)
    if mode == "low":
        return np.concatenate([log_e, x / energies.reshape(-1, 1)], axis=1).astype(dtype, copy=False)
    if mode == "low-normed":
        starts = geometry.layer_offsets[list(geometry.relevant_layers)]
        e_layer = np.add.reduceat(x, starts, axis=1)  # (n, L)
        sizes = geometry.layer_sizes[list(geometry.relevant_layers)]
        per_voxel = np.repeat(e_layer, sizes, axis=1)  # (n, V)
        out = np.concatenate([log_e, x / (per_voxel + 1e-16), np.log10(e_layer + 1e-8)], axis=1)
        return out.astype(dtype, copy=False)
    raise CaloforgeError(f"voxel_inputs: mode expected 'low' or 'low-normed', found {mode!r}")
