"""benchmarks/gpu_check.py: its CPU fallback (gloo, eager) runs every check end to end and writes the result file."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


def test_speed_skips_the_warm_up_interval():
    import gpu_check

    rows = [{"step": 5, "samples_per_s": 1.0}, {"step": 10, "samples_per_s": 100.0}, {"step": 10, "val_loss": 1.0},
            {"step": 15, "samples_per_s": 120.0}]
    assert gpu_check.speed(rows) == 110.0
    assert gpu_check.speed(rows[:1]) is None


@pytest.mark.slow
def test_cpu_fallback_runs_all_checks_and_writes_the_report(tmp_path):
    import gpu_check

    out = tmp_path / "gpu.md"
    rc = gpu_check.main(["--device", "cpu", "--out", str(out), "--showers", "32", "--tiny-steps", "2",
                         "--tiny-batch", "16", "--skip-ds2"])
    text = out.read_text()
    assert rc == 0, text
    assert text.count("| 0 |") == 2  # both checks, each rc 0 (the ds2 row runs the same code at full size)
    assert "resumed to a later step | 0 | 4 |" in text  # the resume reached twice the steps
    assert "gloo" in text
