"""The objective interface shared by flow matching, EDM, DDPM and VP, plus small helpers they all use.

An objective owns everything that depends on the noising process: how training pairs are drawn, what the network
input ``t_in`` means, how the network output is turned into a clean-data estimate, and which samplers apply. A network
is any callable ``net(z, t_in, cond)`` with z (B, *S), t_in (B,), cond (B, C) or None, returning a tensor like z.
Objectives are dataclasses whose init fields are exactly their config (``config()`` round-trips through
``build_objective``).
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import torch

from caloforge.errors import ConfigError
from caloforge.generative.samplers import registry

Net = Callable[[torch.Tensor, torch.Tensor, "torch.Tensor | None"], torch.Tensor]


class CallCounter:
    """Wraps a network and counts its calls, so samplers report the NFE they actually used."""

    def __init__(self, net: Net):
        self.net, self.calls = net, 0

    def __call__(self, z: torch.Tensor, t_in: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        self.calls += 1
        return self.net(z, t_in, cond)


class _SolverNames:
    """``Objective.solvers``: every registered solver plus the objective's own (``own_solvers``), read at call time
    so that solvers registered later (learned ones) are included."""

    def __get__(self, obj, owner) -> tuple[str, ...]:
        return registry.solver_names() + tuple(owner.own_solvers)


class BoundModel:
    """An objective bound to a network and conditions: the ``model`` a registered solver integrates (see
    ``generative.samplers.registry``). ``t`` is a grid point (python float or 0-d tensor)."""

    def __init__(self, objective: Objective, net: Net, cond: torch.Tensor | None):
        self.objective, self.net, self.cond = objective, net, cond

    def _t(self, x: torch.Tensor, t) -> torch.Tensor:
        return full_t(self.objective.eval_time(float(t)), x)

    def velocity(self, x: torch.Tensor, t) -> torch.Tensor:
        return self.objective.velocity(self.net, x, self._t(x, t), self.cond)

    def denoise(self, x: torch.Tensor, t) -> torch.Tensor:
        return self.objective.denoise(self.net, x, self._t(x, t), self.cond)

    def x_eps(self, x: torch.Tensor, t) -> tuple[torch.Tensor, torch.Tensor]:
        return self.objective.x_eps(self.net, x, self._t(x, t), self.cond)

    def alpha_sigma(self, t) -> tuple[float, float]:
        a, s = self.objective.alpha_sigma(torch.tensor(float(t), dtype=torch.float64))
        return float(a), float(s)


class Objective(ABC):
    """Base class: solver/steps resolution, option checking, NFE counting and the shared loss reduction.

    Sampling hooks every objective provides, so every registered solver works with it: ``time_grid(steps)`` (1-D
    tensor from the noise end to the data end), ``prior(noise, ts)`` (the start point), ``alpha_sigma(t)``,
    ``velocity``, ``denoise``, ``x_eps`` and ``eval_time`` (where a singular end point is moved in).
    """

    kind: ClassVar[str]
    solvers = _SolverNames()
    own_solvers: ClassVar[tuple[str, ...]] = ()  # solvers only this objective offers (e.g. flow's dopri5, sde)
    grid_options: ClassVar[frozenset[str]] = frozenset()  # sample options that shape the time grid
    default_solver: ClassVar[str]
    default_steps: int  # a config field of every subclass
    sample_options: ClassVar[frozenset[str]] = frozenset()
    last_nfe: int | None = None

    # ---- config ---------------------------------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """JSON-able config with ``kind`` first; ``build_objective(obj.config())`` rebuilds an equal objective."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}
        return {"kind": self.kind, **fields}

    # ---- training -------------------------------------------------------------------------------------------------
    @abstractmethod
    def loss(
        self, net: Net, x: torch.Tensor, cond: torch.Tensor | None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Scalar training loss for a batch of clean model-space data x (B, *S); noise from ``generator``."""

    # ---- sampling -------------------------------------------------------------------------------------------------
    def sample(
        self,
        net: Net,
        noise: torch.Tensor,
        cond: torch.Tensor | None,
        solver: str | None = None,
        steps: int | None = None,
        generator: torch.Generator | None = None,
        **opts: Any,
    ) -> torch.Tensor:
        """Map standard-normal ``noise`` (B, *S) to model-space samples; sets ``last_nfe`` to the network calls used."""
        solver = self.resolve_solver(solver)
        steps = self.resolve_steps(solver, steps)
        unknown = sorted(set(opts) - self.sample_options)
        if unknown:
            raise ConfigError(
                f"sampler options: unknown option '{unknown[0]}' for objective '{self.kind}'; "
                f"expected one of {', '.join(sorted(self.sample_options)) or '(none)'}"
            )
        counter = CallCounter(net)
        with torch.no_grad():
            out = self._sample(counter, noise, cond, solver, steps, generator, **opts)
        self.last_nfe = counter.calls
        return out

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
        """A registered solver on this objective's grid; objectives override for their own solvers only."""
        spec = registry.get_solver(solver)
        ts = self.time_grid(steps, **{k: v for k, v in opts.items() if k in self.grid_options})
        x = self.prior(noise, ts)
        draw = (lambda i: randn(tuple(x.shape), x, generator)) if spec.stochastic else None
        return spec.fn(self.bind(net, cond), x, ts, draw)

    def bind(self, net: Net, cond: torch.Tensor | None) -> BoundModel:
        return BoundModel(self, net, cond)

    def nfe(self, solver: str | None = None, steps: int | None = None) -> int | None:
        """Network calls ``sample`` makes with this solver and steps (None for adaptive solvers: see ``last_nfe``)."""
        solver = self.resolve_solver(solver)
        steps = self.resolve_steps(solver, steps)
        if solver == "edm_heun":  # its first step is Euler when the grid starts at alpha = 0 (pure noise)
            return registry.edm_heun_nfe(steps, float(self.alpha_sigma(self.time_grid(steps)[:1])[0][0]) == 0.0)
        return registry.get_solver(solver).nfe(steps)

    # ---- sampling hooks -------------------------------------------------------------------------------------------
    @abstractmethod
    def time_grid(self, steps: int, **opts: Any) -> torch.Tensor:
        """1-D float64 grid of ``steps + 1`` points in the objective's time, noise end first, data end last."""

    def prior(self, noise: torch.Tensor, ts: torch.Tensor) -> torch.Tensor:
        """The solver's start point from standard-normal noise (EDM scales it by sigma_max)."""
        return noise

    @abstractmethod
    def alpha_sigma(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(alpha, sigma) with z_t = alpha x + sigma eps at time t; (1, 0) at the data end."""

    def eval_time(self, t: float) -> float:
        """Where a solver evaluates the network for grid time t (objectives move singular ends inward)."""
        return t

    def x_eps(self, net: Net, z: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None):
        """(x_hat, eps_hat) at times t (B,); the default derives eps from the clean-data estimate."""
        x_hat = self.denoise(net, z, t, cond)
        a, s = self.alpha_sigma(t)
        return x_hat, (z - expand(a, z) * x_hat) / expand(s, z)

    def resolve_solver(self, solver: str | None) -> str:
        solver = self.default_solver if solver is None else solver
        if solver not in self.solvers:
            raise ConfigError(
                f"sampler: field 'solver': expected one of {', '.join(self.solvers)} for objective '{self.kind}', "
                f"found {solver!r}"
            )
        return solver

    def own_solver(self, name: str):
        """The registry-shaped ``Solver`` record of one of ``own_solvers``, so the generator module runs it too."""
        raise ConfigError(f"sampler: field 'solver': {name!r} is not a solver of objective '{self.kind}'")

    def resolve_steps(self, solver: str, steps: int | None) -> int:
        steps = self.default_steps if steps is None else steps
        if isinstance(steps, bool) or int(steps) != steps or steps < 1:
            raise ConfigError(f"sampler: field 'steps': expected a positive integer, found {steps!r}")
        return int(steps)

    # ---- helpers for distillation ---------------------------------------------------------------------------------
    @abstractmethod
    def denoise(self, net: Net, z: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        """Clean-data estimate x_hat (B, *S) at the objective's own time / noise level t (B,)."""

    @abstractmethod
    def velocity(self, net: Net, z: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        """dz/dt of the objective's deterministic sampling ODE in its own time variable t (B,)."""

    @abstractmethod
    def step(
        self, net: Net, z: torch.Tensor, t: torch.Tensor, s: torch.Tensor, cond: torch.Tensor | None
    ) -> torch.Tensor:
        """One deterministic first-order move from times t to s (both (B,)): the building block of progressive
        distillation (two teacher steps -> one student step). Iterating it on a sampler's grid reproduces the
        objective's first-order deterministic sampler (flow/EDM: Euler, DDPM/VP: DDIM)."""


# ---- small shared helpers -------------------------------------------------------------------------------------------
def expand(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape a per-sample (B,) tensor to (B, 1, ..., 1) so it broadcasts against ``like`` of any rank."""
    return t.reshape(-1, *([1] * (like.dim() - 1))).to(like.dtype)


def per_sample_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error per sample (B,), computed in float32 even under bf16 autocast."""
    diff = pred.float() - target.float()
    return diff.pow(2).flatten(1).mean(dim=1)


def randn(shape: tuple[int, ...], like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Standard normal draws on ``generator``'s device (so a CPU generator serves CUDA tensors), moved to like's."""
    device = generator.device if generator is not None else like.device
    return torch.randn(shape, generator=generator, device=device, dtype=torch.float32).to(
        like.device, like.dtype
    )


def rand(shape: tuple[int, ...], like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Uniform [0, 1) draws, same device rules as :func:`randn`."""
    device = generator.device if generator is not None else like.device
    return torch.rand(shape, generator=generator, device=device, dtype=torch.float32).to(
        like.device, like.dtype
    )


def full_t(value: float, like: torch.Tensor) -> torch.Tensor:
    """A (B,) tensor filled with ``value`` on like's device (network time input during sampling)."""
    return torch.full((like.shape[0],), float(value), device=like.device, dtype=like.dtype)


# ---- config validation (one-line ConfigError messages) --------------------------------------------------------------
def config_error(kind: str, field: str, expected: str, found: Any) -> ConfigError:
    return ConfigError(f"objective '{kind}': field '{field}': expected {expected}, found {found!r}")


def check_choice(kind: str, field: str, value: Any, options: tuple[str, ...]) -> None:
    if value not in options:
        raise ConfigError(
            f"objective '{kind}': field '{field}': expected one of {', '.join(options)}, found {value!r}"
        )


def check_number(kind: str, field: str, value: Any, low: float | None = None, strict: bool = True) -> float:
    """Return value as float; reject non-numbers, non-finite values and values at/below ``low``."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if strict else value >= low
    if not ok:
        bound = "" if low is None else f" {'>' if strict else '>='} {low}"
        raise ConfigError(
            f"objective '{kind}': field '{field}': expected a finite number{bound}, found {value!r}"
        )
    return float(value)


def check_int(kind: str, field: str, value: Any, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(
            f"objective '{kind}': field '{field}': expected an integer >= {low}, found {value!r}"
        )
    return value
