"""A file larger than 2 GiB streams through `caloforge data inspect` in well under 1 GB of memory."""

from __future__ import annotations

import json
import subprocess
import sys

import h5py
import numpy as np
import pytest

N_SHOWERS, N_VOXELS, BLOCK = 85_000, 6480, 5_000  # 85,000 x 6480 float32 = 2.20e9 bytes > 2 GiB
RSS_LIMIT_KB = 1_000_000  # 1 GB; ru_maxrss is in kB on Linux

# Runs inspect as its only child, so RUSAGE_CHILDREN is the peak RSS of the inspect process alone.
_MEASURE = """
import resource, subprocess, sys
done = subprocess.run([sys.executable, "-m", "caloforge.cli.main", "data", "inspect", sys.argv[1], "--json"],
                      capture_output=True, text=True)
sys.stderr.write(done.stderr)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
print(done.returncode)
print(done.stdout)
"""


def _write_uncompressed(path):
    """Mostly-zero DS2 showers written block by block (uncompressed, so the file really is > 2 GiB)."""
    rng = np.random.default_rng(0)
    block = np.zeros((BLOCK, N_VOXELS), np.float32)
    rows = np.arange(BLOCK)
    with h5py.File(path, "w") as f:
        energies = f.create_dataset("incident_energies", (N_SHOWERS, 1), np.float32)
        showers = f.create_dataset("showers", (N_SHOWERS, N_VOXELS), np.float32)
        for start in range(0, N_SHOWERS, BLOCK):
            stop = min(start + BLOCK, N_SHOWERS)
            block[:] = 0
            block[rows, 0] = 1000.0  # one voxel per shower above threshold, in layer 0, r bin 0
            energies[start:stop] = rng.uniform(1e3, 1e5, (stop - start, 1))
            showers[start:stop] = block[: stop - start]


@pytest.mark.slow
def test_inspect_streams_a_file_over_2_gib_with_peak_rss_under_1_gb(tmp_path):
    path = tmp_path / "large.h5"
    try:
        _write_uncompressed(path)
        assert path.stat().st_size > 2 * 2**30
        done = subprocess.run([sys.executable, "-c", _MEASURE, str(path)], capture_output=True, text=True,
                              timeout=300, check=False)
        peak_kb, code, stdout = done.stdout.split("\n", 2)
        assert int(code) == 0, done.stderr
        summary = json.loads(stdout)
        assert summary["n_showers"] == N_SHOWERS and summary["file_size_bytes"] > 2 * 2**30
        assert summary["longitudinal_profile_mev"][0] == pytest.approx(1000.0)
        assert summary["fraction_above_threshold"] == pytest.approx(1 / N_VOXELS)
        assert int(peak_kb) < RSS_LIMIT_KB, f"peak RSS {int(peak_kb) / 1e3:.0f} MB"
        print(f"inspect of {path.stat().st_size / 1e9:.2f} GB: peak RSS {int(peak_kb) / 1e3:.0f} MB")
    finally:
        path.unlink(missing_ok=True)  # pytest keeps old tmp dirs: never leave 2 GB behind
