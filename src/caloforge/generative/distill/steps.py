"""Moves along a teacher's ODE path written as ``a z + b F(z, t)``: F is the network's field in the form whose
first-order step is exact for a straight path (flow: velocity v, EDM: denoised D). Consistency functions, progressive
targets and few-step students all use these moves, so the same code serves flow and EDM teachers.
"""

from __future__ import annotations

import torch

from caloforge.generative.distill.paths import Path
from caloforge.generative.objectives.base import Net, expand


def field(path: Path, net: Net, z: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
    """F(z, t): flow velocity or EDM denoiser output, (B, *S) for per-sample times t (B,)."""
    if path.objective.kind == "edm":
        return path.objective.denoise(net, z, t, cond)
    return path.objective.velocity(net, z, t, cond)


def step_coefficients(path: Path, t: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(a, b) of the first-order move t -> u: flow Euler (1, u - t); EDM DDIM (u / t, 1 - u / t). At u == t they are
    exactly (1, 0), which is what makes the consistency boundary condition exact."""
    if path.objective.kind == "edm":
        r = u / t
        return r, 1.0 - r
    return torch.ones_like(t), u - t


def linear_step(path: Path, net: Net, z: torch.Tensor, t: torch.Tensor, u: torch.Tensor,
                cond: torch.Tensor | None) -> torch.Tensor:
    """One first-order move of ``net`` from times t to u (both (B,)): a z + b F(z, t)."""
    a, b = step_coefficients(path, t, u)
    return expand(a, z) * z + expand(b, z) * field(path, net, z, t, cond)


def heun_step(path: Path, net: Net, z: torch.Tensor, t: torch.Tensor, u: torch.Tensor,
              cond: torch.Tensor | None) -> torch.Tensor:
    """One Heun (2nd order) step of the probability-flow ODE from t to u: the teacher's ODE-solver step."""
    obj = path.objective
    h = expand(u - t, z)
    d0 = obj.velocity(net, z, t, cond)
    z1 = z + h * d0
    return z + 0.5 * h * (d0 + obj.velocity(net, z1, u, cond))


def times(value: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor:
    """A (B,) time tensor from a scalar or (B,) tensor, in like's dtype and device."""
    t = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    return t.expand(like.shape[0]) if t.dim() == 0 else t


def euler_sample(path: Path, net: Net, noise: torch.Tensor, cond: torch.Tensor | None, steps: int) -> torch.Tensor:
    """K first-order moves on the path's K-step grid from the prior: how progressive and reflow students sample."""
    grid = path.grid(steps)
    z = path.prior(noise)
    for i in range(steps):
        z = linear_step(path, net, z, times(float(grid[i]), z), times(float(grid[i + 1]), z), cond)
    return z
