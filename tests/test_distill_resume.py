"""`caloforge distill` after a kill: the work lives in OUT.partial, the same command resumes it bit-identically (a
finished progressive round is not trained again), other settings or a second concurrent distill are refused in one
line, --force starts afresh, and a failure before any training leaves no folder behind."""

from __future__ import annotations

import json

import pytest
import torch
from test_distill_run import _quiet, make_teacher  # noqa: F401  (_quiet: autouse, progress off, threads kept)

import caloforge.training.trainer as trainer_mod
from caloforge.cli.main import main
from caloforge.training import distill_loops
from caloforge.training.callbacks import Callback
from caloforge.training.checkpoint import load_checkpoint
from caloforge.training.distill_partial import LOCK_NAME, REQUEST_NAME, first_difference, partial_path
from caloforge.training.run_dir import RunDirLock

FAST = ["train.steps=4", "train.ckpt_every=2", "train.batch_size=8", "train.log_every=1", "train.warmup_steps=1"]
CD = ["--method", "consistency", "--steps", "1", "consistency.grid=4", *FAST]
PD = ["--method", "progressive", "--steps", "1", "progressive.start_steps=4", *FAST]


class Killed(Exception):
    """Stands for a SIGKILL: the process dies mid-step, whatever came after the last checkpoint is lost."""


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    return make_teacher(tmp_path_factory.mktemp("resume"))


@pytest.fixture
def kill(monkeypatch):
    """``kill["at"] = (run folder name, step)`` makes the trainer die after that step; ``kill["calls"]`` lists the run
    folders the trainer was started on."""
    state = {"at": None, "calls": []}
    real = trainer_mod.train

    class Die(Callback):
        def on_step_end(self, s):
            if state["at"] == (s.out_dir.name, s.step):
                raise Killed(f"killed at step {s.step}")
            return False

    def train(recipe, data_path, out_dir, *args, callbacks=(), **kw):
        state["calls"].append(out_dir.name)
        return real(recipe, data_path, out_dir, *args, callbacks=[*callbacks, Die()], **kw)

    monkeypatch.setattr(trainer_mod, "train", train)
    return state


def _argv(teacher, out, *args):
    run, data, _ = teacher
    return ["distill", "--teacher", str(run), "--data", str(data), "--out", str(out), *args]


def _files(folder):
    """{relative path: (mtime_ns, bytes)} of every file under folder."""
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.read_bytes()) for p in folder.rglob("*")
            if p.is_file()}


@pytest.mark.slow
def test_killed_consistency_run_resumes_to_the_uninterrupted_result(teacher, tmp_path, kill, capsys):
    ref, out = tmp_path / "ref", tmp_path / "cd"
    assert main(_argv(teacher, ref, *CD)) == 0
    kill["at"] = ("cd.partial", 3)  # after the checkpoint of step 2
    with pytest.raises(Killed):
        main(_argv(teacher, out, *CD))
    part = partial_path(out)
    assert not out.exists() and (part / "checkpoints" / "step_00000002.pt").is_file()
    request = json.loads((part / REQUEST_NAME).read_text())
    assert request["method"] == "consistency" and request["settings"]["train"]["lr"] == 1e-4
    kept = _files(part / "checkpoints")
    capsys.readouterr()

    kill["at"] = None
    assert main(_argv(teacher, out, *CD, "train.lr=0.001")) == 2  # other settings: refused before any work
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "settings.train.lr: 0.0001 (stored) vs 0.001 (requested)" in err[0], err
    assert "delete the folder or pass --force" in err[0] and _files(part / "checkpoints") == kept

    assert main(_argv(teacher, out, *CD)) == 0  # the same command resumes
    err = capsys.readouterr().err
    assert f"[distill] resuming the interrupted run in {part}" in err and "resuming from step 2" in err
    assert not part.exists() and not (out / LOCK_NAME).exists() and (out / REQUEST_NAME).is_file()
    got, want = load_checkpoint(out), load_checkpoint(ref)
    assert got["step"] == want["step"] == 4 and got["last_loss"] == want["last_loss"]
    for key in ("model", "ema"):
        assert all(torch.equal(got[key][k], want[key][k]) for k in want[key]), key
    assert main(_argv(teacher, out, *CD)) == 2 and "exists; pass --force" in capsys.readouterr().err


@pytest.mark.slow
def test_force_discards_an_interrupted_run(teacher, tmp_path, kill, capsys):
    out = tmp_path / "cd"
    kill["at"] = ("cd.partial", 3)
    with pytest.raises(Killed):
        main(_argv(teacher, out, *CD))
    kill["at"] = None
    capsys.readouterr()
    assert main(_argv(teacher, out, *CD, "train.lr=0.001", "--force")) == 0
    err = capsys.readouterr().err
    assert "resuming" not in err and not partial_path(out).exists()
    assert json.loads((out / REQUEST_NAME).read_text())["settings"]["train"]["lr"] == 0.001
    assert json.loads((out / "distill.json").read_text())["settings"]["train"]["lr"] == 0.001


@pytest.mark.slow
def test_progressive_resume_skips_a_finished_round(teacher, tmp_path, kill, capsys):
    out = tmp_path / "pd"
    part = partial_path(out)
    kill["at"] = ("pd.partial", 3)  # round 2 (2 -> 1 steps) trains in the partial folder itself
    with pytest.raises(Killed):
        main(_argv(teacher, out, *PD))
    assert kill["calls"] == ["steps-2", "pd.partial"]
    round1 = _files(part / "rounds" / "steps-2")
    assert "checkpoints/step_00000004.pt" in round1 and "distill.json" in round1
    kill["at"], kill["calls"] = None, []
    capsys.readouterr()
    assert main(_argv(teacher, out, *PD)) == 0
    assert kill["calls"] == ["pd.partial"]  # round 1 is not trained again
    assert "resuming from step 2" in capsys.readouterr().err
    assert _files(out / "rounds" / "steps-2") == round1  # its files untouched: same bytes, same mtimes
    assert load_checkpoint(out)["step"] == 4 and not part.exists()


def test_second_distill_on_the_same_out_is_refused(teacher, tmp_path, kill, capsys):
    out = tmp_path / "cd"
    with RunDirLock(partial_path(out), "distill", name=LOCK_NAME):
        assert main(_argv(teacher, out, *CD)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "in use by caloforge distill" in err[0], err
    assert kill["calls"] == [] and not out.exists() and not partial_path(out).exists()


@pytest.mark.parametrize("case", ["no teacher", "distilled teacher", "bad setting", "missing data", "loop fails"])
def test_failure_before_training_leaves_no_partial_folder(teacher, tmp_path, monkeypatch, capsys, case):
    out = tmp_path / "x"
    args = {"no teacher": ["--teacher", str(tmp_path)], "bad setting": ["train.ckpt_every=0"],
            "missing data": ["--data", str(tmp_path / "missing.h5")]}.get(case, [])
    if case == "distilled teacher":
        done = tmp_path / "done"
        assert main(_argv(teacher, done, *CD)) == 0
        args = ["--teacher", str(done)]
    if case == "loop fails":  # bespoke and reflow keep no checkpoints: a failed run leaves nothing to resume
        def boom(*a, **k):
            raise Killed("the loop died")

        monkeypatch.setattr(distill_loops, "run", boom)
        with pytest.raises(Killed):
            main(_argv(teacher, out, "--method", "reflow", *FAST))
    else:
        assert main([*_argv(teacher, out, *CD), *args]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1, err
    assert not out.exists() and not partial_path(out).exists()


def test_first_difference_names_the_field_and_ignores_cadence_settings():
    a = {"method": "consistency", "steps": 1, "settings": {"train": {"lr": 1e-4, "ckpt_every": 100, "log_every": 25}}}
    b = {"method": "consistency", "steps": 2, "settings": {"train": {"lr": 1e-3, "ckpt_every": 5, "log_every": 1}}}
    assert first_difference(a, b) == "steps: 1 (stored) vs 2 (requested)"
    assert first_difference({**a, "steps": 2}, b) == "settings.train.lr: 0.0001 (stored) vs 0.001 (requested)"
    b["settings"]["train"]["lr"] = 1e-4
    assert first_difference({**a, "steps": 2}, b) is None
