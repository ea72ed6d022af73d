"""Separation power, two-sample chi2 and the official binnings."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from caloforge.data.geometry import Geometry
from caloforge.errors import CaloforgeError
from caloforge.evaluation.features import compute_hlf
from caloforge.evaluation.histograms import (
    chi2_two_sample,
    compare,
    density,
    feature_edges,
    feature_histograms,
    separation_power,
    summarise,
    voxel_histogram,
)


def test_separation_power_of_identical_histograms_is_zero_and_of_disjoint_ones_is_one():
    edges = np.linspace(0, 1, 11)
    h = density(np.array([0, 3, 5, 9, 2, 0, 1, 0, 0, 4]), edges)
    assert separation_power(h, h, edges) == 0.0
    a = density(np.array([5, 5, 0, 0, 0, 0, 0, 0, 0, 0]), edges)
    b = density(np.array([0, 0, 0, 0, 0, 0, 0, 7, 1, 0]), edges)
    assert separation_power(a, b, edges) == pytest.approx(1.0, abs=1e-12)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 50), min_size=3, max_size=12), st.integers(0, 10_000))
def test_separation_power_is_symmetric_and_within_zero_one(counts, seed):
    counts = np.array(counts)
    if counts.sum() == 0:
        counts[0] = 1
    other = np.random.default_rng(seed).permutation(counts)
    edges = np.cumsum(np.r_[0.0, np.random.default_rng(seed).uniform(0.1, 2, len(counts))])
    h1, h2 = density(counts, edges), density(other, edges)
    s = separation_power(h1, h2, edges)
    assert 0.0 <= s <= 1.0 + 1e-12
    assert s == pytest.approx(separation_power(h2, h1, edges), abs=1e-15)


def test_density_is_bit_identical_to_numpy_histogram_density():
    rng = np.random.default_rng(0)
    values, edges = rng.normal(size=1000), np.logspace(-2, 0.5, 40) - 1.2
    expected = np.histogram(values, bins=edges, density=True)[0]
    np.testing.assert_array_equal(density(np.histogram(values, bins=edges)[0], edges), expected)


def test_two_sample_chi2_by_hand():
    chi2, ndf = chi2_two_sample(np.array([10, 0]), np.array([0, 10]))
    assert (chi2, ndf) == (pytest.approx(20.0), 1)  # each bin (10*10)^2 / (10*10*10)
    chi2, ndf = chi2_two_sample(np.array([4, 8, 0, 2]), np.array([2, 4, 0, 1]))
    assert chi2 == pytest.approx(0.0, abs=1e-12) and ndf == 2  # proportional counts, empty bin skipped
    assert np.isnan(chi2_two_sample(np.zeros(3), np.ones(3))[0])


def test_official_bin_edges():
    np.testing.assert_array_equal(feature_edges("E_ratio", None, "2"), np.linspace(0.5, 1.5, 101))
    assert feature_edges("EC_eta", 5, "2")[[0, -1]].tolist() == [-30.0, 30.0]
    assert feature_edges("EC_phi", 12, "1-pions")[[0, -1]].tolist() == [-500.0, 500.0]
    assert feature_edges("EC_eta", 1, "1-photons")[[0, -1]].tolist() == [-100.0, 100.0]
    assert feature_edges("width_eta", 13, "1-pions")[[0, -1]].tolist() == [0.0, 400.0]
    assert feature_edges("width_phi", 2, "1-pions")[[0, -1]].tolist() == [0.0, 100.0]
    assert feature_edges("width_phi", 2, "3")[[0, -1]].tolist() == [0.0, 30.0]
    assert len(feature_edges("sparsity", 0, "2")) == 21
    assert feature_edges("EC_r", 14, "1-pions")[-1] == 1500.0 and feature_edges("width_r", 3, "1-pions")[-1] == 500.0
    assert feature_edges("EC_r", 0, "2")[-1] == 42.0 and feature_edges("width_r", 0, "2")[-1] == 20.0
    e = feature_edges("E_layer", 0, "2", np.array([0.0, 3.0, 700.0]), 0.5e-3 / 0.033)
    assert len(e) == 40 and e[0] == pytest.approx(0.5e-3 / 0.033) and e[-1] == pytest.approx(700.0)
    assert feature_edges("E_layer", 0, "2", np.zeros(3), 0.01) is None
    for top in np.random.default_rng(0).uniform(1, 1e4, 200):  # float64 values: numpy's own logspace, as official
        np.testing.assert_array_equal(feature_edges("E_layer", 0, "2", np.array([top]), 0.0151),
                                      np.logspace(np.log10(0.0151), np.log10(top), 40))
    with pytest.raises(CaloforgeError, match="unknown feature"):
        feature_edges("mass", None, "2")


def _features(geo, n, seed, energies):
    rng = np.random.default_rng(seed)
    showers = rng.exponential(30.0, (n, geo.n_voxels)) * (rng.random((n, geo.n_voxels)) < 0.5)
    return compute_hlf(showers, energies, geo)


def test_ds2_histogram_set_and_summary():
    geo = Geometry.official("2")
    ref, gen = _features(geo, 40, 0, np.full(40, 2e5)), _features(geo, 40, 1, np.full(40, 2e5))
    results = feature_histograms(ref, gen, geo, "2")
    assert len(results) == 1 + 45 * 8
    names = [r.name for r in results]
    assert names.count("EC_eta") == 45 and names.count("sparsity") == 45
    assert all(not r.official for r in results if r.name in ("sparsity", "EC_r", "width_r"))
    assert all(r.official for r in results if r.name in ("E_ratio", "E_layer", "width_phi"))
    same = feature_histograms(ref, ref, geo, "2")
    assert all(r.separation_power == 0.0 for r in same if np.isfinite(r.separation_power))
    summary = summarise(results)
    seps = [r.separation_power for r in results if r.name == "E_layer"]
    assert summary["E_layer"]["max"] == pytest.approx(np.nanmax(seps))
    assert summary["E_layer"]["mean"] == pytest.approx(np.nanmean(seps)) and summary["E_layer"]["n"] == 45


def test_ds1_photons_have_per_energy_ratio_histograms_with_narrow_bins_above_4_gev():
    geo = Geometry.official("1-photons")
    energies = np.repeat(2.0 ** np.arange(8, 23), 2)
    ref, gen = _features(geo, 30, 0, energies), _features(geo, 30, 1, energies)
    per_e = [r for r in feature_histograms(ref, gen, geo, "1-photons") if r.name == "E_ratio_at_E"]
    assert [r.energy for r in per_e] == list(2.0 ** np.arange(8, 23))
    assert [r.edges[0] for r in per_e] == [0.4] * 4 + [0.9] * 11
    assert all(r.ref_counts.sum() <= 2 for r in per_e)  # two showers per discrete energy at most
    pions = Geometry.official("1-pions")
    ref_p, gen_p = _features(pions, 30, 0, energies), _features(pions, 30, 1, energies)
    per_e_p = [r for r in feature_histograms(ref_p, gen_p, pions, "1-pions") if r.name == "E_ratio_at_E"]
    assert all(r.edges[0] == 0.4 for r in per_e_p)


def test_compare_drops_out_of_range_values_like_numpy():
    r = compare("x", None, [0.1, 0.2, 5.0], [0.15, -3.0], np.linspace(0, 1, 5))
    assert r.ref_counts.sum() == 2 and r.gen_counts.sum() == 1


def test_voxel_histogram_ignores_zeros_and_needs_reference_energy():
    ref = np.array([[0.0, 0.02, 5.0], [0.0, 1.0, 0.0]])
    r = voxel_histogram(ref, ref * 1.0, 0.0151)
    assert r.ref_counts.sum() == 3 and r.separation_power == 0.0 and len(r.edges) == 50
    with pytest.raises(CaloforgeError, match="threshold"):
        voxel_histogram(np.zeros((2, 3)), np.zeros((2, 3)), 0.0151)


def test_an_empty_histogram_gives_nan_with_a_reason_not_a_number():
    h = compare("E_ratio", None, np.full(50, 1.0), np.full(50, 3.0), np.linspace(0.5, 1.5, 101))
    assert np.isnan(h.separation_power) and "no generated value" in h.note
    ok = compare("E_ratio", None, np.full(50, 1.0), np.full(50, 1.0), np.linspace(0.5, 1.5, 101))
    assert ok.separation_power == 0.0 and ok.note is None


def test_e_layer_and_voxel_edges_follow_the_official_float32_arithmetic():
    from caloforge.evaluation.histograms import count_on_edges, official_log_edges, voxel_edges

    rng = np.random.default_rng(1)
    thr = 0.5e-3 / 0.033
    for _ in range(20):
        e_layer = (rng.lognormal(3, 2, 500)).astype(np.float32)
        want = np.logspace(np.log10(thr), np.log10(e_layer.max()), 40)  # evaluate_plotting_helper, float32 max
        got = official_log_edges(thr, e_layer, 40)
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(count_on_edges(e_layer, got), np.histogram(e_layer, want)[0])
    vox = rng.lognormal(0, 2, 2000).astype(np.float32)
    np.testing.assert_array_equal(voxel_edges(thr, vox.max()), np.logspace(np.log10(thr), np.log10(vox.max()), 50))
    assert official_log_edges(thr, np.zeros(5, np.float32), 40) is None  # the official code fails here
