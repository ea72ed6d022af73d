"""The noising path of a teacher objective seen from the distillation side: where noise and data ends are, how a
clean sample is noised to a time, and a time grid from noise to data. Flow matching runs t: 0 (noise) -> 1 (data);
EDM runs sigma: sigma_max -> sigma_min. Moves between times use the objective's own ``step`` / ``velocity``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from caloforge.errors import ConfigError
from caloforge.generative.objectives.base import Objective, expand


@dataclass(frozen=True)
class Path:
    """Noise end ``t_noise``, data end ``t_data`` (the consistency boundary) and the prior scale at the noise end."""

    objective: Objective
    t_noise: float
    t_data: float
    prior_scale: float

    def grid(self, n: int, rho: float | None = None) -> torch.Tensor:
        """n + 1 times (float64) from the noise end to the data end: uniform in t for flow, Karras rho for EDM."""
        if self.objective.kind == "edm":
            from caloforge.generative.samplers.grids import karras

            g = karras(n + 1, self.t_data, self.t_noise, rho or self.objective.rho)[:-1]  # drop the appended 0
            return g
        return torch.linspace(self.t_noise, self.t_data, n + 1, dtype=torch.float64)

    def noisy(self, x: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """z_t for clean x, standard-normal eps and per-sample times t (B,)."""
        tb = expand(t, x)
        if self.objective.kind == "edm":
            return x + tb * eps
        return (1.0 - tb) * eps + tb * x

    def prior(self, noise: torch.Tensor) -> torch.Tensor:
        """Standard-normal noise -> a draw at the noise end."""
        return noise * self.prior_scale


def path_of(objective: Objective) -> Path:
    """The Path of a flow or EDM objective; other objectives are refused with one line."""
    if objective.kind == "flow":
        return Path(objective, 0.0, 1.0, 1.0)
    if objective.kind == "edm":
        return Path(objective, float(objective.sigma_max), float(objective.sigma_min), float(objective.sigma_max))
    raise ConfigError(f"distill: teacher objective '{objective.kind}': expected flow or edm (the few-step methods "
                      f"need a deterministic ODE path)")
