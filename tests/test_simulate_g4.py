"""`caloforge simulate` (Geant4 back-end): a valid file with physical showers, and exact resume after a kill.

The Geant4 tests need geant4-pybind (extra [sim]); they are skipped, with that reason, only where it is absent.
The offline stand-in tables are built once per session into a temporary cache (CALOFORGE_G4DATA).
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from caloforge.cli.main import main
from caloforge.data.reader import ShowerFile
from caloforge.data.validate import validate_file
from caloforge.simulate.detectors import PRESETS

needs_g4 = pytest.mark.skipif(importlib.util.find_spec("geant4_pybind") is None,
                              reason="geant4-pybind is not installed (pip install 'caloforge[sim]')")


@pytest.fixture(scope="module")
def g4cache(tmp_path_factory):
    old = os.environ.get("CALOFORGE_G4DATA")
    os.environ["CALOFORGE_G4DATA"] = str(tmp_path_factory.mktemp("g4data"))
    yield os.environ["CALOFORGE_G4DATA"]
    if old is None:
        os.environ.pop("CALOFORGE_G4DATA", None)
    else:
        os.environ["CALOFORGE_G4DATA"] = old


@needs_g4
@pytest.mark.slow
def test_par04_siw_showers_make_a_valid_file_with_physical_sampling_fraction_and_depth(tmp_path, g4cache):
    out = tmp_path / "g4.h5"
    rc = main(["simulate", "--detector", "par04-siw", "--particle", "e-", "--energy", "1:10", "--n", "20",
               "--seed", "7", "--chunk", "10", "--out", str(out)])
    assert rc == 0 and out.exists() and not (tmp_path / "g4.h5.partial").exists()
    report = validate_file(out)  # the project's validator reads every value
    assert report.n == 20 and report.n_voxels == 6480
    spec = PRESETS["par04-siw"]
    with ShowerFile(out) as f:
        batch = f.read(np.arange(20), with_extras=True)
        assert np.all(batch.extras["detector_id"] == spec.id)
        assert np.allclose(batch.extras["incident_theta"], np.pi / 2)
    e = batch.energies.reshape(-1)
    assert 1e3 <= e.min() and e.max() <= 1e4
    with h5py.File(out, "r") as f:
        assert f.attrs["generator"] == "caloforge-geant4" and "geant4-11" in f.attrs["geant4_version"]
        assert "option1" in f.attrs["physics"] and float(f.attrs["production_cut_mm"]) == 0.7
        assert "stand-in" in f.attrs["offline_tables"] or "installed" in f.attrs["offline_tables"]
    # Sampling fraction: Si deposit / incident energy; Geant4 option 1 gives ~2.4 % for 1.4 mm W / 0.3 mm Si.
    fraction = batch.showers.sum(1) / spec.readout_scale / e
    assert 0.017 < fraction.mean() < 0.032 and fraction.min() > 0.008
    # Shower maximum: textbook t_max = ln(E/Ec) - 0.5 X0 is 3.3-5.6 X0 at 1-10 GeV in this medium.
    layers = batch.showers.reshape(20, 45, 16, 9).sum((2, 3))
    t_max = (layers.argmax(1) + 0.5) * spec.mesh.dz_mm / spec.medium.x0_mm
    assert 2.0 < np.median(t_max) < 8.0
    assert layers[:, 30:].sum() < 0.02 * layers.sum()  # contained: < 2 % beyond 24 X0


def _cli(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "caloforge.cli.main", "simulate", "--detector", "par04-siw", "--energy", "1",
            "--n", "8", "--chunk", "2", "--seed", "11", "--out", str(out), *extra]


@needs_g4
@pytest.mark.slow
def test_a_killed_run_resumes_to_the_same_showers(tmp_path, g4cache):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parents[1] / "src"),
                                                                      os.environ.get("PYTHONPATH")]))}
    whole, resumed = tmp_path / "whole.h5", tmp_path / "resumed.h5"
    subprocess.run(_cli(whole), env=env, check=True, stdin=subprocess.DEVNULL, capture_output=True)
    partial = tmp_path / "resumed.h5.partial"
    proc = subprocess.Popen(_cli(resumed), env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(partial.glob("chunk-*.npy"))) < 1 and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the CLI and its Geant4 workers (its own session)
    proc.wait()
    done = sorted(partial.glob("chunk-*.npy"))
    assert not resumed.exists() and 1 <= len(done) < 4, "the kill must land between the first and the last chunk"
    again = subprocess.run(_cli(resumed), env=env, check=True, stdin=subprocess.DEVNULL, capture_output=True,
                           text=True)
    assert f"resuming: {len(done)} of 4 chunks" in again.stderr  # finished chunks are reused, not recomputed
    assert not partial.exists()
    with h5py.File(whole, "r") as a, h5py.File(resumed, "r") as b:
        assert np.array_equal(a["incident_energies"][:], b["incident_energies"][:])
        assert np.array_equal(a["showers"][:], b["showers"][:])
        assert a["showers"][:].sum() > 0


def test_a_partial_folder_of_another_request_is_refused(tmp_path, g4cache):
    from caloforge.errors import CaloforgeError
    from caloforge.simulate.g4run import _open_partial

    partial = tmp_path / "x.h5.partial"
    _open_partial(partial, {"seed": 1, "n_total": 4}, force=False)
    _open_partial(partial, {"seed": 1, "n_total": 4}, force=False)  # same request: reused
    with pytest.raises(CaloforgeError, match="seed"):
        _open_partial(partial, {"seed": 2, "n_total": 4}, force=False)
    _open_partial(partial, {"seed": 2, "n_total": 4}, force=True)
    assert '"seed": 2' in (partial / "run.json").read_text()
