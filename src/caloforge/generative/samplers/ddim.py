"""DDIM / ancestral steps for variance-preserving diffusion written in (alpha, sigma) form (z = alpha x + sigma eps).

One update serves every objective's (alpha, sigma) path: the objective turns the network's prediction into
(x_hat, eps_hat); ``eta = 0`` is deterministic DDIM, ``eta = 1`` is the ancestral DDPM posterior q(z_s | z_t, x_hat).
The solvers that loop over it live in ``registry``. Pure functions; noise is an input.
"""

from __future__ import annotations

import math

import torch


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
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """Move from level (alpha_t, sigma_t) to (alpha_s, sigma_s): ``alpha_s x_hat + sqrt(sigma_s^2 - c^2) eps_hat + c n``.

    ``c = eta * posterior_std``; with eta = 1 the step samples the DDPM posterior exactly; ``noise`` is n (standard
    normal like x_hat), needed only when c > 0.
    """
    c = eta * posterior_std(alpha_t, sigma_t, alpha_s, sigma_s)
    z = alpha_s * x_hat + math.sqrt(max(sigma_s**2 - c**2, 0.0)) * eps_hat
    if c > 0.0:
        if noise is None:
            raise ValueError("ddim_step: eta > 0 needs a noise tensor")
        z = z + c * noise
    return z
