"""Samplers: time grids and integrators as pure functions over a field or denoiser (no training or data knowledge)."""

from caloforge.generative.samplers import ddim, edm, grids, ode

__all__ = ["ddim", "edm", "grids", "ode"]
