"""Consistency distillation (Song et al. 2023; CaloDiT-2, CaloClouds II) from a flow or EDM teacher.

The consistency function is the first-order jump to the data end, f(z, t) = c_skip(t) z + c_out(t) F_theta(z, t) with
(flow) c_skip = 1, c_out = t_data - t on the velocity, (EDM) c_skip = sigma_min / sigma, c_out = 1 - c_skip on the
denoiser: f(z, t_data) = z exactly, and a student initialised from the teacher starts as the teacher's one-step
Euler sampler. Training: noise x to t_n on an N-point grid, move the teacher one Heun step to t_{n+1} (towards the
data), and pull f_student(z_n, t_n) to f_target(z_{n+1}, t_{n+1}) where the target is an EMA of the student.
"""

from __future__ import annotations

import torch

from caloforge.generative.distill.paths import Path
from caloforge.generative.distill.steps import heun_step, linear_step, times
from caloforge.generative.objectives.base import Net, randn


def consistency_function(path: Path, net: Net, z: torch.Tensor, t: torch.Tensor,
                         cond: torch.Tensor | None) -> torch.Tensor:
    """f(z, t) = c_skip z + c_out F(z, t), the clean-data estimate with f(z, t_data) = z exactly."""
    return linear_step(path, net, z, t, times(path.t_data, z), cond)


def distance(a: torch.Tensor, b: torch.Tensor, kind: str = "pseudo_huber", c: float = 0.03) -> torch.Tensor:
    """Per-sample distance (B,): mean squared error, or pseudo-Huber sqrt(mse + c^2) - c (iCT, robust to outliers)."""
    mse = (a.float() - b.float()).pow(2).flatten(1).mean(dim=1)
    return mse if kind == "l2" else torch.sqrt(mse + c * c) - c


def distillation_loss(path: Path, student: Net, target: Net, teacher: Net, x: torch.Tensor,
                      cond: torch.Tensor | None, grid: torch.Tensor, generator: torch.Generator | None = None,
                      kind: str = "pseudo_huber", c: float = 0.03) -> torch.Tensor:
    """Scalar consistency-distillation loss for clean x (B, *S) on ``grid`` (N + 1 times, noise end first)."""
    b = x.shape[0]
    n = (torch.rand((b,), generator=generator, device=generator.device if generator is not None else x.device)
         * (len(grid) - 1)).long().clamp_max(len(grid) - 2).to(x.device)  # (B,) step index
    g = grid.to(x.device, x.dtype)
    t_n, t_next = g[n], g[n + 1]  # (B,) each; t_next is nearer the data
    z_n = path.noisy(x, randn(tuple(x.shape), x, generator), t_n)
    with torch.no_grad():
        z_next = heun_step(path, teacher, z_n, t_n, t_next, cond)
        want = consistency_function(path, target, z_next, t_next, cond)
    got = consistency_function(path, student, z_n, t_n, cond)
    return distance(got, want, kind, c).mean()


def sample_times(path: Path, steps: int) -> list[float]:
    """The K times where multistep sampling evaluates f: the noise end and K - 1 points of the K-step grid."""
    return [float(t) for t in path.grid(steps)[:-1]]


def sample(path: Path, net: Net, noise: torch.Tensor, cond: torch.Tensor | None, steps: int,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """Multistep consistency sampling: x = f(prior, t_noise); then re-noise x to each next time and apply f again."""
    ts = sample_times(path, steps)
    x = consistency_function(path, net, path.prior(noise), times(ts[0], noise), cond)
    for t in ts[1:]:
        tt = times(t, x)
        x = consistency_function(path, net, path.noisy(x, randn(tuple(x.shape), x, generator), tt), tt, cond)
    return x
