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
    assert "tiny-fm-2s, 4 of 4 steps in" in screen and str(out / "evaluation" / "report.html") in screen
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


def test_the_budget_plan_fills_what_is_left_and_the_deadline_stops_training(tmp_path):
    import time

    from caloforge.simulate.generate import make_file
    from caloforge.training.recipe_io import load_recipe
    from caloforge.training.trainer import train
    from caloforge.workflows.budget import Deadline, StepClock, plan_steps

    assert plan_steps(0.1, 100.0) == 900 and plan_steps(0.1, -5.0) == 1
    with pytest.raises(ValueError):
        plan_steps(0.0, 10.0)
    data = make_file("par04-siw", 64, tmp_path / "d.h5", seed=1)
    clock = StepClock()
    recipe = load_recipe("tiny-fm", ["train.batch_size=8", "train.log_every=1"])
    result = train(recipe, data, tmp_path / "run", steps=50, device="cpu",
                   callbacks=[clock, Deadline(time.monotonic() - 1.0)])  # already past: stops after one step
    assert result.step == 1 and not result.completed and result.stopped_by == "Deadline"
    assert result.checkpoint is not None and result.checkpoint.is_file()
    assert len(clock.t_steps) == 1 and clock.seconds_per_step() > 0


def test_without_a_terminal_progress_is_a_plain_line_with_rate_and_eta(monkeypatch, capsys):
    from caloforge.progress import LineProgress, mode, progress

    monkeypatch.setenv("CALOFORGE_PROGRESS", "lines")
    monkeypatch.setenv("CALOFORGE_PROGRESS_EVERY", "0")
    bar = progress(total=4, desc="train tiny", unit="step")
    assert isinstance(bar, LineProgress)
    for _ in range(4):
        bar.update(1)
    bar.close()
    lines = capsys.readouterr().err.splitlines()
    assert lines and all(line.startswith("train tiny: ") and "\r" not in line for line in lines)
    assert "4/4 step (100%)" in lines[-1] and "ETA" in lines[-1] and "step/s" in lines[-1]
    monkeypatch.setenv("CALOFORGE_PROGRESS_EVERY", "3600")
    for _ in progress(range(3), desc="quick"):
        pass
    assert capsys.readouterr().err == ""  # a short task stays silent
    monkeypatch.setenv("CALOFORGE_PROGRESS", "0")
    assert mode() == "off"
    monkeypatch.delenv("CALOFORGE_PROGRESS")
    assert mode() == "lines"  # pytest's stderr is no terminal
