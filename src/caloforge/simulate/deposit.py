"""Dropping GFlash energy spots onto a regular readout mesh in O(voxels) per shower.

Given a shower's profile parameters the spots are independent and identically distributed, so the only thing that
matters is the probability that one spot lands in each voxel: the longitudinal Gamma CDF integrated over each layer
times the radial CDF integrated over each ring, uniform in alpha. With a Poisson number of spots the voxel counts are
independent Poisson variables (the same law as a multinomial draw of a Poisson total), so a shower costs one Poisson
draw per voxel plus one Gamma draw per hit voxel, never one draw per spot.
"""

from __future__ import annotations

import numpy as np
from scipy import special

from caloforge.simulate import gflash


def layer_fractions(t_edges: np.ndarray, t_max: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Share of the Gamma(alpha, beta) depth profile inside each layer: t_edges (L+1,) or (B, L+1) in X0 -> (B, L)."""
    beta = (alpha - 1.0) / t_max  # (B,)
    t = t_edges if t_edges.ndim == 2 else t_edges[None, :]  # per-shower edges (B, L+1) or shared (1, L+1)
    cdf = special.gammainc(alpha[:, None], beta[:, None] * t)  # (B, L+1)
    return np.diff(cdf, axis=1)


def cell_probabilities(
    t_edges: np.ndarray,
    r_edges_rm: np.ndarray,
    energy_gev: np.ndarray,
    t_max: np.ndarray,
    alpha: np.ndarray,
    mean_alpha: np.ndarray,
    z: float,
    inv_fs: np.ndarray,
    ehat: float,
) -> np.ndarray:
    """Probability that a spot lands in layer l, ring r (summed over alpha): (B, L, R); the rest leaks out.

    t_edges are layer edges in X0 ((L+1,), or (B, L+1) when each shower starts at its own depth, e.g. behind
    upstream material), r_edges_rm ring edges in Moliere radii. The radial shape of a layer is taken at
    its centre, with Geant4's tau = t/T scaled by the shower's centre of gravity relative to the mean shower.
    """
    longitudinal = layer_fractions(t_edges, t_max, alpha)  # (B, L)
    t_centres = 0.5 * (t_edges[..., 1:] + t_edges[..., :-1])  # (L,) or (B, L)
    cog_scale = (alpha - 1.0) / alpha * mean_alpha / (mean_alpha - 1.0)  # (B,)
    tau = np.atleast_2d(t_centres) / t_max[:, None] * cog_scale[:, None]  # (B, L)
    rc, rt, p = gflash.radial_parameters(tau, energy_gev, z, inv_fs, ehat)  # each (B, L)
    cdf = gflash.radial_cdf(r_edges_rm[None, None, :], rc[..., None], rt[..., None], p[..., None])  # (B, L, R+1)
    rings = np.diff(cdf, axis=2)  # (B, L, R)
    return longitudinal[..., None] * rings  # (B, L, R)


def draw_voxels(
    rng: np.random.Generator,
    cells: np.ndarray,
    n_alpha: int,
    mean_spots: float,
    spot_shape: float,
    visible_mev: float,
) -> np.ndarray:
    """One shower's voxel energies (flat CaloChallenge order) from its (L, R) cell probabilities.

    Spot counts are Poisson(mean_spots * p_voxel); each spot carries a Gamma(spot_shape) share of the energy (the
    sampling fluctuation); the hit voxels are then scaled so they hold `visible_mev` in total.
    """
    n_layers, n_r = cells.shape
    lam = np.broadcast_to((mean_spots / n_alpha) * cells[:, None, :], (n_layers, n_alpha, n_r))  # (L, A, R)
    counts = rng.poisson(lam).reshape(-1)  # (V,)
    out = np.zeros(counts.shape, dtype=np.float64)
    hit = np.flatnonzero(counts)
    if hit.size:
        weights = rng.standard_gamma(spot_shape * counts[hit])
        total = weights.sum()
        if total > 0:
            out[hit] = weights * (visible_mev / total)
    return out
