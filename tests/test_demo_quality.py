"""The default demo's model quality as a user gets it: `caloforge demo` with its defaults (6-minute training budget,
~7-8 minutes in all on two idle cores). Opt-in with CALOFORGE_DEMO_QUALITY=1 because of that time; CI runs the same
chain on tiny settings in test_demo.py.

The bounds are looser than the issue-17 target (high-level AUC <= 0.75) and the measured level (docs/demo.md,
"Measured": AUC high 0.62 with the 6-minute default, 0.73 with 5 minutes; low 0.52-0.56; FPD 1.04-1.1x its
floor), so that a slower or busier machine (fewer steps in the budget) or an unlucky classifier split does not fail
it, while a real regression (the per-voxel recipe scored 0.985 / 0.65 / 1.6x) does.
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
    assert auc_high <= 0.80, f"high-level AUC {auc_high:.3f} (target 0.75)"
    assert auc_low <= 0.62, f"low-level AUC {auc_low:.3f}"
    fpd, fpd_floor = entry["fpd"]["value"], floor["fpd"]["value"]
    assert fpd <= 1.4 * fpd_floor, f"FPD {fpd:.3f} against a floor of {fpd_floor:.3f}"
