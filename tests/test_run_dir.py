"""Run directories: one `train` at a time (OS lock, a killed run's lock taken over), config.yaml only with a
checkpoint (a failed first attempt never blocks the corrected command), stale checkpoint temps removed on start."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from test_trainer import small_recipe_file, structured_file

import caloforge
from caloforge.cli.main import main
from caloforge.errors import CaloforgeError
from caloforge.outputs import TMP_MARK
from caloforge.training.run_dir import LOCK_NAME, RunDirLock

SRC = Path(caloforge.__file__).resolve().parents[1]  # the caloforge under test, also in subprocesses


def _train_argv(recipe, data, out, *extra):
    return ["train", "--recipe", str(recipe), "--data", str(data), "--out", str(out), "--device", "cpu", *extra]


def test_lock_is_exclusive_and_released(tmp_path):
    busy = r"run: this run directory is in use by caloforge train \(pid \d+\)"
    with RunDirLock(tmp_path / "run"), pytest.raises(CaloforgeError, match=busy):
        RunDirLock(tmp_path / "run").acquire()
    with RunDirLock(tmp_path / "run"):  # released on exit
        pass


@pytest.mark.slow
def test_second_train_on_the_same_out_is_refused_while_the_first_runs_and_a_killed_runs_lock_is_taken_over(
        tmp_path, capsys):
    data = structured_file(tmp_path / "train.h5")
    recipe = small_recipe_file(tmp_path, ckpt_every=100000, log_every=100000)
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen([sys.executable, "-m", "caloforge.cli.main",
                              *_train_argv(recipe, data, out, "--steps", "1000000")],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 300  # the child imports torch first: slow on a loaded machine
        while not (out / LOCK_NAME).is_file() or f"pid {first.pid}" not in (out / LOCK_NAME).read_text():
            if first.poll() is not None or time.monotonic() > deadline:
                first.kill()  # before reading its stderr: a live child would never close the pipe
                pytest.fail(f"the first train never took the lock: {first.communicate()[1].decode()[-2000:]}")
            time.sleep(0.2)
        code = main(_train_argv(recipe, data, out, "--steps", "2"))
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and f"in use by caloforge train (pid {first.pid})" in err[0], err
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert main(_train_argv(recipe, data, out, "--steps", "2")) == 0  # the dead process's lock is taken over
    assert (out / "checkpoints" / "step_00000002.pt").is_file()


def test_a_failed_first_attempt_does_not_block_the_corrected_command(tmp_path, capsys):
    good = structured_file(tmp_path / "train.h5")
    bad = structured_file(tmp_path / "bad.h5")
    import h5py

    with h5py.File(bad, "a") as f:
        f["showers"][5, 3] = np.nan
    out = tmp_path / "run"
    first = small_recipe_file(tmp_path, name="first", lr=0.001)
    assert main(_train_argv(first, bad, out, "--steps", "2")) == 2
    assert "row 5, voxel 3" in capsys.readouterr().err
    assert not (out / "config.yaml").exists()
    corrected = small_recipe_file(tmp_path, name="first", lr=0.002)  # another setting, the right file
    assert main(_train_argv(corrected, good, out, "--steps", "2")) == 0
    assert "lr: 0.002" in (out / "config.yaml").read_text()


def test_stale_checkpoint_temps_are_removed_on_start(tmp_path, capsys):
    data = structured_file(tmp_path / "train.h5")
    recipe = small_recipe_file(tmp_path)
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    stale = [out / "checkpoints" / f".step_00000002.pt{TMP_MARK}{os.getpid()}-0badc0de",  # even "our" pid: locked
             out / "checkpoints" / ".step_00000001.pt.k2j3h4.tmp",  # an older caloforge's temp name
             out / f".metrics.jsonl{TMP_MARK}999999-00000000"]
    for p in stale:
        p.write_bytes(b"x" * 100)
    assert main(_train_argv(recipe, data, out, "--steps", "2")) == 0
    assert not any(p.exists() for p in stale)
    names = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert names == ["latest", "step_00000002.pt"]


def test_a_full_disk_at_the_checkpoint_is_one_line_and_leaves_no_partial_checkpoint(tmp_path, capsys, monkeypatch):
    import shutil
    from collections import namedtuple

    data = structured_file(tmp_path / "train.h5")
    recipe = small_recipe_file(tmp_path)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 20_000, 20_000))
    out = tmp_path / "run"
    assert main(_train_argv(recipe, data, out, "--steps", "2")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the checkpoint needs about" in err[0] and "MB are free there" in err[0], err
    assert [p.name for p in (out / "checkpoints").iterdir()] == []
