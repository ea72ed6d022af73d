"""Conditional flow matching on the straight path z_t = (1 - t) noise + t x (t = 1 is data; CaloArt / JiT convention).

The network output space (``prediction``) and the space the loss is measured in (``loss_space``) are decoupled; both
are one of x (clean data), v (velocity x - noise) or eps (noise), with exact conversions whose divisions by t or
1 - t are clamped at ``t_eps``. The training target is the true value in prediction space sent through the same
conversion as the network output, so clamping treats both sides alike (JiT-aligned) and an exact network has zero
loss. Sampling integrates dz/dt = v from t = 0 to 1 on a uniform or SD3-shifted grid.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, ClassVar

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
from caloforge.generative.samplers import grids, ode

SPACES = ("x", "v", "eps")


def convert(
    pred: torch.Tensor, z: torch.Tensor, t: torch.Tensor, src: str, dst: str, t_eps: float
) -> torch.Tensor:
    """Express a prediction in space ``src`` as space ``dst`` given z_t and t (broadcastable to z)."""
    if src == dst:
        return pred
    one_minus_t = (1.0 - t).clamp_min(t_eps)
    t_safe = t.clamp_min(t_eps)
    if src == "x":
        x = pred
        return (x - z) / one_minus_t if dst == "v" else (z - t * x) / one_minus_t
    if src == "v":
        v = pred
        return z + (1.0 - t) * v if dst == "x" else z - t * v
    eps = pred  # src == "eps"
    return (z - (1.0 - t) * eps) / t_safe if dst == "x" else (z - eps) / t_safe


@dataclass
class FlowMatching(Objective):
    """Flow matching with (prediction, loss_space) in {x, v, eps}^2, uniform or logit-normal time sampling."""

    prediction: str = "v"
    loss_space: str = "v"
    time_sampling: str = "logit_normal"
    time_mean: float = 0.0
    time_std: float = 1.0
    t_eps: float = 1e-5
    shift: float = 1.0
    solver: str = "heun"
    default_steps: int = 32
    sde_noise: float = 1.0

    kind: ClassVar[str] = "flow"
    own_solvers: ClassVar[tuple[str, ...]] = ("dopri5", "sde")
    grid_options: ClassVar[frozenset[str]] = frozenset({"shift"})
    sample_options: ClassVar[frozenset[str]] = frozenset({"shift", "rtol", "atol", "max_steps", "euler_last"})

    def __post_init__(self) -> None:
        k = self.kind
        check_choice(k, "prediction", self.prediction, SPACES)
        check_choice(k, "loss_space", self.loss_space, SPACES)
        check_choice(k, "time_sampling", self.time_sampling, ("uniform", "logit_normal"))
        check_choice(k, "solver", self.solver, self.solvers)
        self.time_mean = check_number(k, "time_mean", self.time_mean)
        self.time_std = check_number(k, "time_std", self.time_std, low=0.0)
        self.t_eps = check_number(k, "t_eps", self.t_eps, low=0.0)
        if self.t_eps >= 0.5:
            raise config_error(k, "t_eps", "a number in (0, 0.5)", self.t_eps)
        self.shift = check_number(k, "shift", self.shift, low=0.0)
        self.sde_noise = check_number(k, "sde_noise", self.sde_noise, low=0.0, strict=False)
        self.default_steps = check_int(k, "default_steps", self.default_steps)

    @property
    def default_solver(self) -> str:  # type: ignore[override]
        return self.solver

    # ---- training -------------------------------------------------------------------------------------------------
    def sample_t(self, n: int, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Training times (n,) in [0, 1]: uniform or sigmoid(N(time_mean, time_std))."""
        if self.time_sampling == "uniform":
            return rand((n,), like, generator)
        return torch.sigmoid(self.time_mean + self.time_std * randn((n,), like, generator))

    def loss(
        self, net: Net, x: torch.Tensor, cond: torch.Tensor | None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        noise = randn(tuple(x.shape), x, generator)  # (B, *S)
        t = self.sample_t(x.shape[0], x, generator)  # (B,)
        tb = expand(t, x)  # (B, 1, ..., 1)
        z = (1.0 - tb) * noise + tb * x  # (B, *S)
        truth = {"x": x, "v": x - noise, "eps": noise}[self.prediction]
        target = convert(truth, z, tb, self.prediction, self.loss_space, self.t_eps)
        pred = convert(net(z, t, cond), z, tb, self.prediction, self.loss_space, self.t_eps)
        return per_sample_mse(pred, target).mean()

    # ---- distillation helpers -------------------------------------------------------------------------------------
    def predict(
        self, net: Net, z: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None, space: str
    ) -> torch.Tensor:
        """Network output at flow time t (B,), expressed in ``space`` (x, v or eps)."""
        return convert(net(z, t, cond), z, expand(t, z), self.prediction, space, self.t_eps)

    def denoise(self, net: Net, z: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        return self.predict(net, z, t, cond, "x")

    def velocity(self, net: Net, z: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        return self.predict(net, z, t, cond, "v")

    # ---- sampling -------------------------------------------------------------------------------------------------
    def time_grid(self, steps: int, shift: float | None = None) -> torch.Tensor:
        return self.grid(steps, shift)

    def alpha_sigma(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z_t = t x + (1 - t) noise."""
        return t, 1.0 - t

    def grid(self, steps: int, shift: float | None = None) -> torch.Tensor:
        """Times 0 -> 1 used by the fixed-step solvers (uniform when shift = 1)."""
        shift = self.shift if shift is None else shift
        return grids.uniform(steps) if shift == 1.0 else grids.shifted(steps, shift)

    def eval_time(self, t: float) -> float:
        """Where the sampler evaluates the field: an x-prediction carries no velocity at t = 1 (x_hat = z there) and
        an eps-prediction none at t = 0 (eps_hat = z), so those ends are moved in by t_eps; v is used as is."""
        if self.prediction == "x":
            return min(t, 1.0 - self.t_eps)
        if self.prediction == "eps":
            return max(t, self.t_eps)
        return t

    def step(
        self, net: Net, z: torch.Tensor, t: torch.Tensor, s: torch.Tensor, cond: torch.Tensor | None
    ) -> torch.Tensor:
        """Euler step z + (s - t) v(z, t), with t moved in from the singular end like the sampler does."""
        lo = self.t_eps if self.prediction == "eps" else 0.0
        hi = 1.0 - self.t_eps if self.prediction == "x" else 1.0
        v = self.velocity(net, z, t.clamp(lo, hi), cond)  # (B, *S)
        return z + expand(s - t, z) * v

    def nfe(self, solver: str | None = None, steps: int | None = None, euler_last: bool = True) -> int | None:
        solver = self.resolve_solver(solver)
        steps = self.resolve_steps(solver, steps)
        if solver == "dopri5":
            return None
        if solver == "sde":
            return steps
        return super().nfe("heun_full" if solver == "heun" and not euler_last else solver, steps)

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
        field = self.bind(net, cond).velocity
        if solver == "dopri5":
            out, _ = ode.dopri5(
                field,
                noise,
                0.0,
                1.0,
                rtol=float(opts.get("rtol", 1e-5)),
                atol=float(opts.get("atol", 1e-5)),
                max_steps=int(opts.get("max_steps", 1000)),
            )
            return out
        if solver == "sde":
            return self._sample_sde(field, noise, self.grid(steps, opts.get("shift")), generator)
        if solver == "heun" and not bool(opts.get("euler_last", True)):
            solver = "heun_full"
        return super()._sample(net, noise, cond, solver, steps, generator, **opts)

    def own_solver(self, name: str):
        """dopri5 (adaptive; not exportable: its step count is not fixed) and the SDE (its Brownian increments are
        the ``noise(i)`` input, so a seeded generator reproduces it) in the solver-registry shape."""
        from caloforge.generative.samplers.registry import Solver

        if name == "dopri5":
            return Solver("dopri5", lambda model, x, ts, noise=None: ode.dopri5(
                model.velocity, x, float(ts[0]), float(ts[-1]))[0], lambda n: None,
                description="adaptive Dormand-Prince 5(4), rtol = atol = 1e-5")
        if name == "sde":
            return Solver("sde", self._registry_sde, lambda n: n, stochastic=True,
                          description="Euler-Maruyama with the ODE's marginals")
        return super().own_solver(name)

    def _registry_sde(self, model, x: torch.Tensor, ts: torch.Tensor, noise) -> torch.Tensor:
        g, times = self.sde_noise, [float(t) for t in ts]
        for i, (t0, t1) in enumerate(itertools.pairwise(times)):
            v = model.velocity(x, t0)
            x = x + (t1 - t0) * (v - 0.5 * g**2 * (1.0 - t0) * (x - t0 * v))
            if i < len(times) - 2:
                x = x + g * (1.0 - t0) * abs(t1 - t0) ** 0.5 * noise(i)
        return x

    def _sample_sde(self, field, noise: torch.Tensor, ts: torch.Tensor, generator) -> torch.Tensor:
        """Euler-Maruyama on dz = [v + g^2/2 score] dt + g dW with g = sde_noise (1 - t); same marginals as the ODE.

        The score of the straight path is -E[eps | z] / (1 - t) with E[eps | z] = z - t v, so
        g^2/2 score = -sde_noise^2 (1 - t)(z - t v) / 2, which stays finite at t = 1.
        """
        g2 = self.sde_noise**2

        def drift(z: torch.Tensor, t: float) -> torch.Tensor:
            v = field(z, t)
            return v - 0.5 * g2 * (1.0 - t) * (z - t * v)

        return ode.euler_maruyama(drift, lambda t: self.sde_noise * (1.0 - t), noise, ts, generator)
