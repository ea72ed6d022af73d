"""Discrete-time DDPM with eps-prediction (CaloDiT-1): T steps, linear or cosine beta schedule, t_in = k / T.

Timesteps k = 0 .. T-1 have alpha_bar[k] = prod_{i <= k} (1 - beta_i) and z_k = sqrt(alpha_bar) x + sqrt(1 - alpha_bar)
eps. Samplers run on an evenly spaced subsequence of timesteps from T-1 down to 0 and finish on clean data:
deterministic DDIM (eta = 0) or the ancestral DDPM posterior (eta = 1; with steps = T this is the original sampler).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar

import torch

from caloforge.generative.objectives.base import (
    Net,
    Objective,
    check_choice,
    check_int,
    check_number,
    config_error,
    expand,
    per_sample_mse,
    randn,
)


def betas_linear(timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """Ho et al. (2020) linear betas, scaled so that T = 1000 gives 1e-4 .. 0.02 (float64)."""
    scale = 1000.0 / timesteps
    return torch.linspace(scale * beta_start, scale * beta_end, timesteps, dtype=torch.float64)


def betas_cosine(timesteps: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Nichol & Dhariwal (2021) cosine schedule: alpha_bar(u) = cos^2(pi/2 (u + s)/(1 + s)), betas clipped."""
    u = torch.linspace(0.0, 1.0, timesteps + 1, dtype=torch.float64)
    f = torch.cos((u + s) / (1.0 + s) * math.pi / 2.0) ** 2
    return (1.0 - f[1:] / f[:-1]).clamp(max=max_beta)


def timestep_subsequence(timesteps: int, steps: int) -> list[int]:
    """``steps`` evenly spaced integer timesteps from T-1 down to 0 (strictly decreasing)."""
    return [int(k) for k in torch.linspace(timesteps - 1, 0, steps, dtype=torch.float64).round().long()]


@dataclass
class DDPM(Objective):
    """DDPM: eps-prediction on T discrete timesteps; DDIM or ancestral sampling on a timestep subsequence."""

    timesteps: int = 1000
    schedule: str = "linear"
    beta_start: float = 1e-4
    beta_end: float = 0.02
    solver: str = "ddim"
    default_steps: int = 50

    kind: ClassVar[str] = "ddpm"

    def __post_init__(self) -> None:
        k = self.kind
        self.timesteps = check_int(k, "timesteps", self.timesteps, low=2)
        check_choice(k, "schedule", self.schedule, ("linear", "cosine"))
        check_choice(k, "solver", self.solver, self.solvers)
        self.beta_start = check_number(k, "beta_start", self.beta_start, low=0.0)
        self.beta_end = check_number(k, "beta_end", self.beta_end, low=self.beta_start)
        if self.beta_end * 1000.0 / self.timesteps >= 1.0:
            raise config_error(
                k, "beta_end", f"beta_end * 1000 / timesteps < 1 (T={self.timesteps})", self.beta_end
            )
        self.default_steps = check_int(k, "default_steps", self.default_steps)

    @property
    def default_solver(self) -> str:  # type: ignore[override]
        return self.solver

    @cached_property
    def alpha_bar(self) -> torch.Tensor:
        """(T,) float64 cumulative signal fractions."""
        betas = (
            betas_linear(self.timesteps, self.beta_start, self.beta_end)
            if self.schedule == "linear"
            else betas_cosine(self.timesteps)
        )
        return torch.cumprod(1.0 - betas, dim=0)

    def _interp(self, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """alpha_bar and d alpha_bar / dk at (possibly fractional) timesteps k (B,), piecewise linear in k."""
        table = self.alpha_bar.to(k.device)
        kf = k.double().clamp(0, self.timesteps - 1)
        k0 = kf.floor().long().clamp(max=self.timesteps - 2)
        frac = kf - k0.double()
        slope = table[k0 + 1] - table[k0]
        return table[k0] + frac * slope, slope

    # ---- model ----------------------------------------------------------------------------------------------------
    def predict(
        self, net: Net, z: torch.Tensor, k: torch.Tensor, cond: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(x_hat, eps_hat) at timesteps k (B,) from the network's eps."""
        ab, _ = self._interp(k)
        alpha, sigma = expand(ab.sqrt(), z), expand((1.0 - ab).sqrt(), z)
        eps_hat = net(z, (k.double() / self.timesteps).to(z.dtype), cond).to(z.dtype)
        return (z - sigma * eps_hat) / alpha, eps_hat

    def denoise(self, net: Net, z: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        """x_hat at timesteps t (B,) (integer-valued; fractional values interpolate alpha_bar)."""
        return self.predict(net, z, t, cond)[0]

    def velocity(self, net: Net, z: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        """dz/dk along the DDIM ODE with alpha_bar interpolated linearly between integer timesteps."""
        ab, dab = self._interp(t)
        dalpha, dsigma = dab / (2.0 * ab.sqrt()), -dab / (2.0 * (1.0 - ab).sqrt())
        x_hat, eps_hat = self.predict(net, z, t, cond)
        return expand(dalpha, z) * x_hat + expand(dsigma, z) * eps_hat

    def step(
        self, net: Net, z: torch.Tensor, t: torch.Tensor, s: torch.Tensor, cond: torch.Tensor | None
    ) -> torch.Tensor:
        """DDIM step from timestep t to s (B,); s < 0 lands on clean data, as the sampler's last step does."""
        x_hat, eps_hat = self.predict(net, z, t, cond)
        ab_s = self._interp(s)[0].masked_fill(s < 0, 1.0)
        return expand(ab_s.sqrt(), z) * x_hat + expand((1.0 - ab_s).sqrt(), z) * eps_hat

    def loss(
        self, net: Net, x: torch.Tensor, cond: torch.Tensor | None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        b = x.shape[0]
        device = generator.device if generator is not None else x.device
        k = torch.randint(0, self.timesteps, (b,), generator=generator, device=device).to(x.device)  # (B,)
        eps = randn(tuple(x.shape), x, generator)  # (B, *S)
        ab = self.alpha_bar.to(x.device)[k]
        z = expand(ab.sqrt(), x) * x + expand((1.0 - ab).sqrt(), x) * eps
        return per_sample_mse(net(z, (k.double() / self.timesteps).to(x.dtype), cond), eps).mean()

    # ---- sampling -------------------------------------------------------------------------------------------------
    def time_grid(self, steps: int) -> torch.Tensor:
        """The timestep subsequence T-1 .. 0, then -1 (clean data)."""
        return torch.tensor(timestep_subsequence(self.timesteps, steps) + [-1], dtype=torch.float64)

    def alpha_sigma(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ab = self._interp(t.reshape(-1))[0].reshape(t.shape).masked_fill(t < 0, 1.0)
        return ab.sqrt(), (1.0 - ab).sqrt()

    def x_eps(self, net: Net, z: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None):
        return self.predict(net, z, t, cond)

    def resolve_steps(self, solver: str, steps: int | None) -> int:
        """Default: ``default_steps`` for DDIM, all T timesteps for ancestral DDPM; never more than T."""
        if steps is None and solver in ("ddpm", "ancestral"):
            steps = self.timesteps
        steps = super().resolve_steps(solver, steps)
        if steps > self.timesteps:
            raise config_error(self.kind, "steps", f"at most timesteps={self.timesteps}", steps)
        return steps
