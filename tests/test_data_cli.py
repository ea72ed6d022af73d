"""`caloforge data validate|inspect|split`: success on real Geant4 data; one clean line for every kind of bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest
from conftest import write_raw_h5

from caloforge.cli.main import main
from caloforge.data.geometry import Geometry
from caloforge.data.reader import ShowerFile


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _assert_one_line_error(code, out, err, *fragments):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("caloforge: error: ") and "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0]


# ---- the shared Geant4 file --------------------------------------------------------------------------------------
def test_geant4_file_passes_validate(capsys, g4_file):
    code, out, err = _run(capsys, "data", "validate", str(g4_file))
    assert code == 0 and err == ""
    assert "OK: 8500 showers x 6480 voxels (calochallenge-2)" in out


def test_geant4_file_inspect_prints_its_summary(capsys, g4_file):
    code, out, _ = _run(capsys, "data", "inspect", str(g4_file))
    assert code == 0
    for label in ("8500 x 6480 voxels", "calochallenge-2", "E_dep/E_inc", "longitudinal", "radial", "attr particle"):
        assert label in out
    code, out, _ = _run(capsys, "data", "inspect", str(g4_file), "--json")
    d = json.loads(out)
    # the data README measures E_tot/E_inc of about 0.72 after the 1/0.033 scaling, energies 1-100 GeV
    assert 0.65 < d["response_mean"] < 0.8
    assert 1.0 <= d["incident_energy_gev"]["min"] < d["incident_energy_gev"]["max"] <= 100.0
    assert len(d["longitudinal_profile_mev"]) == 45 and len(d["radial_profile_mev"]) == 9


def test_inspect_via_the_installed_entry_point_prints_no_traceback(tiny_ds2_file, tmp_path):
    ok = subprocess.run([sys.executable, "-m", "caloforge.cli.main", "data", "inspect", str(tiny_ds2_file)],
                        capture_output=True, text=True, check=False)
    assert ok.returncode == 0 and "64 x 6480 voxels" in ok.stdout
    bad = tmp_path / "bad.h5"
    bad.write_text("not hdf5")
    fail = subprocess.run([sys.executable, "-m", "caloforge.cli.main", "data", "inspect", str(bad)],
                          capture_output=True, text=True, check=False)
    assert fail.returncode == 2 and fail.stdout == ""
    assert fail.stderr.strip().splitlines() == [f"caloforge: error: {bad}: not an HDF5 file (no HDF5 signature found)"]


# ---- bad inputs: one line each, exit 2 ----------------------------------------------------------------------------
def _good(n=20, v=6480, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(1e3, 1e5, n), rng.exponential(1.0, (n, v)) * (rng.random((n, v)) < 0.1)


def _file_missing_dataset(path):
    with h5py.File(path, "w") as f:
        f["incident_energies"] = _good()[0].reshape(-1, 1)


def _file_wrong_voxels(path):
    e, s = _good(v=6400)
    with h5py.File(path, "w") as f:
        f["incident_energies"] = e.reshape(-1, 1)
        f["showers"] = s
        f.attrs["caloforge_geometry"] = json.dumps(Geometry.official("2").to_dict())


def _file_mismatched_lengths(path):
    e, s = _good()
    with h5py.File(path, "w") as f:
        f["incident_energies"] = e[:-1].reshape(-1, 1)
        f["showers"] = s


def _with(values):
    def make(path):
        e, s = _good(n=300)
        values(e, s)
        write_raw_h5(path, e, s)
    return make


def _file_wrong_rank_showers(path):
    e, s = _good()
    with h5py.File(path, "w") as f:
        f["incident_energies"] = e.reshape(-1, 1)
        f["showers"] = s.reshape(20, 45, 144)


def _file_flat_energies(path):
    e, s = _good()
    with h5py.File(path, "w") as f:
        f["incident_energies"] = e
        f["showers"] = s


def _file_truncated(path):
    e, s = _good(n=200)
    write_raw_h5(path, e, s)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _file_not_hdf5(path):
    path.write_text("incident_energies,showers\n1,2\n")


BAD_FILES = {
    "missing-dataset": (_file_missing_dataset, "dataset 'showers' is missing"),
    "wrong-voxel-count": (_file_wrong_voxels, "expected 6480 voxels per shower (geometry calochallenge-2"),
    "mismatched-lengths": (_file_mismatched_lengths, "expected 20 rows"),
    "nan-deposit": (_with(lambda e, s: s.__setitem__((250, 17), np.nan)), "row 250, voxel 17"),
    "inf-energy": (_with(lambda e, s: e.__setitem__(299, np.inf)), "'incident_energies': row 299"),
    "negative-energy": (_with(lambda e, s: e.__setitem__(3, -1.0)), "row 3: expected a finite energy > 0 MeV"),
    "negative-deposit": (_with(lambda e, s: s.__setitem__((7, 0), -0.5)), "row 7, voxel 0: expected a finite deposit"),
    "wrong-rank": (_file_wrong_rank_showers, "expected shape (N, n_voxels), found (20, 45, 144)"),
    "flat-energies": (_file_flat_energies, "expected shape (N, 1), found (20,)"),
    "truncated": (_file_truncated, "truncated or corrupt"),
    "not-hdf5": (_file_not_hdf5, "not an HDF5 file"),
}


@pytest.mark.parametrize("action", ["validate", "split"])
@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_file_gives_one_line_exit_2_and_no_output(capsys, tmp_path, case, action):
    make, fragment = BAD_FILES[case]
    path = tmp_path / f"{case}.h5"
    make(path)
    out_dir = tmp_path / "parts"
    argv = ["data", action, str(path)] + (["--out", str(out_dir)] if action == "split" else [])
    code, out, err = _run(capsys, *argv)
    _assert_one_line_error(code, out, err, str(path), fragment)
    assert out == ""
    if action == "split":  # all parts or none, and no temporary files
        layout_problem = case not in ("nan-deposit", "inf-energy", "negative-energy", "negative-deposit")
        assert not out_dir.exists() if layout_problem else list(out_dir.iterdir()) == []


@pytest.mark.parametrize("case", ["missing-dataset", "truncated", "not-hdf5", "wrong-rank"])
def test_inspect_of_a_bad_file_gives_one_line(capsys, tmp_path, case):
    make, fragment = BAD_FILES[case]
    make(tmp_path / "x.h5")
    _assert_one_line_error(*_run(capsys, "data", "inspect", str(tmp_path / "x.h5")), fragment)


def test_missing_file_gives_one_line(capsys, tmp_path):
    _assert_one_line_error(*_run(capsys, "data", "validate", str(tmp_path / "nope.h5")), "file not found")


def test_geometry_option_that_disagrees_with_the_file_gives_one_line(capsys, tiny_ds2_file):
    code, out, err = _run(capsys, "data", "validate", str(tiny_ds2_file), "--geometry", "1-pions")
    _assert_one_line_error(code, out, err, "expected 533 voxels per shower (geometry calochallenge-1-pions")


def test_split_into_a_path_under_a_regular_file_gives_one_line(capsys, tmp_path, tiny_ds2_file):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    code, out, err = _run(capsys, "data", "split", str(tiny_ds2_file), "--out", str(blocker / "parts"))
    _assert_one_line_error(code, out, err, str(blocker / "parts"), "cannot create the output directory")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "tiny_ds2.h5"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_split_into_a_read_only_directory_gives_one_line(capsys, tmp_path, tiny_ds2_file):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        code, out, err = _run(capsys, "data", "split", str(tiny_ds2_file), "--out", str(ro))
        _assert_one_line_error(code, out, err, "cannot write the output file")
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o700)


@pytest.mark.parametrize("fractions", ["0.5,0.6,0.1", "0.5,abc", "1.0", "0.9,0.1,0.0"])
def test_bad_fractions_are_refused_with_one_line(capsys, tmp_path, tiny_ds2_file, fractions):
    code, out, err = _run(capsys, "data", "split", str(tiny_ds2_file), "--out", str(tmp_path / "o"),
                          "--fractions", fractions)
    _assert_one_line_error(code, out, err, "fractions")
    assert not (tmp_path / "o").exists()


# ---- split through the CLI ---------------------------------------------------------------------------------------
def test_split_writes_three_named_parts_and_the_same_seed_repeats_them(capsys, tmp_path, tiny_ds2_file):
    def parts(out):
        code, stdout, _ = _run(capsys, "data", "split", str(tiny_ds2_file), "--out", str(out), "--seed", "11")
        assert code == 0 and stdout.count("\n") == 3
        rows = {}
        for name in ("train", "val", "test"):
            with ShowerFile(out / f"tiny_ds2_{name}.h5") as f:
                rows[name] = f.read(np.arange(f.n)).showers
        return rows

    a, b = parts(tmp_path / "a"), parts(tmp_path / "b")
    assert [len(a[k]) for k in a] == [51, 7, 6]  # 0.8/0.1/0.1 of 64 with largest-remainder rounding
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["tiny_ds2_test.h5", "tiny_ds2_train.h5",
                                                                    "tiny_ds2_val.h5"]
