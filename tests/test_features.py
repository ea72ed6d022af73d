"""High-level features: hand-made showers with known answers, an independent loop implementation, the official
feature-vector layout, thresholds and streaming."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from caloforge.data.geometry import Geometry
from caloforge.errors import CaloforgeError, DataError
from caloforge.evaluation import features as F
from caloforge.evaluation.features import (
    apply_threshold,
    compute_hlf,
    compute_hlf_stream,
    hlf_vector,
    voxel_inputs,
)

DS2 = Geometry.official("2")
PHOTONS = Geometry.official("1-photons")
PIONS = Geometry.official("1-pions")


def one_hot(geo: Geometry, layer: int, alpha: int, r: int, energy: float = 5.0, n: int = 1) -> np.ndarray:
    x = np.zeros((n, geo.n_voxels))
    x[:, int(geo.flat_index(layer, alpha, r))] = energy
    return x


def expected_coords(geo: Geometry, layer: int, alpha: int, r: int) -> tuple[float, float, float]:
    ly = geo.layers[layer]
    rc, ac = ly.r_centres[r], ly.alpha_centres[alpha]
    return rc, rc * np.cos(ac), rc * np.sin(ac)


def loop_reference(shower: np.ndarray, geo: Geometry, thr: float) -> dict[str, list[float]]:
    """Straightforward per-voxel loops over the XML description (no vectorisation, no shared helpers)."""
    out = {k: [] for k in ("E_layer", "EC_r", "width_r", "sparsity", "EC_eta", "width_eta", "EC_phi", "width_phi")}
    pos = 0
    for lid, ly in enumerate(geo.layers):
        if ly.n_voxels == 0:
            continue
        s = w = wr = wr2 = wx = wx2 = wy = wy2 = 0.0
        hits = 0
        for a in range(ly.n_alpha):
            alpha = -np.pi + (a + 0.5) * 2 * np.pi / ly.n_alpha
            for i in range(ly.n_r):
                e = shower[pos]
                pos += 1
                e = 0.0 if e < thr else float(e)
                r = ly.r_edges[i] + (ly.r_edges[i + 1] - ly.r_edges[i]) / 2
                x, y = r * np.cos(alpha), r * np.sin(alpha)
                s += e
                hits += e > 0
                wr += r * e
                wr2 += r * r * e
                wx += x * e
                wx2 += x * x * e
                wy += y * e
                wy2 += y * y * e
        w = s + 1e-16
        out["E_layer"].append(s)
        out["sparsity"].append(1 - hits / ly.n_voxels)
        for key, m1, m2 in (("r", wr, wr2), ("eta", wx, wx2), ("phi", wy, wy2)):
            if key != "r" and ly.n_alpha == 1:
                continue
            out[f"EC_{key}"].append(m1 / w)
            out[f"width_{key}"].append(np.sqrt(max(m2 / w - (m1 / w) ** 2, 0.0)))
    return out


def test_single_hot_voxel_gives_its_coordinates_zero_width_and_sparsity():
    layer, alpha, r = 7, 3, 4
    feats = compute_hlf(one_hot(DS2, layer, alpha, r), [1000.0], DS2)
    rc, x, y = expected_coords(DS2, layer, alpha, r)
    j = DS2.relevant_layers.index(layer)
    assert feats["EC_r"][0, j] == pytest.approx(rc, abs=1e-12)
    assert feats["EC_eta"][0, j] == pytest.approx(x, abs=1e-12)
    assert feats["EC_phi"][0, j] == pytest.approx(y, abs=1e-12)
    for key in ("width_r", "width_eta", "width_phi"):
        assert feats[key][0, j] == pytest.approx(0.0, abs=1e-6)
    assert feats["sparsity"][0, j] == pytest.approx(1 - 1 / 144)
    others = np.delete(np.arange(45), j)
    assert np.all(feats["sparsity"][0, others] == 1.0)
    assert np.all(feats["E_layer"][0, others] == 0.0) and feats["E_layer"][0, j] == 5.0
    assert np.all(feats["EC_r"][0, others] == 0.0)
    assert feats["E_tot"][0] == 5.0 and feats["E_ratio"][0] == pytest.approx(5.0 / 1000.0)


def test_symmetric_ring_is_centred_with_ring_radius_and_width_r_over_sqrt2():
    layer, r = 20, 6
    x = np.zeros((1, DS2.n_voxels))
    for a in range(16):
        x[0, int(DS2.flat_index(layer, a, r))] = 2.0
    feats = compute_hlf(x, [5e4], DS2)
    rc = DS2.layers[layer].r_centres[r]
    assert feats["EC_eta"][0, layer] == pytest.approx(0.0, abs=1e-12)
    assert feats["EC_phi"][0, layer] == pytest.approx(0.0, abs=1e-12)
    assert feats["EC_r"][0, layer] == pytest.approx(rc, rel=1e-14)
    assert feats["width_r"][0, layer] == pytest.approx(0.0, abs=1e-6)
    # <cos^2> = <sin^2> = 1/2 over equally spaced angles, so both widths are r / sqrt(2)
    assert feats["width_eta"][0, layer] == pytest.approx(rc / np.sqrt(2), rel=1e-12)
    assert feats["width_phi"][0, layer] == pytest.approx(rc / np.sqrt(2), rel=1e-12)
    assert feats["sparsity"][0, layer] == pytest.approx(1 - 16 / 144)


def test_voxels_below_threshold_are_removed_before_every_feature():
    thr = DS2.threshold_mev
    hot = one_hot(DS2, 10, 2, 1, energy=40.0)
    noisy = hot.copy()
    rng = np.random.default_rng(3)
    idx = rng.choice(DS2.n_voxels, 500, replace=False)
    idx = idx[idx != DS2.flat_index(10, 2, 1)]
    noisy[0, idx] = rng.uniform(0, thr * 0.999, len(idx))
    a, b = compute_hlf(hot, [1e4], DS2), compute_hlf(noisy, [1e4], DS2)
    for key in F.FEATURE_KEYS:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    # with the threshold switched off the noise is counted
    assert compute_hlf(noisy, [1e4], DS2, threshold=0.0)["E_tot"][0] > 40.0


def test_threshold_compares_in_the_data_float_type_like_numpy_in_evaluate():
    thr = 0.5e-3 / 0.033
    x = np.array([[np.float32(thr), np.nextafter(np.float32(thr), np.float32(0)), 1.0]], dtype=np.float32)
    out = apply_threshold(x, thr, np.float64)
    assert out.dtype == np.float64
    assert out[0, 0] == np.float32(thr) and out[0, 1] == 0.0 and out[0, 2] == 1.0


def test_ds1_photon_layer12_and_pion_layer13_hot_voxels():
    feats = compute_hlf(one_hot(PHOTONS, 12, 0, 3, 10.0), [2**14], PHOTONS)
    assert feats["E_layer"].shape == (1, 5) and feats["EC_eta"].shape == (1, 2)
    assert feats["EC_r"][0, 4] == pytest.approx(PHOTONS.layers[12].r_centres[3])
    assert feats["sparsity"][0, 4] == pytest.approx(1 - 1 / 5)
    feats = compute_hlf(one_hot(PIONS, 13, 6, 9, 10.0), [2**14], PIONS)
    rc, x, y = expected_coords(PIONS, 13, 6, 9)
    assert PIONS.alpha_binned_layers == (1, 2, 12, 13)
    assert feats["EC_eta"][0, 3] == pytest.approx(x) and feats["EC_phi"][0, 3] == pytest.approx(y)
    assert feats["EC_r"][0, PIONS.relevant_layers.index(13)] == pytest.approx(rc)


@pytest.mark.parametrize("dataset", ["1-photons", "1-pions", "2"])
def test_vectorised_features_match_a_per_voxel_loop(dataset):
    geo = Geometry.official(dataset)
    rng = np.random.default_rng(11)
    showers = (rng.exponential(3.0, (3, geo.n_voxels)) * (rng.random((3, geo.n_voxels)) < 0.3)).astype(np.float32)
    feats = compute_hlf(showers, [1e3, 1e4, 1e5], geo)
    for i in range(3):
        ref = loop_reference(showers[i], geo, geo.threshold_mev)
        for key, vals in ref.items():
            # energies are float32 sums (as HighLevelFeatures), the loop sums in float64: float32 rounding apart
            np.testing.assert_allclose(feats[key][i], vals, rtol=1e-6, atol=1e-6, err_msg=key)


@pytest.mark.parametrize("dataset,width", [("1-photons", 30), ("1-pions", 46), ("2", 362), ("3", 362)])
def test_hlf_vector_has_the_official_number_of_columns(dataset, width):
    geo = Geometry.official(dataset)
    rng = np.random.default_rng(0)
    feats = compute_hlf(rng.exponential(1.0, (4, geo.n_voxels)), np.full(4, 1e4), geo)
    vec = hlf_vector(feats, geo)
    assert vec.shape == (4, width)
    n_l, n_a = len(geo.relevant_layers), len(geo.alpha_binned_layers)
    np.testing.assert_allclose(vec[:, 0], 4.0)
    np.testing.assert_allclose(vec[:, 1 : 1 + n_l], np.log10(feats["E_layer"] + 1e-8))
    np.testing.assert_allclose(vec[:, 1 + n_l + 4 * n_a], np.log10(feats["E_tot"] + 1e-8))
    np.testing.assert_allclose(vec[:, -n_l:], feats["width_r"] / 100)


def test_stream_and_small_chunks_give_the_same_features(monkeypatch):
    rng = np.random.default_rng(5)
    showers = rng.exponential(1.0, (10, PIONS.n_voxels)).astype(np.float32)
    energies = 10 ** rng.uniform(3, 5, 10)
    whole = compute_hlf(showers, energies, PIONS)
    batches = [SimpleNamespace(showers=showers[i : i + 4], energies=energies[i : i + 4]) for i in range(0, 10, 4)]
    streamed = compute_hlf_stream(batches, PIONS)
    monkeypatch.setattr(F, "_CHUNK_ELEMENTS", 3 * PIONS.n_voxels)
    chunked = compute_hlf(showers, energies, PIONS)
    for key in F.FEATURE_KEYS:  # BLAS may pick other kernels for other row counts: equal to rounding
        np.testing.assert_allclose(whole[key], streamed[key], rtol=1e-12, atol=1e-12, err_msg=key)
        np.testing.assert_allclose(whole[key], chunked[key], rtol=1e-12, atol=1e-12, err_msg=key)
    assert compute_hlf_stream([], PIONS)["EC_eta"].shape == (0, 4)


@settings(max_examples=25, deadline=None)
@given(
    n_z=st.integers(1, 4), n_a=st.integers(1, 5), n_r=st.integers(1, 5), n=st.integers(1, 4), seed=st.integers(0, 99)
)
def test_regular_mesh_feature_shapes_and_bounds(n_z, n_a, n_r, n, seed):
    geo = Geometry.regular(n_z, n_a, n_r, dr_mm=2.0, threshold_mev=0.0)
    rng = np.random.default_rng(seed)
    showers = rng.exponential(1.0, (n, geo.n_voxels)) * (rng.random((n, geo.n_voxels)) < 0.5)
    feats = compute_hlf(showers, np.full(n, 100.0), geo)
    assert feats["E_layer"].shape == (n, n_z)
    assert feats["EC_eta"].shape == (n, n_z if n_a > 1 else 0)
    np.testing.assert_allclose(feats["E_layer"].sum(1), feats["E_tot"], rtol=1e-12)
    for key in ("width_r", "width_eta", "width_phi"):
        assert np.all(feats[key] >= 0)
    has = feats["E_layer"] > 0
    assert np.all(feats["EC_r"][has] >= 1.0 - 1e-12) and np.all(feats["EC_r"][has] <= 2.0 * n_r - 1.0 + 1e-12)
    assert np.all((feats["sparsity"] >= 0) & (feats["sparsity"] <= 1))


def test_voxel_inputs_low_and_low_normed():
    rng = np.random.default_rng(2)
    showers = rng.exponential(1.0, (3, PHOTONS.n_voxels))
    energies = np.array([256.0, 1024.0, 4096.0])
    low = voxel_inputs(showers, energies, "low")
    x = apply_threshold(showers, PHOTONS.threshold_mev)
    assert low.shape == (3, 1 + 368)
    np.testing.assert_allclose(low[:, 0], np.log10(energies))
    np.testing.assert_allclose(low[:, 1:], x / energies[:, None])
    normed = voxel_inputs(showers, energies, "low-normed", geometry=PHOTONS)
    assert normed.shape == (3, 1 + 368 + 5)
    e_layer = compute_hlf(showers, energies, PHOTONS)["E_layer"]
    for j, layer in enumerate(PHOTONS.relevant_layers):
        block = normed[:, 1:][:, PHOTONS.layer_slice(layer)]
        np.testing.assert_allclose(block.sum(1), e_layer[:, j] / (e_layer[:, j] + 1e-16), rtol=1e-12)
    np.testing.assert_allclose(normed[:, -5:], np.log10(e_layer + 1e-8))
    with pytest.raises(CaloforgeError, match="mode"):
        voxel_inputs(showers, energies, "high")


def test_bad_inputs_raise_one_line_errors():
    with pytest.raises(DataError, match="expected shape"):
        compute_hlf(np.zeros((2, 100)), [1.0, 2.0], DS2)
    with pytest.raises(DataError, match="energies"):
        compute_hlf(np.zeros((2, DS2.n_voxels)), [1.0], DS2)
    with pytest.raises(DataError, match="official geometry"):
        voxel_inputs(np.zeros((2, 100)), [1.0, 2.0])
    with pytest.raises(CaloforgeError, match="missing"):
        hlf_vector({"E_inc": np.ones(2)})


def test_energies_are_summed_in_the_voxels_float_type_like_high_level_features():
    """E_tot and E_layer are HighLevelFeatures' float32 numpy sums of the thresholded float32 voxels, bit for bit;
    E_ratio is float32 / float32. (A float64 sum moves showers across the official E_layer edges.)"""
    rng = np.random.default_rng(7)
    x = (rng.gamma(0.3, 2.0, (40, DS2.n_voxels)) * (rng.random((40, DS2.n_voxels)) < 0.4)).astype(np.float32)
    e = (10 ** rng.uniform(3, 5, 40)).astype(np.float32)
    feats = compute_hlf(x, e, DS2)
    xt = np.where(x < DS2.threshold_mev, np.zeros_like(x), x)  # evaluate.py
    assert feats["E_layer"].dtype == np.float32
    for j, layer in enumerate(DS2.relevant_layers):
        sl = DS2.layer_slice(layer)
        np.testing.assert_array_equal(feats["E_layer"][:, j], xt[:, sl].sum(axis=-1))
    np.testing.assert_array_equal(feats["E_tot"], xt.sum(axis=-1))
    np.testing.assert_array_equal(feats["E_ratio"], xt.sum(axis=-1) / e)
