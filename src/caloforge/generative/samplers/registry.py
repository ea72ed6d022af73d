"""The one solver registry: every sampler is a small function of a model-derived field and a tensor time grid.

A solver has the k-diffusion shape ``fn(model, x, ts, noise=None) -> x``:

- ``model`` is an objective bound to a network and conditions (``Objective.bind``) and offers
  ``velocity(x, t)`` (dx/dt of the objective's deterministic sampling ODE in its own time variable),
  ``denoise(x, t)`` (clean-data estimate), ``x_eps(x, t)`` (clean-data and noise estimates) and
  ``alpha_sigma(t)`` (z_t = alpha x + sigma eps, python floats); ``t`` is a grid point (python float or 0-d tensor);
- ``x`` is the start point (the objective's prior: noise, scaled for EDM), ``ts`` the objective's 1-D tensor grid
  from the noise end to the data end (``Objective.time_grid``);
- ``noise`` is ``None`` for deterministic solvers and ``noise(i) -> tensor like x`` for stochastic ones, so the
  randomness is an input (a seeded generator in Python, a graph input or in-graph draw once exported).

``nfe(steps)`` says how many network calls the solver makes on a grid of ``steps`` steps. A learned (bespoke)
solver registers the same way with ``register_solver(name, fn, nfe)``; every objective can then use it.
Deterministic solvers unroll into a fixed graph for a fixed step count (export).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from caloforge.errors import ConfigError
from caloforge.generative.samplers import ode
from caloforge.generative.samplers.ddim import ddim_step


@dataclass(frozen=True)
class Solver:
    name: str
    fn: Callable
    nfe: Callable[[int], int]
    stochastic: bool = False
    description: str = ""


SOLVERS: dict[str, Solver] = {}


def register_solver(name: str, fn: Callable, nfe: Callable[[int], int], stochastic: bool = False,
                    description: str = "", replace: bool = False) -> Solver:
    """Add a solver under ``name`` (see the module docstring for the signature); returns its record."""
    if not isinstance(name, str) or not name.isidentifier():
        raise ConfigError(f"solver registry: name: expected an identifier like 'heun', found {name!r}")
    if name in SOLVERS and not replace:
        raise ConfigError(f"solver registry: solver {name!r} is already registered (pass replace=True)")
    SOLVERS[name] = Solver(name, fn, nfe, bool(stochastic), description)
    return SOLVERS[name]


def get_solver(name: str) -> Solver:
    if name not in SOLVERS:
        raise ConfigError(f"sampler: field 'solver': expected one of {', '.join(SOLVERS)}, found {name!r}")
    return SOLVERS[name]


def solver_names() -> tuple[str, ...]:
    return tuple(SOLVERS)


# ---- the built-in solvers ------------------------------------------------------------------------------------------
def euler(model, x: torch.Tensor, ts: torch.Tensor, noise=None) -> torch.Tensor:
    return ode.euler(model.velocity, x, ts)


def midpoint(model, x: torch.Tensor, ts: torch.Tensor, noise=None) -> torch.Tensor:
    return ode.midpoint(model.velocity, x, ts)


def heun(model, x: torch.Tensor, ts: torch.Tensor, noise=None) -> torch.Tensor:
    """Heun with an Euler last step (EDM Algorithm 2 without churn; CaloArt): the field may be singular at the
    data end (sigma = 0, x-prediction at t = 1), and the correction there buys little."""
    return ode.heun(model.velocity, x, ts, euler_last=True)


def heun_full(model, x: torch.Tensor, ts: torch.Tensor, noise=None) -> torch.Tensor:
    return ode.heun(model.velocity, x, ts, euler_last=False)


def rk4(model, x: torch.Tensor, ts: torch.Tensor, noise=None) -> torch.Tensor:
    return ode.rk4(model.velocity, x, ts)


def edm_heun(model, x: torch.Tensor, ts: torch.Tensor, noise=None) -> torch.Tensor:
    """EDM's Heun step in the variable y = x / alpha against r = sigma / alpha, where dy/dr = eps_hat (for EDM itself
    alpha = 1, r = sigma). A step from pure noise (alpha = 0, flow's t = 0) or onto clean data (sigma = 0) has no
    finite second stage and is the Euler step there (= DDIM): NFE 2N - 1, or 2N - 2 starting from alpha = 0."""
    times = [float(t) for t in ts]
    for i in range(len(times) - 1):
        (a0, s0), (a1, s1) = model.alpha_sigma(times[i]), model.alpha_sigma(times[i + 1])
        x_hat0, eps0 = model.x_eps(x, times[i])
        x_next = a1 * x_hat0 + s1 * eps0
        if a0 > 0 and s1 > 0:
            eps1 = model.x_eps(x_next, times[i + 1])[1]
            x_next = a1 * (x / a0 + (s1 / a1 - s0 / a0) * 0.5 * (eps0 + eps1))
        x = x_next
    return x


def edm_heun_nfe(steps: int, starts_at_pure_noise: bool = False) -> int:
    return 2 * steps - 1 - int(starts_at_pure_noise and steps > 1)


def _ddim(model, x: torch.Tensor, ts: torch.Tensor, noise, eta: float) -> torch.Tensor:
    times = [float(t) for t in ts]
    for i in range(len(times) - 1):
        x_hat, eps_hat = model.x_eps(x, times[i])
        (a_t, s_t), (a_s, s_s) = model.alpha_sigma(times[i]), model.alpha_sigma(times[i + 1])
        last = i == len(times) - 2
        x = ddim_step(x_hat, eps_hat, a_t, s_t, a_s, s_s, eta, None if noise is None or last else noise(i))
    return x


def ddim(model, x: torch.Tensor, ts: torch.Tensor, noise=None) -> torch.Tensor:
    """Deterministic DDIM over the objective's (alpha, sigma) path: z_s = alpha_s x_hat + sigma_s eps_hat."""
    return _ddim(model, x, ts, None, 0.0)


def ancestral(model, x: torch.Tensor, ts: torch.Tensor, noise=None) -> torch.Tensor:
    """DDIM with eta = 1: samples the posterior q(z_s | z_t, x_hat) (the original DDPM sampler on the full grid)."""
    return _ddim(model, x, ts, noise, 1.0)


def _steps(n: int) -> int:
    return n


register_solver("euler", euler, _steps, description="explicit Euler on the velocity")
register_solver("midpoint", midpoint, lambda n: 2 * n, description="explicit midpoint (RK2)")
register_solver("heun", heun, lambda n: 2 * n - 1, description="Heun, last step Euler (EDM Algorithm 2, CaloArt)")
register_solver("heun_full", heun_full, lambda n: 2 * n, description="Heun on every step")
register_solver("rk4", rk4, lambda n: 4 * n, description="classical fourth-order Runge-Kutta")
register_solver("edm_heun", edm_heun, edm_heun_nfe, description="EDM Heun on the denoiser in sigma/alpha")
register_solver("ddim", ddim, _steps, description="deterministic DDIM (eta = 0)")
register_solver("ancestral", ancestral, _steps, stochastic=True, description="DDPM posterior sampling (eta = 1)")
register_solver("ddpm", ancestral, _steps, stochastic=True, description="alias of ancestral")

__all__ = ["SOLVERS", "Solver", "get_solver", "register_solver", "solver_names"]
