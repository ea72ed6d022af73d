"""The README's main job end to end on tiny settings: data -> split -> train -> sample -> floor -> evaluate ->
report; a second run resumes instead of redoing the stages and keeps the first run's stage times."""

from __future__ import annotations

import json

import pytest

from caloforge.cli.main import main


@pytest.mark.slow
def test_demo_writes_a_report_with_its_floor_and_a_second_run_skips_finished_stages(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CALOFORGE_PROGRESS", "0")
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--n", "300", "--steps", "4", "--sampler-steps", "2",
            "--classifier-epochs", "1", "--device", "cpu", "train.ckpt_every=2", "train.val_every=2",
            "layer_model.steps=2"]
    assert main(args) == 0
    screen = capsys.readouterr().out
    metrics = json.loads((out / "evaluation" / "metrics.json").read_text())
    entry = metrics["generated"][0]
    assert entry["n"] == 60  # the test split: 20 % of 300
    assert entry["fpd"]["value"] is not None and set(entry["classifiers"]) == {"high", "low"}
    floor = json.loads((out / "floor.json").read_text())
    assert floor["n"] == [60, 60] and set(floor["classifiers"]) == {"high", "low"}
    html = (out / "evaluation" / "report.html").read_text()
    assert "<table" in html and ".png" in html
    assert "tiny-fm-2s, 4 of 4 steps" in screen and str(out / "evaluation" / "report.html") in screen
    assert "classifier AUC (high-level)" in screen and "x1e-3" in screen
    first = json.loads((out / "stage_seconds.json").read_text())
    assert {"data", "train", "sample", "floor", "evaluate"} <= set(first)

    assert main(args) == 0
    log = capsys.readouterr().out
    for stage in ("data", "split", "train", "sample", "floor", "evaluate"):
        assert f"[{stage}] found" in log
    second = json.loads((out / "stage_seconds.json").read_text())
    assert second == first  # nothing re-ran, nothing was overwritten


def test_demo_refuses_a_negative_budget_before_any_work(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "d"), "--minutes", "-1"]) == 2
    assert "--minutes" in capsys.readouterr().err and not (tmp_path / "d").exists()
