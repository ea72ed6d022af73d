"""The Par04 scoring mesh: a cylinder whose axis is the particle direction and whose origin is its entry point.

z runs along the particle from the entry point into the calorimeter, r is the distance from that axis and alpha the
angle around it, measured from the projection of the cylinder axis (global z) and binned from -pi as in Par04.
Pure numpy, so that it can be tested without Geant4.
"""

from __future__ import annotations

import math

import numpy as np

from caloforge.simulate.detectors import Mesh


def shower_frame(theta: float, phi: float, inner_radius_mm: float):
    """Entry point and orthonormal mesh axes (u, v, w = particle direction) for a particle from the origin."""
    w = np.array([math.sin(theta) * math.cos(phi), math.sin(theta) * math.sin(phi), math.cos(theta)])
    entry = w * inner_radius_mm / math.sin(theta)
    axis = np.array([0.0, 0.0, 1.0])
    u = axis - axis.dot(w) * w
    u /= np.linalg.norm(u)
    return entry, u, np.cross(w, u), w


def bin_deposits(points: np.ndarray, edep: np.ndarray, frame, mesh: Mesh) -> np.ndarray:
    """Sum deposits (MeV) at points (n, 3) into the flat CaloChallenge voxel order (layer, alpha, r)."""
    entry, u, v, w = frame
    q = points - entry
    z = q @ w
    qu, qv = q @ u, q @ v
    r = np.hypot(qu, qv)
    iz = np.floor(z / mesh.dz_mm).astype(np.int64)
    ir = np.floor(r / mesh.dr_mm).astype(np.int64)
    ia = np.floor((np.arctan2(qv, qu) + math.pi) / (2 * math.pi / mesh.n_alpha)).astype(np.int64) % mesh.n_alpha
    inside = (iz >= 0) & (iz < mesh.n_z) & (ir < mesh.n_r)
    flat = (iz[inside] * mesh.n_alpha + ia[inside]) * mesh.n_r + ir[inside]
    return np.bincount(flat, weights=edep[inside], minlength=mesh.n_z * mesh.n_alpha * mesh.n_r)
