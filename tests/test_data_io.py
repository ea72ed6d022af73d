"""Reader / writer / validate / summary / split as Python APIs (the CLI is in test_data_cli.py)."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from conftest import write_raw_h5
from hypothesis import given, settings
from hypothesis import strategies as st

from caloforge.data import schema
from caloforge.data.geometry import Geometry
from caloforge.data.reader import ShowerFile
from caloforge.data.split import split_assignment, split_file, split_sizes
from caloforge.data.summary import format_summary, sparkline, summarize
from caloforge.data.validate import validate_file
from caloforge.data.writer import ShowerWriter, write_showers
from caloforge.errors import CaloforgeError, ConfigError, DataError

MESH = Geometry.regular(2, 3, 4, 1.5, name="mesh-2x3x4")  # 24 voxels


def _random_showers(rng, n, v, occupancy=0.3):
    return (rng.exponential(1.0, (n, v)) * (rng.random((n, v)) < occupancy)).astype(np.float32)


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# ---- write -> read round trip --------------------------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 40), v=st.integers(1, 30), seed=st.integers(0, 2**16), batch=st.integers(1, 17))
def test_write_then_read_round_trips_values_and_batches_cover_every_row_once(tmp_path_factory, n, v, seed, batch):
    rng = np.random.default_rng(seed)
    e = rng.uniform(1e3, 1e5, n)
    s = _random_showers(rng, n, v)
    path = write_showers(tmp_path_factory.mktemp("rt") / "f.h5", e, s)
    with ShowerFile(path) as f:
        assert (f.n, f.n_voxels, f.extras) == (n, v, ())
        np.testing.assert_allclose(f.energies(), e.astype(np.float32))
        batches = list(f.iter_batches(batch))
        assert all(len(b) <= batch for b in batches)
        np.testing.assert_array_equal(np.concatenate([b.index for b in batches]), np.arange(n))
        np.testing.assert_array_equal(np.concatenate([b.showers for b in batches]), s)
        assert batches[0].showers.dtype == np.float32 and batches[0].energies.dtype == np.float64


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), data=st.data())
def test_read_returns_rows_in_the_requested_order_including_repeats(tmp_path_factory, seed, data):
    rng = np.random.default_rng(seed)
    n = data.draw(st.integers(1, 50))
    e, s = rng.uniform(1e3, 1e5, n), _random_showers(rng, n, 24)
    phi = rng.uniform(-np.pi, np.pi, n)
    path = write_showers(tmp_path_factory.mktemp("ri") / "f.h5", e, s, extras={"incident_phi": phi}, geometry=MESH)
    idx = data.draw(st.lists(st.integers(0, n - 1), min_size=0, max_size=30))
    with ShowerFile(path) as f:
        batch = f.read(idx, with_extras=True)
    np.testing.assert_array_equal(batch.index, idx)
    np.testing.assert_array_equal(batch.showers, s[idx])
    np.testing.assert_allclose(batch.energies, e.astype(np.float32)[idx])
    np.testing.assert_allclose(batch.extras["incident_phi"], phi.astype(np.float32)[idx])


def test_in_memory_file_gives_the_same_batches_as_streaming(tiny_ds2_file):
    with ShowerFile(tiny_ds2_file) as streamed, ShowerFile(tiny_ds2_file, in_memory=True) as loaded:
        for a, b in zip(streamed.iter_batches(10), loaded.iter_batches(10)):
            np.testing.assert_array_equal(a.showers, b.showers)
        np.testing.assert_array_equal(streamed.read([5, 1, 5]).showers, loaded.read([5, 1, 5]).showers)


def test_in_memory_refuses_a_file_over_the_budget(tiny_ds2_file):
    with pytest.raises(DataError, match="in_memory"):
        ShowerFile(tiny_ds2_file, in_memory=True, memory_budget=1000)


def test_batches_end_on_hdf5_chunk_boundaries(tmp_path):
    rng = np.random.default_rng(1)
    path = write_showers(tmp_path / "c.h5", rng.uniform(1, 2, 500), _random_showers(rng, 500, 6480))
    with ShowerFile(path) as f:
        chunk = f.chunk_rows
        assert chunk and 1 < chunk < 500
        bounds = [int(b.index[-1]) + 1 for b in f.iter_batches(3 * chunk + 5, start=7)]
    assert all(b % chunk == 0 for b in bounds[:-1]) and bounds[-1] == 500


def test_multi_detector_extras_and_attributes_round_trip(tmp_path):
    rng = np.random.default_rng(2)
    n = 12
    extras = {"incident_phi": rng.uniform(-3, 3, n), "incident_theta": rng.uniform(0, 1, n),
              "detector_id": rng.integers(0, 2, n)}
    path = write_showers(tmp_path / "m.h5", rng.uniform(1e3, 2e3, n), _random_showers(rng, n, 24), extras=extras,
                         attrs={"detector_names": ["SiW", "PbWO4"], "note": "x"}, geometry=MESH)
    with h5py.File(path) as raw:  # the official layout: (N, 1) energies, float32, gzip
        assert raw["incident_energies"].shape == (n, 1) and raw["showers"].dtype == np.float32
        assert raw["showers"].compression == "gzip" and raw["detector_id"].shape == (n, 1)
    with ShowerFile(path) as f:
        assert f.extras == ("incident_phi", "incident_theta", "detector_id")
        assert f.geometry == MESH  # recovered from the caloforge_geometry attribute
        assert f.attrs["detector_names"] == ["SiW", "PbWO4"] and f.attrs["note"] == "x"
        np.testing.assert_array_equal(f.extra("detector_id"), extras["detector_id"])
    summary = summarize(path)
    assert sum(summary["extras"]["detector_id"]["counts"].values()) == n


# ---- writer: atomic, validating -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "energies, showers, match",
    [
        # rows are file rows: 3 good rows come first
        ([1.0, np.nan], np.ones((2, 24)), "incident_energies': row 4: .* found nan"),
        ([1.0, -5.0], np.ones((2, 24)), "incident_energies': row 4: .* found -5.0"),
        ([1.0, 2.0], np.array([[0.0] * 23 + [np.inf]] * 2), "showers': row 3, voxel 23: .* found inf"),
        ([1.0, 2.0], -np.ones((2, 24)), "showers': row 3, voxel 0"),
        ([1.0, 2.0], np.ones((2, 23)), r"expected shape \(2, 24\)"),
    ],
)
def test_writer_rejects_bad_values_and_leaves_no_file(tmp_path, energies, showers, match):
    out = tmp_path / "bad.h5"
    with pytest.raises(DataError, match=match), ShowerWriter(out, 24, geometry=MESH) as w:
        w.append(np.ones(3), np.ones((3, 24)))
        w.append(energies, showers)
    assert not out.exists() and _leftovers(tmp_path) == []


def test_writer_reports_rows_counted_from_the_start_of_the_file(tmp_path):
    with pytest.raises(DataError, match="row 4, voxel 2"), ShowerWriter(tmp_path / "r.h5", 3) as w:
        w.append(np.ones(3), np.ones((3, 3)))
        w.append(np.ones(2), np.array([[1, 1, 1], [1, 1, np.nan]]))


def test_writer_output_appears_only_on_close(tmp_path):
    out = tmp_path / "late.h5"
    w = ShowerWriter(out, 4, expected_n=2)
    w.append(np.ones(2), np.ones((2, 4)))
    assert not out.exists() and w.tmp_path.exists()
    w.close()
    assert out.exists() and not w.tmp_path.exists()


def test_writer_with_fewer_rows_than_expected_leaves_no_file(tmp_path):
    with pytest.raises(DataError, match="expected 5 showers"), ShowerWriter(tmp_path / "short.h5", 4, expected_n=5) as w:
        w.append(np.ones(2), np.ones((2, 4)))
    assert list(tmp_path.iterdir()) == []


def test_writer_into_a_missing_directory_names_the_path(tmp_path):
    with pytest.raises(CaloforgeError, match="does not exist"):
        write_showers(tmp_path / "nope" / "x.h5", np.ones(1), np.ones((1, 4)))


def test_detector_id_outside_detector_names_is_rejected(tmp_path):
    with pytest.raises(DataError, match=r"detector_id': row 1: expected an id in \[0, 2\)"):
        write_showers(tmp_path / "d.h5", np.ones(2), np.ones((2, 4)), extras={"detector_id": np.array([1, 2])},
                      attrs={"detector_names": ["a", "b"]})


def test_writer_refuses_a_geometry_with_another_voxel_count(tmp_path):
    with pytest.raises(DataError, match="expected 6480 voxels"):
        ShowerWriter(tmp_path / "g.h5", 100, geometry=Geometry.official("2"))


# ---- reader: layout checks -------------------------------------------------------------------------------------
def test_given_geometry_wins_and_a_mismatch_names_the_geometry(tiny_ds2_file):
    with pytest.raises(DataError, match=r"expected 368 voxels per shower \(geometry calochallenge-1-photons"):
        ShowerFile(tiny_ds2_file, geometry="1-photons")
    with ShowerFile(tiny_ds2_file) as f:
        assert f.geometry.name == "calochallenge-2"


def test_unknown_voxel_count_opens_without_geometry(tmp_path):
    path = write_raw_h5(tmp_path / "odd.h5", np.ones(3), np.ones((3, 7)))
    with ShowerFile(path) as f:
        assert f.geometry is None and f.n_voxels == 7
    assert summarize(path, require_known_geometry=False)["longitudinal_profile_mev"] is None


def test_energies_of_shape_n_are_refused_with_the_expected_shape(tmp_path):
    path = tmp_path / "flat.h5"
    with h5py.File(path, "w") as f:
        f["incident_energies"] = np.ones(3, np.float32)
        f["showers"] = np.ones((3, 6480), np.float32)
    with pytest.raises(DataError, match=r"expected shape \(N, 1\), found \(3,\)"):
        ShowerFile(path)


def test_integer_showers_are_refused(tmp_path):
    path = tmp_path / "int.h5"
    with h5py.File(path, "w") as f:
        f["incident_energies"] = np.ones((3, 1), np.float32)
        f["showers"] = np.ones((3, 6480), np.int32)
    with pytest.raises(DataError, match="expected a float dtype, found int32"):
        ShowerFile(path)


# ---- validate and summary ------------------------------------------------------------------------------------
def test_validate_names_the_first_bad_row_deep_in_the_file(tmp_path):
    rng = np.random.default_rng(3)
    s = _random_showers(rng, 300, 24)
    s[211, 5] = np.nan
    path = write_raw_h5(tmp_path / "nan.h5", rng.uniform(1, 2, 300), s)
    with pytest.raises(DataError, match=r"nan.h5: dataset 'showers': row 211, voxel 5: .* found nan"):
        validate_file(path, batch_size=64, require_known_geometry=False)


def test_validate_reports_what_it_read(tiny_ds2_file):
    report = validate_file(tiny_ds2_file, batch_size=16)
    assert (report.n, report.n_voxels, report.geometry) == (64, 6480, "calochallenge-2")
    with h5py.File(tiny_ds2_file) as f:
        assert report.max_voxel_mev == pytest.approx(float(f["showers"][:].max()))


def test_summary_matches_a_direct_numpy_computation(tiny_ds2_file):
    geo = Geometry.official("2")
    with h5py.File(tiny_ds2_file) as f:
        e, s = f["incident_energies"][:, 0].astype(np.float64), f["showers"][:].astype(np.float64)
    thr = 0.5
    kept = np.where(s >= thr, s, 0.0)
    d = summarize(tiny_ds2_file, threshold=thr, batch_size=10)
    assert d["n_showers"] == 64 and d["threshold_mev"] == thr
    assert d["response_mean"] == pytest.approx(np.mean(kept.sum(1) / e), rel=1e-6)
    assert d["fraction_above_threshold"] == pytest.approx(np.mean(s >= thr))
    grid = kept.reshape(64, *geo.grid_shape)
    np.testing.assert_allclose(d["longitudinal_profile_mev"], grid.sum((2, 3)).mean(0), rtol=1e-5)
    np.testing.assert_allclose(d["radial_profile_mev"], grid.sum((1, 2)).mean(0), rtol=1e-5)
    assert d["incident_energy_gev"]["median"] == pytest.approx(np.median(e) / 1e3, rel=1e-6)
    text = format_summary(d, ascii_only=True)
    assert "64 x 6480 voxels" in text and "radial" in text


def test_summary_of_an_irregular_geometry_profiles_its_relevant_layers(tmp_path):
    rng = np.random.default_rng(4)
    geo = Geometry.official("1-photons")
    s = _random_showers(rng, 20, 368) * 10
    path = write_showers(tmp_path / "ds1.h5", rng.uniform(1e3, 1e4, 20), s)
    d = summarize(path)
    kept = np.where(s >= 1.0, s, 0).astype(np.float64)
    expected = [kept[:, geo.layer_slice(layer)].sum(1).mean() for layer in geo.relevant_layers]
    np.testing.assert_allclose([d["longitudinal_profile_mev"][i] for i in geo.relevant_layers], expected, rtol=1e-5)
    assert d["radial_profile_mev"] is None


def test_sparkline_scales_to_the_maximum():
    assert sparkline([0, 1, 7]) == "▁▂█"  # value k of max 7 -> mark k
    assert sparkline([0, 0], ascii_only=True) == ".."


# ---- split ----------------------------------------------------------------------------------------------------
def test_split_parts_are_disjoint_cover_the_source_and_hold_the_fractions(tmp_path):
    rng = np.random.default_rng(5)
    n = 203
    e = rng.uniform(1e3, 1e5, n)
    s = _random_showers(rng, n, 24)
    s[:, 0] = np.arange(n) + 1  # a row id carried in the data
    theta = rng.uniform(0, 1, n).astype(np.float32)
    src = write_showers(tmp_path / "src.h5", e, s, extras={"incident_theta": theta}, geometry=MESH)
    parts = split_file(src, tmp_path / "out", fractions=(0.7, 0.2, 0.1), seed=3, batch_size=50)
    assert [p.name for p in parts.values()] == ["src_train.h5", "src_val.h5", "src_test.h5"]
    ids = {}
    for name, path in parts.items():
        with ShowerFile(path) as f:
            rows = np.concatenate([b.showers[:, 0] for b in f.iter_batches(1000)]).astype(int) - 1
            np.testing.assert_array_equal(f.read(np.arange(f.n)).showers, s[rows])
            np.testing.assert_array_equal(f.extra("incident_theta"), theta[rows])
            assert f.attrs[schema.ATTR_SPLIT]["part"] == name and f.attrs[schema.ATTR_SPLIT]["seed"] == 3
            assert f.geometry == MESH
        ids[name] = rows
    assert [len(r) for r in ids.values()] == [142, 41, 20]  # 0.7, 0.2, 0.1 of 203, largest remainder
    union = np.concatenate(list(ids.values()))
    assert len(np.unique(union)) == n and set(union) == set(range(n))


def test_split_with_the_same_seed_is_the_same_and_another_seed_differs():
    a, b, c = split_assignment(1000, (0.8, 0.1, 0.1), 7), split_assignment(1000, (0.8, 0.1, 0.1), 7), \
        split_assignment(1000, (0.8, 0.1, 0.1), 8)
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()
    assert np.bincount(a).tolist() == [800, 100, 100]


@settings(max_examples=50, deadline=None)
@given(n=st.integers(0, 10_000), cut=st.floats(0.05, 0.9))
def test_split_sizes_sum_to_n_and_stay_within_one_of_the_fraction(n, cut):
    fr = (cut, (1 - cut) / 2, (1 - cut) / 2)
    sizes = split_sizes(n, fr)
    assert sum(sizes) == n and all(abs(k - n * f) < 1 for k, f in zip(sizes, fr))


@pytest.mark.parametrize("fractions", [(0.5, 0.6), (1.0,), (0.5, -0.1, 0.6), (0.2, 0.2, 0.2, 0.4)])
def test_bad_fractions_are_a_config_error(fractions):
    with pytest.raises(ConfigError, match="fractions"):
        split_sizes(10, fractions)


def test_split_of_a_file_with_a_bad_row_leaves_no_part(tmp_path):
    rng = np.random.default_rng(6)
    s = _random_showers(rng, 400, 24)
    s[390, 1] = -1.0
    src = write_raw_h5(tmp_path / "bad.h5", rng.uniform(1, 2, 400), s)
    out = tmp_path / "out"
    with pytest.raises(DataError, match="bad.h5: dataset 'showers': row 390, voxel 1"):
        split_file(src, out, batch_size=64)
    assert list(out.iterdir()) == []


def test_split_refuses_to_overwrite_its_source(tmp_path, tiny_ds2_file):
    with pytest.raises(ConfigError, match="differ"):
        split_file(tiny_ds2_file, out_paths={"train": tiny_ds2_file, "val": tmp_path / "v.h5",
                                             "test": tmp_path / "t.h5"})


def test_an_extra_with_another_length_is_refused(tmp_path):
    path = write_raw_h5(tmp_path / "x.h5", np.ones(4), np.ones((4, 24)))
    with h5py.File(path, "a") as f:
        f["incident_phi"] = np.zeros((3, 1), np.float32)
    with pytest.raises(DataError, match="dataset 'incident_phi': expected 4 rows"):
        ShowerFile(path)


def test_a_nan_angle_is_caught_by_validate(tmp_path):
    phi = np.zeros(5)
    phi[2] = np.nan
    path = write_raw_h5(tmp_path / "x.h5", np.ones(5), np.ones((5, 24)))
    with h5py.File(path, "a") as f:
        f["incident_phi"] = phi.reshape(-1, 1)
    with pytest.raises(DataError, match="dataset 'incident_phi': row 2: expected a finite value, found nan"):
        validate_file(path, require_known_geometry=False)
