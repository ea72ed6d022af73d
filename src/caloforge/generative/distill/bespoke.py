"""Bespoke solvers (Shaul et al. 2023; studied by CaloDREAM): a K-step Euler or midpoint solver for ONE fixed flow
model whose time grid and scale-time coefficients are learned against a high-accuracy solve of that model's ODE.

The solver steps the transformed path xbar(r) = s(r) x(t(r)), r in [0, 1] on a uniform grid of m = K (Euler) or 2K
(midpoint) intervals, whose field is ubar(xbar, r) = (s'/s) xbar + t' s u(xbar / s, t). Free parameters per grid point
j: t_j (monotone, t_0 = 0, t_m = 1), t'_j > 0, s_j > 0 (s_0 = 1) and s'_j. Identity coefficients (t_j = j / m,
t' = 1, s = 1, s' = 0) give back the plain Euler / midpoint solver on the uniform grid. Training minimises the local
truncation error: each step starts on the reference trajectory at t_i and is compared with it at t_{i+1}; the
reference is a dopri5 solve on a fine knot grid, read between knots by cubic Hermite interpolation (differentiable
in t, so the grid itself is learned).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from caloforge.errors import ConfigError
from caloforge.generative.samplers.ode import dopri5

TimeField = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x (B, *S), t 0-dim tensor) -> dx/dt
BASES = {"euler": 1, "midpoint": 2}


class BespokeSolver(nn.Module):
    """K-step scale-time solver; ``identity`` parameters reproduce the base solver exactly."""

    def __init__(self, steps: int, base: str = "midpoint"):
        super().__init__()
        if base not in BASES:
            raise ConfigError(f"bespoke: field 'base': expected one of {', '.join(BASES)}, found {base!r}")
        if isinstance(steps, bool) or int(steps) != steps or steps < 1:
            raise ConfigError(f"bespoke: field 'steps': expected a positive integer, found {steps!r}")
        self.steps, self.base = int(steps), base
        m = self.steps * BASES[base]
        self.m = m
        self.t_logits = nn.Parameter(torch.zeros(m, dtype=torch.float64))  # softmax -> interval lengths in t
        self.log_dt = nn.Parameter(torch.zeros(m, dtype=torch.float64))  # t'_j, j < m
        self.log_s = nn.Parameter(torch.zeros(m, dtype=torch.float64))  # s_j, j = 1..m (s_0 = 1)
        self.ds = nn.Parameter(torch.zeros(m, dtype=torch.float64))  # s'_j, j < m

    # ---- parameters -----------------------------------------------------------------------------------------------
    def t(self) -> torch.Tensor:
        """Grid times t_0 = 0 < ... < t_m = 1 (m + 1,)."""
        inc = torch.softmax(self.t_logits, 0)
        return torch.cat([inc.new_zeros(1), torch.cumsum(inc, 0)]).clamp(0.0, 1.0)

    def s(self) -> torch.Tensor:
        return torch.cat([self.log_s.new_ones(1), self.log_s.exp()])  # (m + 1,)

    def config(self) -> dict:
        """Plain-float description (goes into the objective config, so checkpoints stay weights_only-loadable)."""
        return {"steps": self.steps, "base": self.base,
                **{k: [float(v) for v in getattr(self, k).detach()] for k in ("t_logits", "log_dt", "log_s", "ds")}}

    @classmethod
    def from_config(cls, cfg: dict) -> BespokeSolver:
        solver = cls(cfg["steps"], cfg.get("base", "midpoint"))
        for k in ("t_logits", "log_dt", "log_s", "ds"):
            values = cfg.get(k)
            if values is None:
                continue
            if len(values) != solver.m:
                raise ConfigError(f"bespoke: field '{k}': expected {solver.m} numbers, found {len(values)}")
            with torch.no_grad():
                getattr(solver, k).copy_(torch.tensor([float(v) for v in values], dtype=torch.float64))
        return solver

    # ---- solving --------------------------------------------------------------------------------------------------
    def _ubar(self, f: TimeField, x: torch.Tensor, j: int, t, s, dt) -> torch.Tensor:
        """ubar at grid point j written on x (not xbar): s'_j x + t'_j s_j u(x, t_j)."""
        return self.ds[j].to(x.dtype) * x + (dt[j] * s[j]).to(x.dtype) * f(x, t[j].to(x.dtype))

    def step(self, f: TimeField, x: torch.Tensor, i: int) -> torch.Tensor:
        """Step i (0 <= i < K) from x at t_{i} to the estimate at t_{i+1}."""
        t, s, dt, h = self.t(), self.s(), self.log_dt.exp(), 1.0 / self.steps
        if self.base == "euler":
            xbar = s[i].to(x.dtype) * x + h * self._ubar(f, x, i, t, s, dt)
            return xbar / s[i + 1].to(x.dtype)
        j = 2 * i
        xbar_half = s[j].to(x.dtype) * x + 0.5 * h * self._ubar(f, x, j, t, s, dt)
        x_half = xbar_half / s[j + 1].to(x.dtype)
        xbar = s[j].to(x.dtype) * x + h * self._ubar(f, x_half, j + 1, t, s, dt)
        return xbar / s[j + 2].to(x.dtype)

    def step_times(self) -> torch.Tensor:
        """t at the K + 1 step boundaries."""
        return self.t()[:: BASES[self.base]]

    def solve(self, f: TimeField, x: torch.Tensor) -> torch.Tensor:
        for i in range(self.steps):
            x = self.step(f, x, i)
        return x

    def nfe(self) -> int:
        return self.steps * BASES[self.base]


# ---- reference trajectory and loss ----------------------------------------------------------------------------------
class Reference:
    """States and velocities of the exact ODE solution on a uniform knot grid; ``at(t)`` interpolates (Hermite)."""

    def __init__(self, f: TimeField, x0: torch.Tensor, knots: int = 16, rtol: float = 1e-5, atol: float = 1e-5):
        self.knots = int(knots)
        states, vels = [x0], []
        x = x0
        with torch.no_grad():
            for k in range(self.knots):
                def fld(z, t):
                    return f(z, torch.tensor(t, dtype=z.dtype))

                x, _ = dopri5(fld, x, k / self.knots, (k + 1) / self.knots, rtol=rtol, atol=atol)
                states.append(x)
            for k, xs in enumerate(states):
                vels.append(f(xs, torch.tensor(k / self.knots, dtype=xs.dtype)))
        self.x = torch.stack(states)  # (knots + 1, B, *S)
        self.u = torch.stack(vels)

    def subset(self, idx: torch.Tensor) -> Reference:
        """The same reference restricted to trajectories ``idx`` (a minibatch)."""
        out = Reference.__new__(Reference)
        out.knots, out.x, out.u = self.knots, self.x[:, idx], self.u[:, idx]
        return out

    def at(self, t: torch.Tensor) -> torch.Tensor:
        """x(t) for a 0-dim t in [0, 1] (differentiable in t)."""
        k = int(torch.clamp((t.detach() * self.knots).floor(), 0, self.knots - 1))
        h = 1.0 / self.knots
        r = ((t - k * h) / h).to(self.x.dtype)
        r2, r3 = r * r, r * r * r
        h00, h10, h01, h11 = 2 * r3 - 3 * r2 + 1, r3 - 2 * r2 + r, -2 * r3 + 3 * r2, r3 - r2
        return h00 * self.x[k] + h10 * h * self.u[k] + h01 * self.x[k + 1] + h11 * h * self.u[k + 1]


def lte_loss(solver: BespokeSolver, f: TimeField, ref: Reference) -> torch.Tensor:
    """Sum over steps of the RMS local truncation error against the reference trajectory."""
    ts = solver.step_times()
    total = 0.0
    for i in range(solver.steps):
        x_i = ref.at(ts[i])
        err = solver.step(f, x_i, i) - ref.at(ts[i + 1])
        total = total + err.float().pow(2).flatten(1).mean(dim=1).sqrt().mean()
    return total


def registry_solver(solver: BespokeSolver):
    """(fn, nfe) in the solver-registry shape ``fn(model, x, ts, noise=None)`` over a bound model's
    ``velocity(x, t)`` (see the ``export`` branch's ``generative.samplers.registry``): the learned grid replaces
    ``ts``, which only fixes the step count. Thin adapter until the registry is on main; register it per run with
    ``register_solver(name, fn, nfe)``."""

    def fn(model, x: torch.Tensor, ts: torch.Tensor, noise=None) -> torch.Tensor:
        if len(ts) - 1 != solver.steps:
            raise ConfigError(f"bespoke: this solver was learned for {solver.steps} steps, found a grid of "
                              f"{len(ts) - 1}")
        with torch.no_grad():
            return solver.solve(lambda z, t: model.velocity(z, t), x)

    return fn, lambda n: solver.nfe() if n == solver.steps else None
