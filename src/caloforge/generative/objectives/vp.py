"""Variance-preserving diffusion with v-prediction (CaloScore v2): continuous t in [0, 1], cosine logSNR schedule.

z_t = alpha x + sigma eps with alpha = sqrt(sigmoid(logsnr)), sigma = sqrt(sigmoid(-logsnr)), so alpha^2 + sigma^2 = 1;
the network predicts v = alpha eps - sigma x (t_in = t). Because (alpha, sigma) is a rotation, x and eps follow from
(z, v) without division: x = alpha z - sigma v, eps = sigma z + alpha v. Sampling runs t = 1 -> 0 with the
deterministic DDIM update (eta = 0) or the ancestral DDPM posterior (eta = 1); the last step returns x_hat.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
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
    rand,
    randn,
)


def logsnr_cosine(t: torch.Tensor, logsnr_min: float = -20.0, logsnr_max: float = 20.0) -> torch.Tensor:
    """-2 log tan(a t + b) with a, b chosen so logsnr(0) = logsnr_max and logsnr(1) = logsnr_min (then clipped)."""
    b = math.atan(math.exp(-0.5 * logsnr_max))
    a = math.atan(math.exp(-0.5 * logsnr_min)) - b
    return (-2.0 * torch.log(torch.tan(a * t + b))).clamp(logsnr_min, logsnr_max)


def alpha_sigma(logsnr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(alpha, sigma) = (sqrt(sigmoid(logsnr)), sqrt(sigmoid(-logsnr)))."""
    return torch.sigmoid(logsnr).sqrt(), torch.sigmoid(-logsnr).sqrt()


def v_target(x: torch.Tensor, eps: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """v = alpha eps - sigma x."""
    return alpha * eps - sigma * x


def x_eps_from_v(
    z: torch.Tensor, v: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, eps) = (alpha z - sigma v, sigma z + alpha v); exact inverse of (z, v) from (x, eps)."""
    return alpha * z - sigma * v, sigma * z + alpha * v


@dataclass
class VPDiffusion(Objective):
    """VP diffusion, cosine logSNR in [logsnr_min, logsnr_max], v-prediction, DDIM / ancestral sampling."""

    logsnr_min: float = -20.0
    logsnr_max: float = 20.0
    solver: str = "ddim"
    default_steps: int = 64

    kind: ClassVar[str] = "vp"

    def __post_init__(self) -> None:
        k = self.kind
        check_choice(k, "solver", self.solver, self.solvers)
        self.logsnr_min = check_number(k, "logsnr_min", self.logsnr_min)
        self.logsnr_max = check_number(k, "logsnr_max", self.logsnr_max)
        if self.logsnr_max <= self.logsnr_min:
            raise config_error(
                k, "logsnr_max", f"a value above logsnr_min={self.logsnr_min}", self.logsnr_max
            )
        self.default_steps = check_int(k, "default_steps", self.default_steps)

    @property
    def default_solver(self) -> str:  # type: ignore[override]
        return self.solver

    def schedule(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(alpha, sigma) at times t (any shape)."""
        return alpha_sigma(logsnr_cosine(t, self.logsnr_min, self.logsnr_max))

    # ---- model ----------------------------------------------------------------------------------------------------
    def predict(
        self, net: Net, z: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(x_hat, eps_hat) (B, *S) from the network's v at times t (B,)."""
        alpha, sigma = (expand(s, z) for s in self.schedule(t))
        return x_eps_from_v(z, net(z, t, cond).to(z.dtype), alpha, sigma)

    def denoise(self, net: Net, z: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        return self.predict(net, z, t, cond)[0]

    def velocity(self, net: Net, z: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        """dz/dt = alpha'(t) x_hat + sigma'(t) eps_hat along the DDIM ODE (x_hat, eps_hat held fixed)."""
        b = math.atan(math.exp(-0.5 * self.logsnr_max))
        a = math.atan(math.exp(-0.5 * self.logsnr_min)) - b
        dlogsnr = -4.0 * a / torch.sin(2.0 * (a * t + b))  # (B,)
        alpha, sigma = self.schedule(t)
        dalpha, dsigma = 0.5 * alpha * sigma**2 * dlogsnr, -0.5 * sigma * alpha**2 * dlogsnr
        x_hat, eps_hat = self.predict(net, z, t, cond)
        return expand(dalpha, z) * x_hat + expand(dsigma, z) * eps_hat

    def step(
        self, net: Net, z: torch.Tensor, t: torch.Tensor, s: torch.Tensor, cond: torch.Tensor | None
    ) -> torch.Tensor:
        """DDIM step t -> s: alpha_s x_hat + sigma_s eps_hat; s <= 0 lands on clean data, as the sampler does."""
        x_hat, eps_hat = self.predict(net, z, t, cond)
        alpha_s, sigma_s = self.schedule(s)
        clean = s <= 0
        alpha_s, sigma_s = alpha_s.masked_fill(clean, 1.0), sigma_s.masked_fill(clean, 0.0)
        return expand(alpha_s, z) * x_hat + expand(sigma_s, z) * eps_hat

    def loss(
        self, net: Net, x: torch.Tensor, cond: torch.Tensor | None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        t = rand((x.shape[0],), x, generator)  # (B,)
        eps = randn(tuple(x.shape), x, generator)  # (B, *S)
        alpha, sigma = (expand(s, x) for s in self.schedule(t))
        z = alpha * x + sigma * eps
        return per_sample_mse(net(z, t, cond), v_target(x, eps, alpha, sigma)).mean()

    # ---- sampling -------------------------------------------------------------------------------------------------
    def time_grid(self, steps: int) -> torch.Tensor:
        return torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)

    def alpha_sigma(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The schedule, with (1, 0) at t <= 0: the last step lands on clean data."""
        alpha, sigma = self.schedule(t)
        clean = t <= 0
        return alpha.masked_fill(clean, 1.0), sigma.masked_fill(clean, 0.0)

    def x_eps(self, net: Net, z: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None):
        return self.predict(net, z, t, cond)
