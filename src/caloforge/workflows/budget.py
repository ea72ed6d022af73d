"""Training inside a wall-clock budget: measure the speed, size the run to fit, stop at the deadline in any case.

The learning-rate schedule is a function of ``train.steps``, so stopping a long schedule early leaves the model at
a high learning rate. Instead a short probe measures the seconds per step on this machine, the step count is set so
that the schedule ends inside the budget, and a :class:`Deadline` callback stops (with a checkpoint) if the machine
turns out slower than measured.
"""

from __future__ import annotations

import itertools
import shutil
import statistics
import time
from pathlib import Path

from caloforge.training.callbacks import Callback

PROBE_STEPS = 25
SAFETY = 0.9  # share of what is left of the budget the planned steps may fill


class StepClock(Callback):
    """Records when the loop starts and when each step ends (monotonic seconds)."""

    def __init__(self):
        self.t_start: float | None = None
        self.t_steps: list[float] = []

    def on_train_start(self, state) -> None:
        self.t_start = time.monotonic()

    def on_step_end(self, state) -> bool:
        self.t_steps.append(time.monotonic())
        return False

    def seconds_per_step(self) -> float:
        """Median step interval, leaving out the first steps (warm-up of allocators and caches)."""
        ticks = ([self.t_start] if self.t_start is not None else []) + self.t_steps
        gaps = [b - a for a, b in itertools.pairwise(ticks)]
        gaps = gaps[len(gaps) // 5:] or gaps
        if not gaps:
            raise ValueError("StepClock: no steps were timed")
        return statistics.median(gaps)


class Deadline(Callback):
    """Checkpoint and stop once the monotonic clock passes ``deadline``."""

    def __init__(self, deadline: float):
        self.deadline = float(deadline)

    def on_step_end(self, state) -> bool:
        return time.monotonic() >= self.deadline


def plan_steps(seconds_per_step: float, left_s: float, safety: float = SAFETY, minimum: int = 1) -> int:
    """Optimiser steps whose schedule fits in ``left_s`` seconds at the measured speed."""
    if not seconds_per_step > 0:
        raise ValueError(f"seconds_per_step must be > 0, found {seconds_per_step}")
    return max(int(safety * max(left_s, 0.0) / seconds_per_step), minimum)


def probe_speed(recipe, data_path, probe_dir: Path, device: str = "auto", steps: int = PROBE_STEPS,
                max_seconds: float | None = None) -> dict:
    """Train up to ``steps`` steps of ``recipe`` in a throw-away folder, for at most ``max_seconds`` after the
    set-up; returns the seconds per step, the fixed set-up seconds and the probe's wall time."""
    from caloforge.training.trainer import train

    probe_dir = Path(probe_dir)
    shutil.rmtree(probe_dir, ignore_errors=True)
    clock = StepClock()
    quiet = {"train": recipe.train.model_copy(update={"ckpt_every": 10**9, "val_every": 10**9,
                                                       "warmup_steps": min(recipe.train.warmup_steps, steps)})}
    callbacks = [clock, _ProbeDeadline(clock, max_seconds)] if max_seconds else [clock]
    t0 = time.monotonic()
    try:
        train(recipe.model_copy(update=quiet), data_path, probe_dir, steps=steps, device=device,
              callbacks=callbacks)
    finally:
        shutil.rmtree(probe_dir, ignore_errors=True)
    total = time.monotonic() - t0
    sps = clock.seconds_per_step() if clock.t_steps else total
    setup = max((clock.t_start or t0) - t0, 0.0)
    return {"seconds_per_step": sps, "setup_s": setup, "probe_s": total, "probe_steps": len(clock.t_steps)}


class _ProbeDeadline(Callback):
    """Stops the probe ``seconds`` after its loop started (a slow machine needs no 25 steps to be measured)."""

    def __init__(self, clock: StepClock, seconds: float):
        self.clock, self.seconds = clock, float(seconds)

    def on_step_end(self, state) -> bool:
        return len(self.clock.t_steps) >= 3 and time.monotonic() - self.clock.t_start >= self.seconds
