"""EDM (Karras et al. 2022; CaloDiT-2 and CaloArt's alternative): preconditioned denoiser, log-normal noise levels.

D(z, sigma) = c_skip z + c_out F(c_in z, c_noise) with c_noise = ln(sigma) / 4 passed as t_in; the loss weight
(sigma^2 + sd^2) / (sigma sd)^2 makes the effective target of F unit-variance at every noise level. Sampling is Heun
on the Karras rho = 7 grid (last step Euler: 2N - 1 NFE) with optional seeded stochastic churn.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from caloforge.generative.objectives.base import (
    Net,
    Objective,
    check_choice,
    check_int,
    check_number,
    expand,
    per_sample_mse,
    randn,
)
from caloforge.generative.samplers import grids
from caloforge.generative.samplers.edm import edm_heun, edm_nfe


def precondition(sigma: torch.Tensor, sigma_data: float) -> tuple[torch.Tensor, ...]:
    """(c_skip, c_out, c_in, c_noise) for noise levels sigma (any shape)."""
    sd2 = sigma_data**2
    s2 = sigma**2
    c_skip = sd2 / (s2 + sd2)
    c_out = sigma * sigma_data / (s2 + sd2).sqrt()
    c_in = 1.0 / (s2 + sd2).sqrt()
    c_noise = sigma.log() / 4.0
    return c_skip, c_out, c_in, c_noise


def loss_weight(sigma: torch.Tensor, sigma_data: float) -> torch.Tensor:
    """lambda(sigma) = (sigma^2 + sd^2) / (sigma sd)^2 = 1 / c_out^2."""
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2


@dataclass
class EDM(Objective):
    """Karras EDM with Heun / Euler sampling on the Karras grid."""

    sigma_data: float = 0.5
    p_mean: float = -1.2
    p_std: float = 1.2
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    rho: float = 7.0
    solver: str = "heun"
    default_steps: int = 32
    s_churn: float = 0.0
    s_tmin: float = 0.0
    s_tmax: float | None = None  # None = no upper limit (JSON has no infinity)
    s_noise: float = 1.0

    kind: ClassVar[str] = "edm"
    grid_options: ClassVar[frozenset[str]] = frozenset({"sigma_min", "sigma_max", "rho"})
    sample_options: ClassVar[frozenset[str]] = frozenset(
        {"s_churn", "s_tmin", "s_tmax", "s_noise", "sigma_min", "sigma_max", "rho"}
    )

    def __post_init__(self) -> None:
        k = self.kind
        check_choice(k, "solver", self.solver, self.solvers)
        self.sigma_data = check_number(k, "sigma_data", self.sigma_data, low=0.0)
        self.p_mean = check_number(k, "p_mean", self.p_mean)
        self.p_std = check_number(k, "p_std", self.p_std, low=0.0)
        self.sigma_min = check_number(k, "sigma_min", self.sigma_min, low=0.0)
        self.sigma_max = check_number(k, "sigma_max", self.sigma_max, low=self.sigma_min)
        self.rho = check_number(k, "rho", self.rho, low=0.0)
        self.default_steps = check_int(k, "default_steps", self.default_steps)
        self.s_churn = check_number(k, "s_churn", self.s_churn, low=0.0, strict=False)
        self.s_tmin = check_number(k, "s_tmin", self.s_tmin, low=0.0, strict=False)
        if self.s_tmax is not None:
            self.s_tmax = check_number(k, "s_tmax", self.s_tmax, low=0.0, strict=False)
        self.s_noise = check_number(k, "s_noise", self.s_noise, low=0.0, strict=False)

    @property
    def default_solver(self) -> str:  # type: ignore[override]
        return self.solver

    # ---- model ----------------------------------------------------------------------------------------------------
    def denoise(self, net: Net, z: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        """D(z, sigma) for noise levels t = sigma (B,)."""
        c_skip, c_out, c_in, c_noise = precondition(t, self.sigma_data)  # each (B,)
        out = net(expand(c_in, z) * z, c_noise.to(z.dtype), cond)  # (B, *S)
        return expand(c_skip, z) * z + expand(c_out, z) * out.to(z.dtype)

    def velocity(self, net: Net, z: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        """dz/dsigma = (z - D(z, sigma)) / sigma of the probability-flow ODE."""
        return (z - self.denoise(net, z, t, cond)) / expand(t, z)

    def step(
        self, net: Net, z: torch.Tensor, t: torch.Tensor, s: torch.Tensor, cond: torch.Tensor | None
    ) -> torch.Tensor:
        """Euler step in sigma from t to s, i.e. DDIM for this process: D + (s / t)(z - D)."""
        d = self.denoise(net, z, t, cond)
        return d + expand(s / t, z) * (z - d)

    def loss(
        self, net: Net, x: torch.Tensor, cond: torch.Tensor | None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        b = x.shape[0]
        sigma = (self.p_mean + self.p_std * randn((b,), x, generator)).exp()  # (B,)
        z = x + expand(sigma, x) * randn(tuple(x.shape), x, generator)  # (B, *S)
        d = self.denoise(net, z, sigma, cond)
        return (loss_weight(sigma.float(), self.sigma_data) * per_sample_mse(d, x)).mean()

    # ---- sampling -------------------------------------------------------------------------------------------------
    def time_grid(self, steps: int, sigma_min=None, sigma_max=None, rho=None) -> torch.Tensor:
        """The Karras grid sigma_max -> sigma_min, then 0."""
        return grids.karras(
            steps,
            float(self.sigma_min if sigma_min is None else sigma_min),
            float(self.sigma_max if sigma_max is None else sigma_max),
            float(self.rho if rho is None else rho),
        )

    def prior(self, noise: torch.Tensor, ts: torch.Tensor) -> torch.Tensor:
        return noise * float(ts[0])

    def alpha_sigma(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.ones_like(t), t

    def eval_time(self, t: float) -> float:
        """sigma = 0 has no velocity; a solver that evaluates there (RK4's last stage) uses sigma_min."""
        return max(t, self.sigma_min)

    def nfe(self, solver: str | None = None, steps: int | None = None) -> int | None:
        solver = self.resolve_solver(solver)
        if solver in ("heun", "euler"):
            return edm_nfe(self.resolve_steps(solver, steps), heun=solver == "heun")
        return super().nfe(solver, steps)

    def _sample(
        self,
        net: Net,
        noise: torch.Tensor,
        cond: torch.Tensor | None,
        solver: str,
        steps: int,
        generator: torch.Generator | None,
        **opts: Any,
    ) -> torch.Tensor:
        s_churn = float(opts.get("s_churn", self.s_churn))
        if solver not in ("heun", "euler") or s_churn <= 0:
            return super()._sample(net, noise, cond, solver, steps, generator, **opts)
        # stochastic churn (EDM Algorithm 2 with S_churn > 0): its own loop, noise from ``generator``
        sigmas = self.time_grid(steps, **{k: v for k, v in opts.items() if k in self.grid_options})
        s_tmax = opts.get("s_tmax", self.s_tmax)

        def denoiser(z: torch.Tensor, sigma: float) -> torch.Tensor:
            return self.denoise(
                net, z, torch.full((z.shape[0],), sigma, device=z.device, dtype=z.dtype), cond
            )

        return edm_heun(
            denoiser,
            noise * float(sigmas[0]),
            sigmas,
            s_churn=s_churn,
            s_tmin=float(opts.get("s_tmin", self.s_tmin)),
            s_tmax=math.inf if s_tmax is None else float(s_tmax),
            s_noise=float(opts.get("s_noise", self.s_noise)),
            generator=generator,
            heun=solver == "heun",
        )
