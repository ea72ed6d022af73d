"""Shared test fixtures: where the project's shared Geant4 data lives, and tiny shower files in the official layout."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
G4_FILE = SHARED / "data" / "g4_par04_ds2_electrons_1-100GeV_A.h5"


@pytest.fixture(scope="session")
def g4_file() -> Path:
    """The shared Geant4 DS2-mesh electron file (read-only; never copied into the repository)."""
    if not G4_FILE.exists():
        pytest.skip(f"shared Geant4 data not found at {G4_FILE}")
    return G4_FILE


def write_raw_h5(path: Path, energies: np.ndarray, showers: np.ndarray) -> Path:
    """Write a file in the official layout with plain h5py (independent of caloforge's own writer)."""
    with h5py.File(path, "w") as f:
        f.create_dataset("incident_energies", data=np.asarray(energies, np.float32).reshape(-1, 1))
        f.create_dataset("showers", data=np.asarray(showers, np.float32).reshape(len(showers), -1))
    return path


@pytest.fixture
def tiny_ds2_file(tmp_path: Path) -> Path:
    """64 random sparse DS2-shaped showers (6480 voxels), log-uniform energies 1-100 GeV."""
    rng = np.random.default_rng(0)
    n = 64
    e = 10 ** rng.uniform(3, 5, n)
    s = rng.exponential(1.0, (n, 6480)) * (rng.random((n, 6480)) < 0.1)
    return write_raw_h5(tmp_path / "tiny_ds2.h5", e, s)
