"""DDIM / ancestral steps for variance-preserving diffusion written in (alpha, sigma) form (z = alpha x + sigma eps).

One update serves DDPM (discrete alpha_bar), VP with v-prediction and DDIM: the network's prediction is turned into
(x_hat, eps_hat) by the objective; ``eta = 0`` is deterministic DDIM, ``eta = 1`` is the ancestral DDPM posterior
q(z_s | z_t, x_hat). Pure functions; noise only from ``generator``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from caloforge.generative.samplers.ode import randn_like

Predictor = Callable[[torch.Tensor, int], tuple[torch.Tensor, torch.Tensor]]


def posterior_std(alpha_t: float, sigma_t: float, alpha_s: float, sigma_s: float) -> float:
    """Standard deviation of q(z_s | z_t, x) for s < t (less noisy level s); 0 when sigma_s = 0."""
    if sigma_s <= 0.0 or sigma_t <= 0.0:
        return 0.0
    alpha_ts = alpha_t / alpha_s
    var_ts = max(sigma_t**2 - alpha_ts**2 * sigma_s**2, 0.0)
    return math.sqrt(var_ts) * sigma_s / sigma_t


def ddim_step(
    x_hat: torch.Tensor,
    eps_hat: torch.Tensor,
    alpha_t: float,
    sigma_t: float,
    alpha_s: float,
    sigma_s: float,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Move from level (alpha_t, sigma_t) to (alpha_s, sigma_s): ``alpha_s x_hat + sqrt(sigma_s^2 - c^2) eps_hat + c n``.

    ``c = eta * posterior_std``; with eta = 1 the step samples the DDPM posterior exactly.
    """
    c = eta * posterior_std(alpha_t, sigma_t, alpha_s, sigma_s)
    z = alpha_s * x_hat + math.sqrt(max(sigma_s**2 - c**2, 0.0)) * eps_hat
    if c > 0.0:
        z = z + c * randn_like(z, generator)
    return z


def ddim(
    predict: Predictor,
    z: torch.Tensor,
    alphas: Sequence[float],
    sigmas: Sequence[float],
    eta: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Run ``len(alphas) - 1`` steps; ``predict(z, i) -> (x_hat, eps_hat)`` at grid point i; NFE = len(alphas) - 1."""
    for i in range(len(alphas) - 1):
        x_hat, eps_hat = predict(z, i)
        z = ddim_step(x_hat, eps_hat, alphas[i], sigmas[i], alphas[i + 1], sigmas[i + 1], eta, generator)
    return z
