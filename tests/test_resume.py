"""Exact resume: a run killed with SIGKILL and restarted on the same RUN_DIR ends bit-identical (CPU,
deterministic) to an uninterrupted run; SIGTERM saves a checkpoint at the end of the current step and exits."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import torch
from test_trainer import small_recipe_file, structured_file

from caloforge.training.checkpoint import latest_checkpoint, latest_step, load_checkpoint, save_checkpoint

STEPS = 60


def _cmd(recipe, data, out):
    return [sys.executable, "-m", "caloforge.cli.main", "train", "--recipe", str(recipe), "--data", str(data),
            "--out", str(out), "--steps", str(STEPS), "--device", "cpu"]


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "CALOFORGE_PROGRESS": "0"}


def _start_and_signal(cmd, run, sig, min_step=5):
    """Start a training subprocess; once a checkpoint exists, send sig. Returns (process, step at the signal)."""
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        ck = latest_checkpoint(run) if run.exists() else None
        if ck is not None and int(ck.stem.split("_")[1]) >= min_step:
            proc.send_signal(sig)
            break
        time.sleep(0.02)
    proc.wait(timeout=240)
    return proc


def _tensors(ck):
    out = {f"model.{k}": v for k, v in ck["model"].items()}
    out |= {f"ema.{k}": v for k, v in ck["ema"].items()}
    for i, st in ck["optimizer"]["state"].items():
        out |= {f"opt.{i}.{k}": v for k, v in st.items() if torch.is_tensor(v)}
    return out


def test_sigkill_then_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path):
    data = structured_file(tmp_path / "d.h5", n=48)
    recipe = small_recipe_file(tmp_path, batch_size=16, ckpt_every=5, deterministic=True, log_every=10)
    whole = subprocess.run(_cmd(recipe, data, tmp_path / "whole"), env=_env(), capture_output=True, text=True, check=False)
    assert whole.returncode == 0, whole.stderr

    killed = _start_and_signal(_cmd(recipe, data, tmp_path / "resumed"), tmp_path / "resumed", signal.SIGKILL)
    assert killed.returncode == -signal.SIGKILL
    at_kill = load_checkpoint(tmp_path / "resumed")["step"]
    assert 5 <= at_kill < STEPS, "the run finished before it could be killed; the test proved nothing"
    resumed = subprocess.run(_cmd(recipe, data, tmp_path / "resumed"), env=_env(), capture_output=True, text=True, check=False)
    assert resumed.returncode == 0, resumed.stderr

    a, b = load_checkpoint(tmp_path / "whole"), load_checkpoint(tmp_path / "resumed")
    assert a["step"] == b["step"] == STEPS
    ta, tb = _tensors(a), _tensors(b)
    assert ta.keys() == tb.keys() and len(ta) > 10
    different = [k for k in ta if not torch.equal(ta[k], tb[k])]
    assert different == []



def test_sigterm_saves_at_the_end_of_the_step_and_exits_cleanly(tmp_path):
    data = structured_file(tmp_path / "d.h5", n=48)
    recipe = small_recipe_file(tmp_path, batch_size=16, ckpt_every=1000)
    run = tmp_path / "run"
    cmd = _cmd(recipe, data, run)
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if (run / "metrics.jsonl").exists() and (run / "metrics.jsonl").read_text().count("\n") >= 3:
            proc.send_signal(signal.SIGTERM)
            break
        time.sleep(0.02)
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "re-run the same command to resume" in out
    ck = load_checkpoint(run)
    assert 3 <= ck["step"] < STEPS  # saved although ckpt_every (1000) was never reached
    assert "Traceback" not in err


def test_latest_step_reads_the_newest_checkpoint_name(tmp_path):
    assert latest_step(tmp_path / "missing") == 0 and latest_step(tmp_path) == 0
    for step in (7, 120):
        save_checkpoint(tmp_path, step, {"x": torch.zeros(1)})
    assert latest_step(tmp_path) == 120 and latest_checkpoint(tmp_path).name == "step_00000120.pt"
