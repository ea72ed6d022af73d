"""Learning-rate schedules as pure functions of the step, so a resumed run needs nothing but the step number."""

from __future__ import annotations

import math


def lr_factor(
    step: int,
    total_steps: int,
    schedule: str = "cosine",
    warmup_steps: int = 0,
    decay_fraction: float = 0.2,
    min_factor: float = 0.0,
) -> float:
    """Multiplier of the base lr at optimiser step ``step`` (0-based).

    All schedules warm up linearly over ``warmup_steps`` (step 0 gets 1/warmup, never 0, so the first update moves).
    ``cosine`` then decays to ``min_factor`` at ``total_steps``; ``wsd`` (warmup-stable-decay) holds 1 until the last
    ``decay_fraction`` of the steps and decays linearly to ``min_factor``; ``constant`` holds 1.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        span = max(total_steps - warmup_steps, 1)
        progress = min((step - warmup_steps) / span, 1.0)
        return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule == "wsd":
        decay_steps = max(round(decay_fraction * total_steps), 1)
        decay_start = max(total_steps - decay_steps, warmup_steps)
        if step < decay_start:
            return 1.0
        progress = min((step - decay_start) / max(total_steps - decay_start, 1), 1.0)
        return 1.0 - (1.0 - min_factor) * progress
    raise ValueError(f"unknown schedule {schedule!r} (expected cosine, wsd or constant)")


def first_changed_step(done: int, old_total: int, new_total: int, schedule: str = "cosine", warmup_steps: int = 0,
                       decay_fraction: float = 0.2, min_factor: float = 0.0) -> int | None:
    """The first of the ``done`` steps whose lr would differ had the run been planned for ``new_total`` steps
    instead of ``old_total`` (None: the new total leaves the trained history unchanged, e.g. constant, or WSD
    still in its stable phase). Resuming with a new total is honest only in the None case."""
    if old_total == new_total:
        return None
    for step in range(done):
        a = lr_factor(step, old_total, schedule, warmup_steps, decay_fraction, min_factor)
        b = lr_factor(step, new_total, schedule, warmup_steps, decay_fraction, min_factor)
        if a != b:
            return step
    return None
