"""Time / noise-level grids for the samplers (pure functions returning 1-D float64 tensors).

Flow-matching grids run from t = 0 (noise) to t = 1 (data). The Karras grid runs from sigma_max down to sigma_min and
ends with an appended 0, so ``steps`` noise levels give ``steps`` sampler steps.
"""

from __future__ import annotations

import torch

from caloforge.errors import ConfigError


def _check_steps(steps: int) -> int:
    if int(steps) != steps or steps < 1:
        raise ConfigError(f"sampler: field 'steps': expected a positive integer, found {steps!r}")
    return int(steps)


def uniform(steps: int) -> torch.Tensor:
    """``steps + 1`` equally spaced times from 0 to 1."""
    return torch.linspace(0.0, 1.0, _check_steps(steps) + 1, dtype=torch.float64)


def shift_time(t: torch.Tensor, shift: float) -> torch.Tensor:
    """SD3 time shift applied to the noise level 1 - t: ``t' = t / (shift - (shift - 1) t)``.

    In SD3 terms the noise level s = 1 - t becomes ``shift s / (1 + (shift - 1) s)``; shift > 1 spends more steps near
    the noise end (t = 0), shift < 1 near the data end; shift = 1 is the identity. Equivalently this is
    ``t' = k t / (1 + (k - 1) t)`` with k = 1 / shift.
    """
    if not shift > 0:
        raise ConfigError(f"sampler: field 'shift': expected a positive number, found {shift!r}")
    return t / (shift - (shift - 1.0) * t)


def shifted(steps: int, shift: float) -> torch.Tensor:
    """The uniform grid passed through :func:`shift_time` (end points 0 and 1 are kept)."""
    return shift_time(uniform(steps), shift)


def karras(steps: int, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0) -> torch.Tensor:
    """Karras et al. (2022) noise levels: ``steps`` values from sigma_max to sigma_min spaced in sigma^(1/rho), then 0."""
    steps = _check_steps(steps)
    if not 0 < sigma_min < sigma_max:
        raise ConfigError(
            f"sampler: fields 'sigma_min'/'sigma_max': expected 0 < sigma_min < sigma_max, "
            f"found {sigma_min!r}/{sigma_max!r}"
        )
    ramp = (
        torch.linspace(0.0, 1.0, steps, dtype=torch.float64)
        if steps > 1
        else torch.zeros(1, dtype=torch.float64)
    )
    lo, hi = sigma_min ** (1.0 / rho), sigma_max ** (1.0 / rho)
    sigmas = (hi + ramp * (lo - hi)) ** rho
    return torch.cat([sigmas, torch.zeros(1, dtype=torch.float64)])
