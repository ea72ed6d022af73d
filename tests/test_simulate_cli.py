"""`caloforge data make` / `data presets` and make_file: the written file is a valid caloforge/official file."""

from __future__ import annotations

import json

import h5py
import numpy as np

from caloforge.cli.main import main
from caloforge.data.geometry import Geometry
from caloforge.data.reader import ShowerFile
from caloforge.data.validate import validate_file
from caloforge.simulate.detectors import PRESETS
from caloforge.simulate.generate import generate, make_file


def test_data_make_writes_a_file_in_the_official_layout_that_validates(tmp_path):
    out = tmp_path / "siw.h5"
    rc = main(["data", "make", "--detector", "par04-siw", "--n", "2000", "--seed", "5", "--out", str(out),
               "--energy-range", "1:100"])
    assert rc == 0
    with h5py.File(out, "r") as f:
        assert f["incident_energies"].shape == (2000, 1) and f["showers"].shape == (2000, 6480)
        assert f["showers"].dtype == np.float32
        e = f["incident_energies"][:, 0]
        assert 1e3 <= e.min() and e.max() <= 1e5
        assert f.attrs["generator"] == "caloforge-gflash" and int(f.attrs["seed"]) == 5
        params = json.loads(f.attrs["detector_parameters"])
        assert params["name"] == "par04-siw" and params["derived"]["readout_scale"] > 30
        geo = Geometry.from_dict(json.loads(f.attrs["caloforge_geometry"]))
        assert geo.grid_shape == (45, 16, 9)
        # log-uniform: about half of the showers below sqrt(1 GeV * 100 GeV) = 10 GeV
        assert 0.45 < np.mean(e < 1e4) < 0.55
    report = validate_file(out)
    assert report.n == 2000 and report.n_voxels == 6480
    with ShowerFile(out) as f:
        batch = f.read(np.arange(3), with_extras=True)
        assert np.array_equal(batch.extras["detector_id"].reshape(-1), [0, 0, 0])
        # the showers in the file are exactly what generate() gives for the stored energies
        assert np.array_equal(batch.showers, generate("par04-siw", batch.energies, seed=5))


def test_make_file_is_independent_of_the_chunk_size_and_stores_angles(tmp_path):
    a = make_file("w-sci", 30, tmp_path / "a.h5", seed=1, chunk=7, theta_range=(1.0, 2.0), phi_range=(-3, 3))
    b = make_file("w-sci", 30, tmp_path / "b.h5", seed=1, chunk=1000, theta_range=(1.0, 2.0), phi_range=(-3, 3))
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        for key in ("incident_energies", "showers", "incident_theta", "detector_id"):
            assert np.array_equal(fa[key][:], fb[key][:])
        assert np.all((fa["incident_theta"][:] >= 1.0) & (fa["incident_theta"][:] <= 2.0))
        assert json.loads(fa.attrs["detector_names"])[int(fa["detector_id"][0, 0])] == "w-sci"
    validate_file(a)


def test_data_presets_lists_every_preset_on_one_line(capsys):
    assert main(["data", "presets"]) == 0
    from caloforge.simulate.ds1 import DS1_PRESETS

    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == len(PRESETS) + len(DS1_PRESETS)
    for line, spec in zip(lines, sorted(PRESETS.values(), key=lambda s: s.id)):
        assert line.startswith(spec.name) and f"id={spec.id}" in line and "X0=" in line and "R_M=" in line
    for line, name in zip(lines[len(PRESETS):], DS1_PRESETS):  # then the dataset-1 presets (irregular layers)
        assert line.startswith(name) and "DS1" in line


def test_unknown_detector_exits_2_with_one_line_listing_presets(tmp_path, capsys):
    rc = main(["data", "make", "--detector", "nope", "--n", "5", "--out", str(tmp_path / "x.h5")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "par04-siw" in err and "pbwo4" in err
    assert not list(tmp_path.iterdir())


def test_bad_energy_range_is_a_one_line_error(tmp_path, capsys):
    rc = main(["data", "make", "--detector", "pbwo4", "--n", "5", "--out", str(tmp_path / "x.h5"),
               "--energy-range", "100:1"])
    assert rc == 2 and "--energy-range" in capsys.readouterr().err
