"""Batch driver: GFlash showers for a detector, and whole shower files in the CaloChallenge layout.

Shower i draws all its random numbers from its own stream, SeedSequence(seed, spawn_key=(0, i)), so the output is
identical whatever the chunk or block size, and any slice of a file can be regenerated on its own.

Angles (the simplest honest model, see docs/simulate.md): the readout mesh is aligned with the particle as in Par04,
so the incidence angle only changes the sampling period the shower sees along its axis, period / sin(theta); that
lowers F_s and strengthens the GFlash sampling corrections. theta is the polar angle to the cylinder axis (pi/2 is
normal incidence, the CaloChallenge DS2/DS3 setting). Detectors with dead material in front (``x0_front`` radiation
lengths at normal incidence: tracker, solenoid, cryostat) are crossed along a path x0_front / sin(theta): the shower
starts developing before the calorimeter face, so in the mesh it is shallower and loses the energy left upstream, more
so the more oblique the particle. phi is recorded but has no effect: the detector is symmetric in azimuth.
Homogeneous detectors without front material ignore both.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from caloforge.errors import CaloforgeError
from caloforge.simulate import deposit, gflash
from caloforge.simulate.detectors import PRESETS, DetectorSpec, get_detector, preset_names_by_id

GENERATOR_NAME = "caloforge-gflash"
GENERATOR_VERSION = "1.0"
#: Bound on showers x voxels held at once (about 32 MB of float64 per array).
_BLOCK_ELEMENTS = 4_000_000
#: Spot-energy Gamma shapes are kept in a range where the draw stays a fluctuation, not a spike or a constant.
_SPOT_SHAPE_RANGE = (0.1, 50.0)


def shower_rng(seed: int, index: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(int(seed), spawn_key=(0, int(index)))))


def _per_shower(name: str, value, n: int, default: float) -> np.ndarray:
    if value is None:
        return np.full(n, default)
    arr = np.asarray(value, dtype=np.float64).reshape(-1)
    if arr.size == 1:
        arr = np.full(n, arr[0])
    if arr.shape != (n,) or not np.all(np.isfinite(arr)):
        raise CaloforgeError(f"generate: {name}: expected a finite scalar or {n} finite values, found shape "
                             f"{np.shape(value)}")
    return arr


def generate(
    detector: str | DetectorSpec,
    energies_mev,
    seed: int,
    phi=None,
    theta=None,
    first_index: int = 0,
) -> np.ndarray:
    """GFlash showers (n, V) float32 in file units (visible MeV x readout scale), thresholded like the readout.

    `first_index` is the global index of the first shower (its random stream), for generating a file in chunks.
    """
    spec = get_detector(detector)
    e_mev = np.asarray(energies_mev, dtype=np.float64).reshape(-1)
    bad = np.flatnonzero(~(np.isfinite(e_mev) & (e_mev > 0)))
    if bad.size:
        raise CaloforgeError(f"generate: energies_mev: expected finite values > 0 MeV, found {e_mev[bad[0]]!r} "
                             f"at index {bad[0]}")
    n = e_mev.size
    theta = _per_shower("theta", theta, n, math.pi / 2)
    _per_shower("phi", phi, n, 0.0)  # validated and recorded by callers; no effect (azimuthal symmetry)
    if n and not np.all((theta > 0) & (theta < math.pi)):
        raise CaloforgeError("generate: theta: expected polar angles in (0, pi) rad (pi/2 = normal incidence)")
    geometry = spec.geometry
    out = np.zeros((n, geometry.n_voxels), dtype=np.float32)
    block = max(1, _BLOCK_ELEMENTS // geometry.n_voxels)
    for lo in range(0, n, block):
        hi = min(n, lo + block)
        out[lo:hi] = _generate_block(spec, e_mev[lo:hi], theta[lo:hi], seed, first_index + lo)
    return out


def _generate_block(spec: DetectorSpec, e_mev: np.ndarray, theta: np.ndarray, seed: int, first: int) -> np.ndarray:
    med, mesh = spec.medium, spec.mesh
    rngs = [shower_rng(seed, first + i) for i in range(e_mev.size)]
    normals = np.array([r.standard_normal(2) for r in rngs]).reshape(-1, 2)  # (B, 2)
    e_gev = e_mev / 1e3
    log_y = np.log(e_mev / med.ec_mev)
    inv_fs = 1.0 / (med.fs * np.sin(theta)) if spec.is_sampling else np.zeros_like(e_mev)  # (B,)
    moments = gflash.longitudinal_moments(log_y, med.z, inv_fs, med.ehat)
    t_max, alpha = gflash.draw_profile(moments, normals)
    t_front = spec.x0_front / np.sin(theta)  # (B,) X0 crossed before the calorimeter face
    t_edges = t_front[:, None] + np.arange(mesh.n_z + 1)[None, :] * mesh.dz_mm / med.x0_mm  # (B, L+1)
    r_edges = np.arange(mesh.n_r + 1) * mesh.dr_mm / med.rm_mm
    cells = deposit.cell_probabilities(
        t_edges, r_edges, e_gev, t_max, alpha, np.exp(moments["mean_ln_alpha"]), med.z, inv_fs, med.ehat
    )  # (B, L, R)
    a = spec.stochastic_term
    spots = gflash.mean_spot_count(e_gev, med.z, a, spec.is_sampling)  # (B,)
    # Spot-energy shape chosen so that spot fluctuations alone give sigma/E = a/sqrt(E): 1/(N s) = a^2/E.
    shapes = np.clip(e_gev / (a * a * spots), *_SPOT_SHAPE_RANGE)
    resolution_k = e_gev / (a * a)  # Gamma shape of the total visible energy: relative width a/sqrt(E)
    visible_mean = spec.sampling_fraction * e_mev * cells.sum(axis=(1, 2))  # contained visible energy (B,)
    block = np.empty((e_mev.size, spec.geometry.n_voxels), dtype=np.float64)
    for i, rng in enumerate(rngs):
        visible = visible_mean[i] * rng.standard_gamma(resolution_k[i]) / resolution_k[i]
        block[i] = deposit.draw_voxels(rng, cells[i], mesh.n_alpha, spots[i], shapes[i], visible)
    block *= spec.readout_scale
    block[block < spec.threshold_mev] = 0.0
    return block.astype(np.float32)


def sample_energies(n: int, energy_range_mev: tuple[float, float], seed: int) -> np.ndarray:
    """Log-uniform incident energies (the CaloChallenge DS2/DS3 convention), from the file-level stream."""
    from caloforge.data.energies import log_uniform

    return log_uniform(n, energy_range_mev, np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(1,))))


def sample_angles(n: int, seed: int, theta_range=None, phi_range=None) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Uniform polar / azimuthal angles (rad) per shower from the file-level angle stream, or None when not asked."""
    angle_rng = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(2,)))
    theta = angle_rng.uniform(*theta_range, int(n)) if theta_range is not None else None
    phi = angle_rng.uniform(*phi_range, int(n)) if phi_range is not None else None
    return theta, phi


def file_attrs(spec: DetectorSpec, seed: int, energy_range_mev) -> dict:
    """Provenance attributes of a generated file (the writer adds caloforge_geometry)."""
    in_presets = PRESETS.get(spec.name) == spec
    return {
        "generator": GENERATOR_NAME,
        "generator_version": GENERATOR_VERSION,
        "detector": spec.name,
        "detector_parameters": json.dumps(spec.to_dict()),
        "detector_names": preset_names_by_id() if in_presets else [spec.name],
        "seed": int(seed),
        "energy_range_mev": json.dumps([float(x) for x in energy_range_mev]),
        "particle": "e-",
        "units": f"MeV; showers = visible (active-medium) energy x readout scale {spec.readout_scale:.6g}",
        "reference": "Grindhammer & Peters, hep-ex/0001020 (GFlash); constants of Geant4's GFlash tuning classes",
    }


def make_file(
    detector: str | DetectorSpec,
    n: int,
    out_path: str | Path,
    energy_range: tuple[float, float] = (1e3, 1e5),
    seed: int = 0,
    chunk: int = 1000,
    theta_range: tuple[float, float] | None = None,
    phi_range: tuple[float, float] | None = None,
    show_progress: bool = False,
) -> Path:
    """Write n GFlash showers (log-uniform energies in MeV) to out_path atomically; returns the path.

    With theta_range / phi_range (rad) the angles are drawn uniformly per shower and stored as incident_theta /
    incident_phi; detector_id (the preset id, or 0 for a custom detector) is always stored.
    """
    from caloforge.data.writer import ShowerWriter
    from caloforge.progress import progress

    spec = get_detector(detector)
    if int(n) != n or n < 1:
        raise CaloforgeError(f"--n: expected a positive integer number of showers, got {n!r}")
    if int(chunk) != chunk or chunk < 1:
        raise CaloforgeError(f"--chunk: expected a positive integer, got {chunk!r}")
    n, chunk = int(n), int(chunk)
    # Rounded to the stored float32 so that the file's energies are exactly the ones the showers were made with.
    energies = sample_energies(n, energy_range, seed).astype(np.float32).astype(np.float64)
    theta, phi = sample_angles(n, seed, theta_range, phi_range)
    det_id = spec.id if PRESETS.get(spec.name) == spec else 0
    extras = ["detector_id"] + (["incident_theta"] if theta is not None else []) + (
        ["incident_phi"] if phi is not None else [])
    attrs = file_attrs(spec, seed, energy_range)
    bar = progress(total=n, desc=f"gflash {spec.name}", unit="shower") if show_progress else None
    with ShowerWriter(out_path, spec.geometry.n_voxels, geometry=spec.geometry, attrs=attrs, extras=extras,
                      expected_n=n) as writer:
        for lo in range(0, n, chunk):
            hi = min(n, lo + chunk)
            th = None if theta is None else theta[lo:hi]
            ph = None if phi is None else phi[lo:hi]
            showers = generate(spec, energies[lo:hi], seed, phi=ph, theta=th, first_index=lo)
            cols = {"detector_id": np.full(hi - lo, det_id, dtype=np.int32)}
            if th is not None:
                cols["incident_theta"] = th.astype(np.float32)
            if ph is not None:
                cols["incident_phi"] = ph.astype(np.float32)
            writer.append(energies[lo:hi], showers, extras=cols)
            if bar is not None:
                bar.update(hi - lo)
    if bar is not None:
        bar.close()
    return Path(out_path)
