"""Layer energies in the u-parametrisation (CaloDREAM / CaloScore), for two-stage models.

A layer model learns the L layer energies as ``u`` in [0, 1]^L: ``u0 = sum_j E_j / (max_dep E_inc)`` (total deposit
as a fraction of its largest plausible value) and, for i >= 1, ``u_i = E_{i-1} / sum_{j >= i-1} E_j`` (the share of
what remains that layer i-1 takes). Any u in [0, 1]^L maps back to non-negative energies that sum to
``u0 max_dep E_inc``, which is why generated u never violate energy bookkeeping. Where nothing remains (empty tail)
u_i is defined as 0. A voxel model then sees each layer normalised to unit sum, and the layer energies are imposed
again on the inverse. Pure numpy, float64.
"""

from __future__ import annotations

import numpy as np

from caloforge.data.geometry import Geometry
from caloforge.errors import DataError


def _safe_divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.zeros(np.broadcast(num, den).shape)
    np.divide(num, den, out=out, where=den > 0)
    return out


def layer_energies_to_u(layer_energies: np.ndarray, incident_energies: np.ndarray, max_dep: float = 2.0) -> np.ndarray:
    """(n, L) layer energies, (n,) incident energies (same unit) -> (n, L) u; empty layers give u = 0, not NaN."""
    E = np.asarray(layer_energies, dtype=np.float64)
    e_inc = np.asarray(incident_energies, dtype=np.float64).reshape(-1)
    if E.ndim != 2 or E.shape[0] != e_inc.shape[0]:
        raise DataError(f"layer energies: expected shape (n, L) with n = {e_inc.shape[0]}, found {E.shape}")
    tail = np.cumsum(E[:, ::-1], axis=1)[:, ::-1]  # (n, L): tail[:, k] = sum_{j >= k} E_j
    u0 = _safe_divide(tail[:, 0], max_dep * e_inc)  # (n,)
    shares = _safe_divide(E[:, :-1], tail[:, :-1])  # (n, L - 1): u_i = E_{i-1} / tail_{i-1}
    return np.concatenate([u0[:, None], np.clip(shares, 0.0, 1.0)], axis=1)


def u_to_layer_energies(u: np.ndarray, incident_energies: np.ndarray, max_dep: float = 2.0) -> np.ndarray:
    """Exact inverse of ``layer_energies_to_u``: (n, L) u -> (n, L) layer energies >= 0 (u is clipped to [0, 1])."""
    u = np.clip(np.asarray(u, dtype=np.float64), 0.0, 1.0)
    e_inc = np.asarray(incident_energies, dtype=np.float64).reshape(-1)
    if u.ndim != 2 or u.shape[0] != e_inc.shape[0]:
        raise DataError(f"layer u: expected shape (n, L) with n = {e_inc.shape[0]}, found {u.shape}")
    total = u[:, 0] * max_dep * e_inc  # (n,)
    shares = u[:, 1:]  # (n, L - 1)
    # remaining[:, i] = share of the total left before layer i takes its part = prod_{k < i} (1 - u_{k+1})
    remaining = np.cumprod(np.concatenate([np.ones((u.shape[0], 1)), 1.0 - shares], axis=1), axis=1)  # (n, L)
    fractions = np.concatenate([remaining[:, :-1] * shares, remaining[:, -1:]], axis=1)  # (n, L)
    return fractions * total[:, None]


def layer_energies(showers: np.ndarray, geometry: Geometry) -> np.ndarray:
    """(n, V) voxel energies -> (n, L) energy per layer (0 for layers without voxels)."""
    x = _checked_showers(showers, geometry)
    out = np.zeros((x.shape[0], geometry.n_layers))
    for layer in geometry.relevant_layers:
        out[:, layer] = x[:, geometry.layer_slice(layer)].sum(axis=1)
    return out


def normalise_layers(showers: np.ndarray, geometry: Geometry) -> tuple[np.ndarray, np.ndarray]:
    """Each layer scaled to unit sum -> (normalised (n, V), layer energies (n, L)); empty layers stay 0."""
    x = _checked_showers(showers, geometry)
    energies = layer_energies(x, geometry)
    per_voxel = energies[:, geometry.voxel_layer]  # (n, V)
    return _safe_divide(x, per_voxel), energies


def denormalise_layers(normalised: np.ndarray, layer_energies_: np.ndarray, geometry: Geometry) -> np.ndarray:
    """Inverse of ``normalise_layers``: impose the given layer energies (n, L) on per-layer shapes (n, V).

    Each layer is rescaled by E_l / (its current sum), so generated shapes that do not sum exactly to 1 still get
    exactly E_l. A layer whose shape is all zero cannot carry energy and stays 0.
    """
    x = _checked_showers(normalised, geometry)
    E = np.asarray(layer_energies_, dtype=np.float64)
    if E.shape != (x.shape[0], geometry.n_layers):
        raise DataError(f"layer energies: expected shape {(x.shape[0], geometry.n_layers)}, found {E.shape}")
    sums = layer_energies(x, geometry)  # (n, L)
    factor = _safe_divide(E, sums)  # (n, L)
    return x * factor[:, geometry.voxel_layer]


def _checked_showers(showers, geometry: Geometry) -> np.ndarray:
    x = np.asarray(showers, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != geometry.n_voxels:
        raise DataError(f"showers: expected shape (n, {geometry.n_voxels}) for geometry {geometry.name}, "
                        f"found {x.shape}")
    return x
