"""Geometry: official binnings (voxel counts, DS1 layer table from the spec), flat order, coordinates."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from caloforge.data.geometry import Geometry
from caloforge.errors import DataError

OFFICIAL = {key: Geometry.official(key) for key in ("1-photons", "1-pions", "2", "3")}
GEOMETRIES = [*OFFICIAL.values(), Geometry.regular(3, 4, 5, 2.0), Geometry.regular(1, 1, 1, 1.0)]


@pytest.mark.parametrize("key, n_voxels", [("1-photons", 368), ("1-pions", 533), ("2", 6480), ("3", 40500)])
def test_official_binnings_have_the_official_voxel_counts(key, n_voxels):
    geo = OFFICIAL[key]
    assert geo.n_voxels == n_voxels
    assert Geometry.for_voxels(n_voxels) == geo


def test_for_voxels_returns_none_for_a_count_no_official_binning_has():
    assert Geometry.for_voxels(6400) is None


@pytest.mark.parametrize(
    "key, relevant, offsets, alpha_binned",
    [
        # spec section 2 tables: non-empty layer ids and their flat offsets
        ("1-photons", (0, 1, 2, 3, 12), (0, 8, 168, 358, 363), (1, 2)),
        ("1-pions", (0, 1, 2, 3, 12, 13, 14), (0, 8, 108, 208, 213, 363, 523), (1, 2, 12, 13)),
    ],
)
def test_ds1_layers_and_offsets_match_the_spec_table(key, relevant, offsets, alpha_binned):
    geo = OFFICIAL[key]
    assert geo.relevant_layers == relevant
    assert tuple(int(geo.layer_offsets[layer]) for layer in relevant) == offsets
    assert geo.alpha_binned_layers == alpha_binned
    assert not geo.is_regular
    with pytest.raises(DataError):
        _ = geo.grid_shape


def test_ds1_photon_layer_2_has_19_r_bins_and_10_alpha_bins():
    layer = OFFICIAL["1-photons"].layers[2]
    assert (layer.n_r, layer.n_alpha, layer.n_voxels) == (19, 10, 190)
    assert layer.r_edges[-1] == 400.0


@pytest.mark.parametrize("key, shape, per_layer", [("2", (45, 16, 9), 144), ("3", (45, 50, 18), 900)])
def test_ds2_ds3_are_regular_meshes_with_layer_l_at_offset_l_times_layer_size(key, shape, per_layer):
    geo = OFFICIAL[key]
    assert geo.is_regular and geo.grid_shape == shape
    np.testing.assert_array_equal(geo.layer_offsets, per_layer * np.arange(46))
    assert geo.layer_depth_mm == 3.4


def test_flat_order_is_r_fastest_then_alpha_then_layer():
    geo = OFFICIAL["2"]
    layer, alpha, r = np.meshgrid(np.arange(45), np.arange(16), np.arange(9), indexing="ij")
    flat = geo.flat_index(layer.ravel(), alpha.ravel(), r.ravel())
    np.testing.assert_array_equal(flat, (layer.ravel() * 16 + alpha.ravel()) * 9 + r.ravel())
    np.testing.assert_array_equal(flat, np.arange(6480))  # reshape(N, 45, 16, 9) convention


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(GEOMETRIES), st.data())
def test_unravel_inverts_flat_index(geo, data):
    flat = data.draw(st.lists(st.integers(0, geo.n_voxels - 1), min_size=1, max_size=20))
    layer, alpha, r = geo.unravel(flat)
    np.testing.assert_array_equal(geo.flat_index(layer, alpha, r), flat)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(GEOMETRIES), st.data())
def test_flat_index_inverts_unravel(geo, data):
    layer = data.draw(st.sampled_from(geo.relevant_layers))
    ly = geo.layers[layer]
    alpha, r = data.draw(st.integers(0, ly.n_alpha - 1)), data.draw(st.integers(0, ly.n_r - 1))
    flat = geo.flat_index(layer, alpha, r)
    assert tuple(int(v) for v in geo.unravel(flat)) == (layer, alpha, r)
    assert geo.voxel_layer[flat] == layer


def test_out_of_range_bins_raise_index_error():
    geo = OFFICIAL["2"]
    with pytest.raises(IndexError):
        geo.flat_index(0, 16, 0)
    with pytest.raises(IndexError):
        geo.unravel(6480)


def test_coordinates_follow_the_official_xml_handler():
    geo = OFFICIAL["2"]
    first = geo.flat_index(0, 0, 0)
    assert geo.voxel_r[first] == pytest.approx(4.65 / 2)
    assert geo.voxel_alpha[first] == pytest.approx(-np.pi + np.pi / 16)
    v = geo.flat_index(7, 5, 3)
    alpha = -np.pi + (5 + 0.5) * 2 * np.pi / 16
    assert geo.voxel_r[v] == pytest.approx(3.5 * 4.65)
    assert geo.voxel_x[v] == pytest.approx(3.5 * 4.65 * np.cos(alpha))
    assert geo.voxel_y[v] == pytest.approx(3.5 * 4.65 * np.sin(alpha))


@pytest.mark.parametrize("geo", GEOMETRIES, ids=lambda g: g.name)
def test_voxel_areas_of_a_layer_tile_its_disc(geo):
    for layer in geo.relevant_layers:
        outer = geo.layers[layer].r_edges[-1]
        assert geo.voxel_area_mm2[geo.layer_slice(layer)].sum() == pytest.approx(np.pi * outer**2)


@pytest.mark.parametrize("geo", GEOMETRIES, ids=lambda g: g.name)
def test_to_dict_from_dict_round_trips(geo):
    assert Geometry.from_dict(geo.to_dict()) == geo


def test_official_thresholds_are_the_evaluate_py_values():
    assert OFFICIAL["1-photons"].threshold_mev == 1.0
    assert OFFICIAL["2"].threshold_mev == pytest.approx(0.5e-3 / 0.033)


@pytest.mark.parametrize("bad", [{"n_z": 0, "n_alpha": 1, "n_r": 1, "dr_mm": 1.0}, {"n_z": 1, "n_alpha": 1, "n_r": 1, "dr_mm": 0.0}])
def test_regular_rejects_non_positive_sizes(bad):
    with pytest.raises(DataError):
        Geometry.regular(**bad)


def test_unknown_official_name_is_a_data_error():
    with pytest.raises(DataError, match="expected one of"):
        Geometry.official("4")
