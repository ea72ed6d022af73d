"""GFlash generator mechanics: determinism, chunking, presets, thresholds, input errors, angles, deposit maths."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from caloforge.errors import CaloforgeError
from caloforge.simulate import deposit, gflash
from caloforge.simulate.detectors import PRESETS, get_detector, preset_names_by_id
from caloforge.simulate.generate import generate

ENERGIES = np.array([1e3, 3e3, 1e4, 3e4, 1e5])


def test_same_seed_gives_identical_showers_and_another_seed_does_not():
    a = generate("par04-siw", ENERGIES, seed=7)
    b = generate("par04-siw", ENERGIES, seed=7)
    c = generate("par04-siw", ENERGIES, seed=8)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_output_does_not_depend_on_how_the_showers_are_chunked():
    e = np.geomspace(1e3, 1e5, 9)
    whole = generate("lar-pb", e, seed=3)
    parts = np.concatenate([generate("lar-pb", e[:4], seed=3), generate("lar-pb", e[4:], seed=3, first_index=4)])
    assert np.array_equal(whole, parts)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_gives_finite_non_negative_thresholded_showers_of_its_voxel_count(name):
    spec = PRESETS[name]
    s = generate(name, ENERGIES, seed=1)
    assert s.dtype == np.float32 and s.shape == (len(ENERGIES), spec.geometry.n_voxels)
    assert np.all(np.isfinite(s)) and s.min() >= 0
    assert np.all(s[s > 0] >= np.float32(spec.threshold_mev))
    # more energy in, more energy out (each step is a factor 3; fluctuations are far smaller)
    assert np.all(np.diff(s.sum(axis=1)) > 0)


def test_presets_have_unique_stable_ids_and_at_least_five_detectors():
    names = preset_names_by_id()
    assert len(names) >= 5 and len(set(names)) == len(names)
    assert [PRESETS[n].id for n in names] == list(range(len(names)))
    assert PRESETS["par04-siw"].id == 0 and PRESETS["par04-siw"].geometry.grid_shape == (45, 16, 9)


def test_par04_effective_medium_matches_the_ds2_description():
    """DS2: a 3.4 mm readout layer is about 0.8 X0 and a 4.65 mm ring about 0.5 R_M (CaloChallenge README)."""
    med = PRESETS["par04-siw"].medium
    assert 3.4 / med.x0_mm == pytest.approx(0.8, abs=0.05)
    assert 4.65 / med.rm_mm == pytest.approx(0.5, abs=0.1)
    assert med.ehat == pytest.approx(1 / (1 + 0.007 * 60))


def test_unknown_preset_error_names_every_valid_preset():
    with pytest.raises(CaloforgeError) as err:
        get_detector("pb-glass")
    msg = str(err.value)
    assert "\n" not in msg and "pb-glass" in msg
    assert all(name in msg for name in PRESETS)


@pytest.mark.parametrize("energies", [[1e3, -5.0], [np.nan], [0.0]])
def test_non_positive_or_non_finite_energies_are_rejected(energies):
    with pytest.raises(CaloforgeError, match="energies_mev"):
        generate("pbwo4", energies, seed=0)


def test_theta_outside_zero_pi_is_rejected():
    with pytest.raises(CaloforgeError, match="theta"):
        generate("par04-siw", [1e4], seed=0, theta=4.0)


def test_oblique_incidence_makes_sampling_showers_shallower_and_leaves_homogeneous_ones_alone():
    e = np.full(200, 2e4)

    def mean_depth(name, theta):
        spec = PRESETS[name]
        s = generate(name, e, seed=4, theta=theta).reshape(len(e), spec.mesh.n_z, -1).sum(axis=(0, 2))
        return (s * np.arange(spec.mesh.n_z)).sum() / s.sum()

    assert mean_depth("par04-scipb", math.pi / 4) < mean_depth("par04-scipb", math.pi / 2)
    assert np.array_equal(generate("pbwo4", e[:5], seed=4, theta=1.0), generate("pbwo4", e[:5], seed=4))


@settings(max_examples=40, deadline=None)
@given(
    name=st.sampled_from(sorted(PRESETS)),
    log_e=st.floats(math.log(100.0), math.log(1e6)),
    normals=st.tuples(st.floats(-4, 4), st.floats(-4, 4)),
)
def test_cell_probabilities_are_a_sub_distribution_for_any_energy_and_profile(name, log_e, normals):
    spec = PRESETS[name]
    med, mesh = spec.medium, spec.mesh
    e_mev = np.array([math.exp(log_e)])
    inv_fs = np.array([1 / med.fs if med.fs else 0.0])
    mom = gflash.longitudinal_moments(np.log(e_mev / med.ec_mev), med.z, inv_fs, med.ehat)
    t_max, alpha = gflash.draw_profile(mom, np.array([normals]))
    t_edges = np.arange(mesh.n_z + 1) * mesh.dz_mm / med.x0_mm
    r_edges = np.arange(mesh.n_r + 1) * mesh.dr_mm / med.rm_mm
    cells = deposit.cell_probabilities(t_edges, r_edges, e_mev / 1e3, t_max, alpha,
                                       np.exp(mom["mean_ln_alpha"]), med.z, inv_fs, med.ehat)
    assert cells.shape == (1, mesh.n_z, mesh.n_r)
    assert np.all(cells >= 0) and cells.sum() <= 1 + 1e-12
    layers = deposit.layer_fractions(t_edges, t_max, alpha)  # (1, L)
    assert layers.sum() <= 1 + 1e-12
    assert np.all(cells.sum(axis=2) <= layers + 1e-12)  # rings inside the mesh never exceed their layer
    assert np.all(np.diff(gflash.radial_cdf(np.linspace(0, 50, 200), 0.1, 0.8, 0.6)) >= 0)


def test_draw_voxels_conserves_the_requested_visible_energy_and_follows_the_cells():
    rng = np.random.default_rng(0)
    cells = np.zeros((4, 3))
    cells[1, 0], cells[2, 2] = 0.6, 0.3
    out = deposit.draw_voxels(rng, cells, n_alpha=5, mean_spots=5000.0, spot_shape=1.0, visible_mev=123.0)
    grid = out.reshape(4, 5, 3)
    assert out.sum() == pytest.approx(123.0)
    assert grid[1, :, 0].sum() / grid[2, :, 2].sum() == pytest.approx(2.0, rel=0.1)
    assert grid.sum() == pytest.approx(grid[1, :, 0].sum() + grid[2, :, 2].sum())
    assert np.all(grid[1, :, 0] > 0)  # spots spread over every alpha bin
