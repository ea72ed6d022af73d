"""Settings of ``caloforge distill`` (pydantic, strict): a method, the student's step count and key=value overrides
typed by YAML, refused at the door with one line. Defaults are sized for a CPU; see docs/distill.md.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationError

from caloforge.errors import ConfigError
from caloforge.training.config import EMAConfig, _Strict
from caloforge.training.recipe_io import _format_error, apply_overrides

METHODS = ("consistency", "progressive", "bespoke", "reflow")
DEFAULT_STEPS = {"consistency": 1, "progressive": 1, "bespoke": 4, "reflow": 1}


class DistillTrain(_Strict):
    steps: int = Field(300, ge=1)  # optimiser steps (progressive: per round)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(1e-4, gt=0)
    warmup_steps: int = Field(20, ge=0)
    grad_clip: float | None = Field(1.0, gt=0)
    ema: EMAConfig = EMAConfig(power=0.7, max_decay=0.999)
    layer_weight: float = Field(1.0, ge=0)  # two-stage: weight of the layer model's loss
    log_every: int = Field(25, ge=1)
    ckpt_every: int = Field(100, ge=1)  # consistency/progressive: a killed run resumes from its last checkpoint
    seed: int = 0


class ConsistencySettings(_Strict):
    grid: int = Field(18, ge=1)  # N intervals of the teacher grid (one teacher Heun step between neighbours)
    loss: Literal["pseudo_huber", "l2"] = "pseudo_huber"
    huber_c: float = Field(0.03, gt=0)
    target_decay: float = Field(0.95, ge=0, lt=1)  # EMA decay of the target network


class ProgressiveSettings(_Strict):
    start_steps: int = Field(16, ge=2)  # the teacher's step count in round 1; must be steps x 2^k
    teacher_solver: Literal["euler", "heun"] = "heun"  # round 1 only; later rounds use the student's Euler steps


class BespokeSettings(_Strict):
    base: Literal["euler", "midpoint"] = "midpoint"
    trajectories: int = Field(64, ge=1)  # reference solves per stage (dopri5 of the teacher's ODE)
    knots: int = Field(16, ge=2)  # reference states kept per trajectory (Hermite interpolation in between)
    rtol: float = Field(1e-5, gt=0)
    atol: float = Field(1e-5, gt=0)
    iterations: int = Field(200, ge=1)
    batch: int = Field(16, ge=1)  # trajectories per iteration
    lr: float = Field(5e-3, gt=0)


class ReflowSettings(_Strict):
    pairs: int = Field(1024, ge=1)  # (noise, teacher sample) couples, each costs one teacher ODE solve
    t_zero_share: float = Field(0.25, ge=0, le=1)  # share of training times put at the noise end


class DistillConfig(_Strict):
    method: Literal["consistency", "progressive", "bespoke", "reflow"]
    steps: int = Field(1, ge=1)  # the student's sampler steps
    train: DistillTrain = DistillTrain()
    consistency: ConsistencySettings = ConsistencySettings()
    progressive: ProgressiveSettings = ProgressiveSettings()
    bespoke: BespokeSettings = BespokeSettings()
    reflow: ReflowSettings = ReflowSettings()


def distill_config(method: str, steps: int | None = None, overrides: list[str] | tuple[str, ...] = ()) -> DistillConfig:
    """Validated settings; every error is one ConfigError line naming the key."""
    if method not in METHODS:
        raise ConfigError(f"--method: expected one of {', '.join(METHODS)}, found {method!r}")
    for text in overrides:
        if text.split("=", 1)[0].strip() in ("method", "steps"):
            raise ConfigError(f"override {text!r}: use --method / --steps")
    raw = apply_overrides({"method": method, "steps": DEFAULT_STEPS[method] if steps is None else steps},
                          list(overrides))
    try:
        cfg = DistillConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_error("distill", exc)) from None
    n, k = cfg.progressive.start_steps, cfg.steps
    if cfg.method == "progressive" and (n <= k or n % k or (n // k) & (n // k - 1)):
        raise ConfigError(f"distill: progressive.start_steps: expected the student steps ({k}) times a power of two "
                          f"(2, 4, 8, ...), found {n}")
    return cfg
