"""Generative core: objectives (what the network learns) and samplers (how noise becomes showers)."""

from caloforge.generative.objectives import OBJECTIVES, Objective, build_objective

__all__ = ["OBJECTIVES", "Objective", "build_objective"]
