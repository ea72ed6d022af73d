"""The EDM sampler (Karras et al. 2022, Algorithm 2): Heun in sigma over a denoiser, optional stochastic churn.

``denoiser(x, sigma) -> x_hat`` takes a python float sigma. The probability-flow ODE is dx/dsigma = (x - D(x)) / sigma.
With S_churn = 0 the sampler is deterministic; otherwise noise is drawn from ``generator`` only.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import torch

from caloforge.generative.samplers.ode import randn_like

Denoiser = Callable[[torch.Tensor, float], torch.Tensor]


def edm_nfe(steps: int, heun: bool = True) -> int:
    """Denoiser calls for ``steps`` levels ending at sigma = 0: the last step has no Heun correction."""
    return 2 * steps - 1 if heun else steps


def edm_heun(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor | Sequence[float],
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = float("inf"),
    s_noise: float = 1.0,
    generator: torch.Generator | None = None,
    heun: bool = True,
) -> torch.Tensor:
    """Integrate from sigmas[0] (x already scaled by it) to sigmas[-1]; Euler wherever the next sigma is 0.

    ``heun=False`` gives the plain Euler sampler on the same grid (one call per step).
    """
    levels = [float(s) for s in sigmas]
    n = len(levels) - 1
    gamma_max = math.sqrt(2.0) - 1.0
    for s_cur, s_next in itertools.pairwise(levels):
        gamma = min(s_churn / n, gamma_max) if s_churn > 0 and s_tmin <= s_cur <= s_tmax else 0.0
        s_hat = s_cur * (1.0 + gamma)
        if gamma > 0:
            x = x + math.sqrt(s_hat**2 - s_cur**2) * s_noise * randn_like(x, generator)
        d_cur = (x - denoiser(x, s_hat)) / s_hat
        x_next = x + (s_next - s_hat) * d_cur
        if heun and s_next > 0:
            d_next = (x_next - denoiser(x_next, s_next)) / s_next
            x_next = x + (s_next - s_hat) * 0.5 * (d_cur + d_next)
        x = x_next
    return x
