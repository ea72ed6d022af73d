"""Physics sanity of the GFlash generator: shower maximum, radial containment, visible fraction, resolution."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from caloforge.simulate.detectors import PRESETS, Mesh
from caloforge.simulate.generate import generate, sample_energies

N_PER_ENERGY = 300


def paper_shower_max_x0(spec, energy_gev: float) -> float:
    """Depth of the maximum of the average profile (Grindhammer & Peters): T_hom = ln y - 0.858, plus the
    sampling shift t1/F_s + t2 (1 - e_hat) with Geant4's t1 = -0.55, t2 = -0.69. Written out here on purpose,
    independently of caloforge.simulate.gflash."""
    med = spec.medium
    t = math.log(energy_gev * 1e3 / med.ec_mev) - 0.858
    if spec.is_sampling:
        t += -0.55 / med.fs - 0.69 * (1.0 - med.ehat)
    return t


def mean_profile_peak_x0(spec, showers: np.ndarray) -> float:
    """Depth (X0) of the peak of the mean longitudinal profile, refined by a parabola through the top 3 layers."""
    z, a, r = spec.geometry.grid_shape
    prof = showers.reshape(-1, z, a, r).sum(axis=(2, 3)).mean(axis=0)
    k = int(np.clip(prof.argmax(), 1, z - 2))
    y0, y1, y2 = prof[k - 1], prof[k], prof[k + 1]
    shift = 0.5 * (y0 - y2) / (y0 - 2 * y1 + y2)
    return (k + 0.5 + shift) * spec.mesh.dz_mm / spec.medium.x0_mm


def wide(spec, n_r: int = 80, n_z: int = 60):
    """The same detector read out on a mesh large enough to contain the whole shower (0.1 R_M rings, 1 X0 layers)."""
    med = spec.medium
    mesh = Mesh(n_z, 1, n_r, 0.1 * med.rm_mm, med.x0_mm)
    return dataclasses.replace(spec, mesh=mesh)


@pytest.mark.parametrize("name", ["par04-siw", "pbwo4", "lar-pb"])
def test_shower_max_sits_within_one_x0_of_gflash_and_grows_with_log_energy(name):
    spec = PRESETS[name]
    peaks = []
    for e_gev in (2.0, 10.0, 50.0):
        showers = generate(spec, np.full(N_PER_ENERGY, e_gev * 1e3), seed=11)
        peak = mean_profile_peak_x0(spec, showers)
        assert abs(peak - paper_shower_max_x0(spec, e_gev)) < 1.0, (e_gev, peak)
        peaks.append(peak)
    assert peaks[0] < peaks[1] < peaks[2]
    # growth per e-fold of energy is about one X0 (dT/d ln E = 1 in GFlash)
    slope = (peaks[2] - peaks[0]) / math.log(25.0)
    assert 0.7 < slope < 1.3


@pytest.mark.parametrize("name", ["par04-siw", "pbwo4"])
def test_ninety_percent_of_the_energy_lies_within_two_moliere_radii(name):
    spec = wide(PRESETS[name])
    showers = generate(spec, np.full(200, 10e3), seed=5)
    radial = showers.reshape(200, spec.mesh.n_z, spec.mesh.n_r).sum(axis=(0, 1))
    cum = np.cumsum(radial) / radial.sum()
    r90_rm = (np.searchsorted(cum, 0.9) + 1) * 0.1  # outer edge of the ring that crosses 90 %
    assert 0.5 < r90_rm <= 2.0


@pytest.mark.parametrize("name", ["par04-scipb", "lar-pb", "pbwo4", "w-sci"])
def test_contained_visible_energy_matches_the_sampling_fraction_within_five_percent(name):
    spec = wide(PRESETS[name])
    e = np.full(200, 20e3)
    showers = generate(spec, e, seed=2)
    visible_fraction = showers.sum(axis=1).mean() / spec.readout_scale / e[0]
    assert visible_fraction == pytest.approx(spec.sampling_fraction, rel=0.05)


def test_energy_resolution_follows_the_stochastic_term():
    spec = PRESETS["par04-scipb"]
    totals = generate(spec, np.full(400, 10e3), seed=9).sum(axis=1)
    rel = totals.std() / totals.mean()
    assert rel == pytest.approx(spec.stochastic_term / math.sqrt(10.0), rel=0.25)


def test_par04_siw_response_is_close_to_the_shared_geant4_file(g4_file):
    import h5py

    with h5py.File(g4_file, "r") as f:
        e_g4 = f["incident_energies"][:1000, 0]
        ratio_g4 = (f["showers"][:1000].sum(axis=1) / e_g4).mean()
    e = sample_energies(1000, (1e3, 1e5), seed=4)
    ratio = (generate("par04-siw", e, seed=4).sum(axis=1) / e).mean()
    assert abs(ratio - ratio_g4) < 0.03
