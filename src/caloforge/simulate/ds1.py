"""Dataset-1-like files (ATLAS barrel at |eta| ~ 0.2, official DS1 binnings): parametrised showers per layer.

There is no regular mesh here: every layer has its own radial edges and alpha bins (``Geometry.official('1-...')``).
A shower's spot probability is computed per layer (depth share x radial share of each ring of *that* layer, uniform
in alpha) and the spots are dropped with ``deposit.draw_voxels`` on the flat voxel vector, so a shower costs one
Poisson draw per voxel as on a mesh.

Depth model: a fixed stack of readout layers and dead material, given in radiation lengths (EM showers) and in
nuclear interaction lengths (hadrons), rough ATLAS values at eta ~ 0.2 (``STACK``). Medium constants are those of
the ``lar-pb`` preset (ATLAS-like Pb/LAr). Energies are at the EM scale: a contained photon gives E_tot ~ E_inc.

* Photons: GFlash (Grindhammer & Peters) longitudinal Gamma profile in X0 with fluctuated (T, alpha), integrated over
  each layer's depth; the GFlash radial two-component profile at the layer's centre depth, integrated over each
  layer's own r bins (in Moliere radii). Energy lost in dead material is not recorded.
* Pions, a documented hadronic approximation (not a hadronic shower model): the pion travels an exponential
  distance (mean 1 lambda) depositing a MIP signal (0.3 GeV per lambda, a Landau-like 20 % fluctuation per layer) in
  the innermost ring; at the interaction a fluctuating fraction f_em (mean 1 - (E / 1 GeV)^(k - 1), k = 0.82, Groom's
  power law) becomes an EM shower (GFlash from the interaction depth); the rest is hadronic: a Gamma profile in
  lambda with maximum at 0.2 ln(E/GeV) + 0.7 lambda after the interaction (PDG), a wide two-component radial profile
  (core 40 mm, halo 200 mm) and a visible response h/e = 0.6 (non-compensation), with a 50 %/sqrt(E) stochastic
  term.

Incident energies are the DS1 ones: powers of two (2^8 ... 2^22 MeV) inside the requested range, drawn uniformly.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from caloforge.data.geometry import Geometry
from caloforge.errors import CaloforgeError
from caloforge.simulate import deposit, gflash
from caloforge.simulate.detectors import PRESETS as MESH_PRESETS
from caloforge.simulate.generate import shower_rng

#: layer id -> (X0 start, X0 end, lambda start, lambda end); gaps between entries are dead material.
STACK = {
    0: (1.7, 2.0, 0.20, 0.22),  # presampler (after ~1.7 X0 of inner detector, solenoid and cryostat)
    1: (2.4, 6.7, 0.25, 0.45),  # EMB1 strips
    2: (6.7, 22.7, 0.45, 1.20),  # EMB2 middle
    3: (22.7, 24.7, 1.20, 1.30),  # EMB3 back
    12: (27.0, 41.0, 1.50, 3.00),  # TileBar0
    13: (41.0, 80.0, 3.00, 7.10),  # TileBar1
    14: (80.0, 97.0, 7.10, 8.90),  # TileBar2
}
EM_STOCHASTIC = 0.10  # sigma/E = a / sqrt(E/GeV) of the EM calorimeter
HAD_STOCHASTIC = 0.50
H_OVER_E = 0.6
MIP_GEV_PER_LAMBDA = 0.3
MIP_LANDAU_WIDTH = 0.2  # relative spread of a MIP layer signal (sampling layers: tens of per cent)
MOYAL_MEAN, MOYAL_SD = 0.5772156649 + math.log(2.0), math.pi / math.sqrt(2.0)
GROOM_K = 0.82
HAD_RADII_MM = (40.0, 200.0, 0.5)  # core radius, halo radius, core weight
DS1_ENERGIES_MEV = 2.0 ** np.arange(8, 23)


@dataclass(frozen=True)
class DS1Spec:
    name: str
    particle: str  # "photon" or "pion"
    dataset: str  # official geometry key
    description: str

    @property
    def geometry(self) -> Geometry:
        return Geometry.official(self.dataset)

    def summary_line(self) -> str:
        g = self.geometry
        return (f"{self.name:<14} DS1 {g.n_voxels} voxels in {len(g.relevant_layers)} irregular layers "
                f"(official binning {self.dataset})  - {self.description}")


DS1_PRESETS = {
    s.name: s
    for s in (
        DS1Spec("atlas-ds1-photons", "photon", "1-photons", "ATLAS-like photons, GFlash over the DS1 bins"),
        DS1Spec("atlas-ds1-pions", "pion", "1-pions", "ATLAS-like pions, documented hadronic approximation"),
    )
}


def _medium():
    return MESH_PRESETS["lar-pb"].medium


def _layers(geo: Geometry):
    for lid in geo.relevant_layers:
        if lid not in STACK:
            raise CaloforgeError(f"ds1: layer {lid} has no depth in the DS1 stack")
        yield lid, geo.layers[lid]


def _em_voxel_probabilities(geo: Geometry, e_gev: float, start_x0: float, rng: np.random.Generator) -> np.ndarray:
    """Per-voxel spot probability (V,) of one GFlash EM shower starting at depth start_x0 (X0)."""
    med = _medium()
    inv_fs = np.array([1.0 / med.fs])
    log_y = np.log(np.array([e_gev * 1e3 / med.ec_mev]))
    moments = gflash.longitudinal_moments(log_y, med.z, inv_fs, med.ehat)
    t_max, alpha = gflash.draw_profile(moments, rng.standard_normal((1, 2)))
    out = []
    for lid, layer in _layers(geo):
        t0, t1 = (max(v - start_x0, 0.0) for v in STACK[lid][:2])
        share = deposit.layer_fractions(np.array([t0, t1]), t_max, alpha)[0, 0]
        tau = np.array([[0.5 * (t0 + t1) / t_max[0]]])
        rc, rt, p = gflash.radial_parameters(tau, np.array([e_gev]), med.z, inv_fs, med.ehat)
        cdf = gflash.radial_cdf(np.asarray(layer.r_edges) / med.rm_mm, rc[0, 0], rt[0, 0], p[0, 0])
        out.append(np.tile(share * np.diff(cdf) / layer.n_alpha, layer.n_alpha))
    return np.concatenate(out)


def _had_voxel_probabilities(geo: Geometry, e_gev: float, start_lambda: float) -> np.ndarray:
    """Per-voxel share (V,) of the hadronic (non-EM) part of a pion shower starting at start_lambda."""
    l_max = 0.2 * math.log(max(e_gev, 1.0)) + 0.7
    shape = 2.0
    rc, rt, p = HAD_RADII_MM
    out = []
    for lid, layer in _layers(geo):
        t0, t1 = (max(v - start_lambda, 0.0) for v in STACK[lid][2:])
        share = deposit.layer_fractions(np.array([t0, t1]), np.array([l_max]), np.array([shape]))[0, 0]
        cdf = gflash.radial_cdf(np.asarray(layer.r_edges), rc, rt, p)
        out.append(np.tile(share * np.diff(cdf) / layer.n_alpha, layer.n_alpha))
    return np.concatenate(out)


def _landau_factors(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n,) Landau-like factors of mean ~1: a Moyal variate (-ln Z^2, Z ~ N(0, 1)) centred on its mean
    (Euler gamma + ln 2) and scaled to a relative width of MIP_LANDAU_WIDTH; long upper tail, floor 0.3."""
    moyal = -np.log(np.maximum(rng.standard_normal(n) ** 2, 1e-300))
    return np.maximum(1.0 + MIP_LANDAU_WIDTH / MOYAL_SD * (moyal - MOYAL_MEAN), 0.3)


def _mip_voxels(geo: Geometry, interaction_lambda: float, rng: np.random.Generator) -> np.ndarray:
    """MIP energy (V,) in MeV of the pion track before it interacts: innermost ring, spread over alpha, each layer
    crossing with its own Landau-like fluctuation (without it every pion that ranges out before interacting would
    leave the identical shower, so a file would hold exact duplicates)."""
    layers = list(_layers(geo))
    factors = _landau_factors(rng, len(layers))
    out = []
    for (lid, layer), factor in zip(layers, factors):
        l0, l1 = STACK[lid][2:]
        e = factor * 1e3 * MIP_GEV_PER_LAMBDA * max(min(l1, interaction_lambda) - l0, 0.0)
        ring = np.zeros(layer.n_r)
        ring[0] = e / layer.n_alpha
        out.append(np.tile(ring, layer.n_alpha))
    return np.concatenate(out)


def _x0_at(lam: float) -> float:
    """Depth in X0 at depth lam (lambda), interpolated over the stack."""
    pts = sorted((v[2], v[0]) for v in STACK.values()) + sorted((v[3], v[1]) for v in STACK.values())
    lams, x0s = zip(*sorted(pts))
    return float(np.interp(lam, lams, x0s))


def _spots(rng, probs: np.ndarray, e_gev: float, visible_mev: float, stochastic: float) -> np.ndarray:
    if visible_mev <= 0 or probs.sum() <= 0:
        return np.zeros(probs.size)
    spots = float(gflash.mean_spot_count(np.array([e_gev]), _medium().z, stochastic, True)[0])
    shape = float(np.clip(e_gev / (stochastic**2 * spots), 0.1, 50.0))
    return deposit.draw_voxels(rng, probs[None, :], 1, spots, shape, visible_mev)


def shower(spec: DS1Spec, e_mev: float, rng: np.random.Generator) -> np.ndarray:
    """One shower (V,) float64 in MeV (EM scale) on the official DS1 binning of ``spec``."""
    geo, e_gev = spec.geometry, e_mev / 1e3
    if spec.particle == "photon":
        probs = _em_voxel_probabilities(geo, e_gev, 0.0, rng)
        k = e_gev / EM_STOCHASTIC**2
        return _spots(rng, probs, e_gev, e_mev * probs.sum() * rng.standard_gamma(k) / k, EM_STOCHASTIC)
    lam = float(rng.exponential(1.0))
    mean_fem = 1.0 - max(e_gev, 1.0) ** (GROOM_K - 1.0)
    f_em = float(rng.beta(1.0 + 8.0 * mean_fem, 1.0 + 8.0 * (1.0 - mean_fem))) if mean_fem > 0 else 0.0
    mip = _mip_voxels(geo, lam, rng)
    if mip.sum() > e_mev:  # a soft pion ranges out before it interacts: it cannot lose more than it has
        mip *= e_mev / mip.sum()
    e_left = e_mev - mip.sum()  # the track's ionisation is taken from the incident energy
    em_p = _em_voxel_probabilities(geo, e_gev * f_em, _x0_at(lam), rng) if f_em * e_left > 1.0 else np.zeros(mip.size)
    had_p = _had_voxel_probabilities(geo, e_gev, lam)
    k_em, k_had = max(f_em * e_gev, 1e-3) / EM_STOCHASTIC**2, e_gev / HAD_STOCHASTIC**2
    em_vis = f_em * e_left * em_p.sum() * rng.standard_gamma(k_em) / k_em
    had_vis = H_OVER_E * (1 - f_em) * e_left * had_p.sum() * rng.standard_gamma(k_had) / k_had
    return mip + _spots(rng, em_p, f_em * e_gev, em_vis, EM_STOCHASTIC) + _spots(
        rng, had_p, e_gev, had_vis, HAD_STOCHASTIC)


def ds1_energies(n: int, energy_range_mev: tuple[float, float], seed: int) -> np.ndarray:
    """n incident energies drawn uniformly from the DS1 powers of two inside the range (MeV)."""
    lo, hi = energy_range_mev
    allowed = DS1_ENERGIES_MEV[(DS1_ENERGIES_MEV >= lo * (1 - 1e-9)) & (DS1_ENERGIES_MEV <= hi * (1 + 1e-9))]
    if allowed.size == 0:
        raise CaloforgeError(f"--energy-range: dataset 1 energies are powers of two 2^8..2^22 MeV "
                             f"(0.256-4194 GeV); none lies in {lo / 1e3:g}:{hi / 1e3:g} GeV")
    rng = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(1,)))
    return rng.choice(allowed, size=int(n))


def make_ds1_file(name: str, n: int, out_path, energy_range=(256.0, 4194304.0), seed: int = 0, chunk: int = 1000,
                  show_progress: bool = False) -> Path:
    """Write n dataset-1-like showers of preset ``name`` to out_path (streamed in chunks, atomic)."""
    from caloforge.data.writer import ShowerWriter
    from caloforge.progress import progress

    spec = DS1_PRESETS[name]
    if int(n) != n or n < 1:
        raise CaloforgeError(f"--n: expected a positive integer number of showers, got {n!r}")
    energies = ds1_energies(int(n), energy_range, seed)
    geo = spec.geometry
    attrs = {"generator": "caloforge-ds1", "detector": spec.name, "particle": spec.particle, "seed": int(seed),
             "energy_range_mev": json.dumps([float(x) for x in energy_range]),
             "units": "MeV at the EM scale", "reference": "caloforge.simulate.ds1 (docs/data.md, dataset 1)"}
    bar = progress(total=int(n), desc=f"ds1 {spec.name}", unit="shower") if show_progress else None
    with ShowerWriter(out_path, geo.n_voxels, geometry=geo, attrs=attrs, expected_n=int(n)) as writer:
        for lo in range(0, int(n), int(chunk)):
            hi = min(int(n), lo + int(chunk))
            block = np.stack([shower(spec, energies[i], shower_rng(seed, i)) for i in range(lo, hi)])
            writer.append(energies[lo:hi], block.astype(np.float32))
            if bar is not None:
                bar.update(hi - lo)
    if bar is not None:
        bar.close()
    return Path(out_path)
