"""Generative objectives (flow matching, EDM, DDPM, VP-v) and the config door ``build_objective``."""

from __future__ import annotations

import dataclasses
from typing import Any

from caloforge.errors import ConfigError
from caloforge.generative.objectives.base import Objective
from caloforge.generative.objectives.ddpm import DDPM
from caloforge.generative.objectives.edm import EDM
from caloforge.generative.objectives.flow_matching import FlowMatching
from caloforge.generative.objectives.vp import VPDiffusion

OBJECTIVES: dict[str, type[Objective]] = {"flow": FlowMatching, "edm": EDM, "ddpm": DDPM, "vp": VPDiffusion}


def _registry() -> dict[str, type[Objective]]:
    """Trainable objectives plus the distilled ones (imported late: they build their teacher's objective here)."""
    from caloforge.generative.distill.objectives import DISTILLED

    return {**OBJECTIVES, **DISTILLED}


def build_objective(cfg: dict[str, Any]) -> Objective:
    """Build an objective from ``{"kind": ..., <fields>}``; unknown kinds or fields raise a one-line ConfigError."""
    if not isinstance(cfg, dict):
        raise ConfigError(f"objective: expected a mapping with a 'kind' field, found {type(cfg).__name__}")
    kind = cfg.get("kind")
    registry = _registry()
    if kind not in registry:
        raise ConfigError(f"objective: field 'kind': expected one of {', '.join(registry)}, found {kind!r}")
    cls = registry[kind]
    allowed = [f.name for f in dataclasses.fields(cls) if f.init]
    for key in cfg:
        if key != "kind" and key not in allowed:
            raise ConfigError(
                f"objective '{kind}': unknown field {key!r}; expected one of {', '.join(allowed)}"
            )
    return cls(**{k: v for k, v in cfg.items() if k != "kind"})


__all__ = ["DDPM", "EDM", "OBJECTIVES", "FlowMatching", "Objective", "VPDiffusion", "build_objective"]
