"""The default demo's model quality as a user gets it: `caloforge demo` with its defaults (5-minute training budget,
~8-10 minutes in all on two cores). Opt-in with CALOFORGE_DEMO_QUALITY=1 because of that time; CI runs the same
chain on tiny settings in test_demo.py.

The bounds are looser than the measured level (docs/demo.md, "Measured") so that only a real regression fails:
low-level AUC and FPD against the floor have room; the high-level AUC bound only says "not worse than today". The
issue-17 target, high-level AUC <= 0.75, is not met by the 5-minute model and is not asserted.
"""

from __future__ import annotations

import json
import os

import pytest

from caloforge.cli.main import main

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("CALOFORGE_DEMO_QUALITY") != "1",
                       reason="trains for the demo's full budget; set CALOFORGE_DEMO_QUALITY=1 to run it"),
]


def test_the_default_demo_model_stays_within_its_measured_quality(tmp_path, monkeypatch):
    monkeypatch.setenv("CALOFORGE_PROGRESS", "0")
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--device", "cpu"]) == 0
    entry = json.loads((out / "evaluation" / "metrics.json").read_text())["generated"][0]
    floor = json.loads((out / "floor.json").read_text())
    auc_high, auc_low = entry["classifiers"]["high"]["auc"], entry["classifiers"]["low"]["auc"]
    assert auc_low <= 0.75, f"low-level AUC {auc_low:.3f} (measured 0.62-0.65)"
    assert auc_high <= 0.995, f"high-level AUC {auc_high:.3f} (measured 0.985-0.990)"
    fpd, fpd_floor = entry["fpd"]["value"], floor["fpd"]["value"]
    assert fpd <= 2.5 * fpd_floor, f"FPD {fpd:.3f} against a floor of {fpd_floor:.3f} (measured 1.6x)"
