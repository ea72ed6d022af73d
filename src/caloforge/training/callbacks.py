"""Loop callbacks: stop conditions and in-loop evaluation hang off the training loop instead of living inside it.

A callback is any object with some of ``on_train_start(state)``, ``on_step_end(state) -> bool`` (True: save a
checkpoint and stop) and ``on_val(state) -> dict | None`` (metrics to log, called on rank 0 every
``train.val_every`` steps and at the last step); a callback that is also a context manager is entered around the
loop. ``train(..., callbacks=[...])`` adds library callbacks to the built-in ones (signals, in-loop quality).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class TrainState:
    """What the loop exposes to callbacks. ``step`` counts completed optimiser steps."""

    step: int
    steps: int
    recipe: Any
    out_dir: Path
    model: Any  # the unwrapped network (raw weights)
    ema: Any  # caloforge.training.ema.EMA; ``ema.network(model)`` gives the EMA weights as a network
    objective: Any
    is_main: bool
    loss: float | None = None
    lr: float | None = None
    grad_norm: float | None = None
    val_loss: float | None = None
    log: Callable[[dict], None] = field(default=lambda record: None, repr=False)  # adds a metrics.jsonl record


class Callback:
    """Base with no-op hooks; subclass and override what you need."""

    def on_train_start(self, state: TrainState) -> None:
        """After the model, EMA and optimiser are ready (restored on resume), before the first step."""

    def on_step_end(self, state: TrainState) -> bool:
        """After each optimiser step and EMA update; return True to checkpoint and stop."""
        return False

    def on_val(self, state: TrainState) -> dict | None:
        """On rank 0 at the validation cadence; the returned metrics are logged at this step."""
        return None


class SignalStop(Callback):
    """SIGTERM/SIGINT set a flag; the loop saves a checkpoint at the end of the current step and returns."""

    def __init__(self):
        self.signum: int | None = None
        self._old: dict = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        self.signum = signum

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old = {}

    def on_step_end(self, state: TrainState) -> bool:
        return self.signum is not None


class StopAtStep(Callback):
    """Stop (with a checkpoint) once ``step`` optimiser steps are done: a budget shorter than ``train.steps`` that
    leaves the schedule as if the run were to go on (resume continues it)."""

    def __init__(self, step: int):
        self.step = int(step)

    def on_step_end(self, state: TrainState) -> bool:
        return state.step >= self.step
