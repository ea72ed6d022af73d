"""Fixed-step and adaptive ODE integrators over a field ``f(x, t) -> dx/dt`` (t a python float).

Pure functions with no knowledge of networks, objectives or data: the objective wraps its network into ``f``. The
grid ``ts`` may increase or decrease. Each docstring states the number of field evaluations (NFE).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import torch

from caloforge.errors import CaloforgeError

Field = Callable[[torch.Tensor, float], torch.Tensor]


def _times(ts: torch.Tensor | Sequence[float]) -> list[float]:
    times = [float(t) for t in ts]
    if len(times) < 2:
        raise CaloforgeError(f"sampler: time grid: expected at least 2 points, found {len(times)}")
    return times


def euler(f: Field, x: torch.Tensor, ts: torch.Tensor | Sequence[float]) -> torch.Tensor:
    """Explicit Euler; NFE = len(ts) - 1."""
    times = _times(ts)
    for t0, t1 in itertools.pairwise(times):
        x = x + (t1 - t0) * f(x, t0)
    return x


def midpoint(f: Field, x: torch.Tensor, ts: torch.Tensor | Sequence[float]) -> torch.Tensor:
    """Explicit midpoint (RK2); NFE = 2 (len(ts) - 1)."""
    times = _times(ts)
    for t0, t1 in itertools.pairwise(times):
        h = t1 - t0
        k1 = f(x, t0)
        x = x + h * f(x + 0.5 * h * k1, t0 + 0.5 * h)
    return x


def heun(
    f: Field, x: torch.Tensor, ts: torch.Tensor | Sequence[float], euler_last: bool = False
) -> torch.Tensor:
    """Heun (trapezoidal RK2); NFE = 2N, or 2N - 1 with ``euler_last`` (CaloArt: the field may be singular at t = 1)."""
    times = _times(ts)
    n = len(times) - 1
    for i, (t0, t1) in enumerate(itertools.pairwise(times)):
        h = t1 - t0
        k1 = f(x, t0)
        x_pred = x + h * k1
        if euler_last and i == n - 1:
            x = x_pred
        else:
            x = x + 0.5 * h * (k1 + f(x_pred, t1))
    return x


def rk4(f: Field, x: torch.Tensor, ts: torch.Tensor | Sequence[float]) -> torch.Tensor:
    """Classical fourth-order Runge-Kutta; NFE = 4 (len(ts) - 1)."""
    times = _times(ts)
    for t0, t1 in itertools.pairwise(times):
        h = t1 - t0
        k1 = f(x, t0)
        k2 = f(x + 0.5 * h * k1, t0 + 0.5 * h)
        k3 = f(x + 0.5 * h * k2, t0 + 0.5 * h)
        k4 = f(x + h * k3, t1)
        x = x + (h / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
    return x


def euler_maruyama(
    drift: Field,
    diffusion: Callable[[float], float],
    x: torch.Tensor,
    ts: torch.Tensor | Sequence[float],
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Euler-Maruyama for dx = drift dt + g(t) dW; NFE = len(ts) - 1; no noise is added on the last step."""
    times = _times(ts)
    n = len(times) - 1
    for i, (t0, t1) in enumerate(itertools.pairwise(times)):
        h = t1 - t0
        x = x + h * drift(x, t0)
        if i < n - 1:
            x = x + diffusion(t0) * abs(h) ** 0.5 * randn_like(x, generator)
    return x


def randn_like(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Standard normal noise shaped like x, drawn from ``generator`` on its own device (global RNG if None)."""
    device = generator.device if generator is not None else x.device
    return torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)


# Dormand-Prince 5(4) tableau (Dormand & Prince 1980); the 7th stage is the 5th-order solution's field (FSAL).
_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
_A = (
    (),
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
    (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
)
_B5 = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0)
_B4 = (5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40)


def dopri5(
    f: Field,
    x: torch.Tensor,
    t0: float,
    t1: float,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    max_steps: int = 1000,
    first_step: float | None = None,
) -> tuple[torch.Tensor, int]:
    """Adaptive Dormand-Prince 5(4) from t0 to t1; returns (x(t1), NFE used).

    The error is the RMS over all elements of the batch of ``err / (atol + rtol max(|x|, |x_new|))``, so one step size
    serves the whole batch. NFE = 1 + 6 x (accepted + rejected steps) thanks to first-same-as-last.
    """
    span = float(t1) - float(t0)
    if span == 0.0:
        return x, 0
    direction = 1.0 if span > 0 else -1.0
    h = abs(first_step) if first_step is not None else 0.05 * abs(span)
    t, nfe, attempts = float(t0), 0, 0
    k1 = f(x, t)
    nfe += 1
    while direction * (float(t1) - t) > 1e-12 * abs(span):
        if attempts >= max_steps:
            raise CaloforgeError(
                f"sampler: dopri5: expected to reach t={t1} within max_steps={max_steps}, stopped at t={t:.6g}; "
                f"loosen rtol/atol or raise max_steps"
            )
        attempts += 1
        h = min(h, abs(float(t1) - t))
        hs = direction * h
        ks = [k1]
        for stage in range(1, 7):
            xi = x + hs * sum(a * k for a, k in zip(_A[stage], ks) if a != 0.0)
            ks.append(f(xi, t + _C[stage] * hs))
            nfe += 1
        x_new = xi  # the 7th stage point is the 5th-order solution (its weights equal _B5)
        err = hs * sum((b5 - b4) * k for b5, b4, k in zip(_B5, _B4, ks) if b5 != b4)
        scale = atol + rtol * torch.maximum(x.abs(), x_new.abs())
        err_norm = float(torch.sqrt(torch.mean((err / scale).double() ** 2)))
        if err_norm <= 1.0:
            t, x, k1 = t + hs, x_new, ks[6]
        factor = 10.0 if err_norm == 0.0 else min(10.0, max(0.2, 0.9 * err_norm**-0.2))
        h = h * factor
    return x, nfe
