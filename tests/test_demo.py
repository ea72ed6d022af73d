"""The README's main job end to end on tiny settings: data -> split -> train -> sample -> evaluate -> report, and a
second run resumes instead of redoing the stages."""

from __future__ import annotations

import json

import pytest

from caloforge.cli.main import main


@pytest.mark.slow
def test_demo_writes_a_report_and_a_second_run_skips_finished_stages(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CALOFORGE_PROGRESS", "0")
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--n", "400", "--steps", "4", "--sampler-steps", "2",
            "--classifier-epochs", "1", "--device", "cpu", "train.ckpt_every=2", "train.val_every=2"]
    assert main(args) == 0
    metrics = json.loads((out / "evaluation" / "metrics.json").read_text())
    entry = metrics["generated"][0]
    assert entry["n"] == 80  # the test split: 20 % of 400
    assert entry["fpd"]["value"] is not None and set(entry["classifiers"]) == {"high", "low"}
    html = (out / "evaluation" / "report.html").read_text()
    assert "<table" in html and ".png" in html
    capsys.readouterr()

    assert main(args) == 0
    log = capsys.readouterr().out
    assert "[data] found" in log and "[split] found" in log and "[sample] found" in log
