"""`caloforge data convert`: LEMURS-layout files (r, phi, z) convert losslessly into the multi-detector schema."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from caloforge.cli.main import main
from caloforge.data.convert import flat_to_lemurs, lemurs_to_flat
from caloforge.data.reader import ShowerFile
from caloforge.data.writer import write_showers


def write_lemurs(path, n=50, seed=0, energy_scale=1.0, with_angles=True):
    """A small file in the LEMURS layout as its loaders read it."""
    rng = np.random.default_rng(seed)
    showers = rng.gamma(0.3, 2.0, (n, 9, 16, 45)).astype(np.float32)
    showers[showers < 0.5] = 0.0
    with h5py.File(path, "w") as f:
        f["showers"] = showers
        f["incident_energy"] = (np.exp(rng.uniform(np.log(1e3), np.log(1e6), n)) * energy_scale).astype(np.float32)
        if with_angles:
            f["incident_theta"] = rng.uniform(0.87, 2.27, n).astype(np.float32)
            f["incident_phi"] = rng.uniform(-np.pi, np.pi, n).astype(np.float32)
    return path


def test_lemurs_file_converts_losslessly_with_its_angles_and_detector_name(tmp_path):
    src = write_lemurs(tmp_path / "LEMURS_FCCeeCLD_gamma_100kEvents_1GeV1TeV_GPSflat_part1.h5")
    assert main(["data", "convert", str(src), "--out", str(tmp_path / "cld.h5"), "--cell-mm", "4.65:5.05"]) == 0
    with h5py.File(src, "r") as f:
        orig = {k: f[k][...] for k in f}
    with ShowerFile(tmp_path / "cld.h5") as f:
        b = f.read(np.arange(f.n), with_extras=True)
        assert f.attrs["detector_names"] == ["FCCeeCLD"] and f.geometry.grid_shape == (45, 16, 9)
        assert f.geometry.layer_depth_mm == 5.05
    assert np.array_equal(flat_to_lemurs(b.showers), orig["showers"])  # bit for bit
    assert np.array_equal(b.energies.astype(np.float32), orig["incident_energy"])
    assert np.array_equal(b.extras["incident_theta"], orig["incident_theta"])
    assert np.array_equal(b.extras["incident_phi"], orig["incident_phi"])
    assert np.all(b.extras["detector_id"] == 0)


def test_one_hot_voxel_lands_at_the_calochallenge_flat_index(tmp_path):
    s = np.zeros((1, 9, 16, 45), np.float32)
    s[0, 2, 5, 30] = 7.0  # r = 2, phi = 5, z = 30
    flat = lemurs_to_flat(s)
    assert np.flatnonzero(flat[0]).tolist() == [(30 * 16 + 5) * 9 + 2]


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 4), st.integers(1, 5), st.integers(1, 3), st.integers(1, 6))
def test_lemurs_order_round_trip_on_any_grid(n, r, a, z):
    x = np.random.default_rng(n * 100 + r).random((n, r, a, z)).astype(np.float32)
    assert np.array_equal(flat_to_lemurs(lemurs_to_flat(x), (r, a, z)), x)


def test_energies_below_one_gev_need_an_explicit_unit(tmp_path, capsys):
    src = write_lemurs(tmp_path / "LEMURS_ODD_gamma_x.h5", energy_scale=1e-3 * 0.999)  # looks like GeV
    out = tmp_path / "odd.h5"
    assert main(["data", "convert", str(src), "--out", str(out)]) == 2
    assert "pass --energy-unit GeV or MeV" in capsys.readouterr().err and not out.exists()
    assert main(["data", "convert", str(src), "--out", str(out), "--energy-unit", "GeV"]) == 0
    with h5py.File(src, "r") as f, ShowerFile(out) as g:
        np.testing.assert_allclose(g.energies(), f["incident_energy"][...] * 1e3, rtol=1e-6)
        assert g.attrs["energy_unit_assumed"] == "GeV"


def test_calochallenge_file_gains_detector_and_constant_angles(tmp_path):
    rng = np.random.default_rng(1)
    src = write_showers(tmp_path / "g4.h5", np.full(20, 5e3), rng.random((20, 6480)).astype(np.float32))
    out = tmp_path / "g4_conv.h5"
    assert main(["data", "convert", str(src), "--out", str(out), "--detector", "g4-par04", "--theta", "1.5707963",
                 "--phi", "0"]) == 0
    with ShowerFile(src) as f, ShowerFile(out) as g:
        assert g.attrs["detector_names"] == ["g4-par04"]
        b, c = f.read(np.arange(20)), g.read(np.arange(20), with_extras=True)
        assert np.array_equal(b.showers, c.showers)
        np.testing.assert_allclose(c.extras["incident_theta"], np.pi / 2, rtol=1e-6)
    assert main(["data", "convert", str(src), "--out", str(out), "--detector", "x"]) == 2  # exists: no --force


def test_unrecognised_layout_is_one_line(tmp_path, capsys):
    with h5py.File(tmp_path / "bad.h5", "w") as f:
        f["foo"] = np.zeros(3)
    assert main(["data", "convert", str(tmp_path / "bad.h5"), "--out", str(tmp_path / "o.h5")]) == 2
    err = capsys.readouterr().err.strip()
    assert "layout not recognised" in err and "\n" not in err


@pytest.mark.parametrize("bad", ["4.65", "a:b", "0:3"])
def test_bad_cell_sizes_are_refused(tmp_path, bad, capsys):
    src = write_lemurs(tmp_path / "LEMURS_ODD_x.h5", n=3)
    assert main(["data", "convert", str(src), "--out", str(tmp_path / "o.h5"), "--cell-mm", bad]) == 2
