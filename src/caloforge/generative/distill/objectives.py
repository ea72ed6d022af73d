"""Objectives of distilled runs: they carry the teacher's objective (``base``) and everything a few-step sampler
needs, so ``Generator``, ``sample`` and ``bench`` treat a distilled run like any other. They cannot be trained with
``caloforge train`` (their loss needs a teacher): ``caloforge distill`` makes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from caloforge.errors import ConfigError
from caloforge.generative.distill import consistency
from caloforge.generative.distill.bespoke import BespokeSolver
from caloforge.generative.distill.paths import path_of
from caloforge.generative.distill.steps import euler_sample
from caloforge.generative.objectives.base import Net, Objective, check_choice, check_int

METHODS = ("consistency", "progressive", "reflow")


class _FromTeacher(Objective):
    """Shared parts: the teacher objective rebuilt from ``base``; model helpers delegate to it."""

    base: dict

    def _init_base(self) -> None:
        from caloforge.generative.objectives import build_objective

        if not isinstance(self.base, dict):
            raise ConfigError(f"objective '{self.kind}': field 'base': expected the teacher's objective mapping, "
                              f"found {type(self.base).__name__}")
        self.teacher_objective = build_objective(dict(self.base))
        self.path = path_of(self.teacher_objective)

    @property
    def default_solver(self) -> str:  # type: ignore[override]
        return self.solvers[0]

    def loss(self, net, x, cond, generator=None):
        raise ConfigError(f"objective '{self.kind}': a distilled run is made by `caloforge distill`, not trained "
                          f"with `caloforge train`")

    def denoise(self, net: Net, z, t, cond):
        return self.teacher_objective.denoise(net, z, t, cond)

    def velocity(self, net: Net, z, t, cond):
        return self.teacher_objective.velocity(net, z, t, cond)

    def step(self, net: Net, z, t, s, cond):
        return self.teacher_objective.step(net, z, t, s, cond)


@dataclass
class Distilled(_FromTeacher):
    """A distilled student: ``consistency`` samples by multistep consistency, ``progressive`` / ``reflow`` by Euler
    (first-order) steps on the teacher's grid; NFE = steps."""

    base: dict = field(default_factory=lambda: {"kind": "flow"})
    method: str = "consistency"
    default_steps: int = 1

    kind: ClassVar[str] = "distilled"
    solvers: ClassVar[tuple[str, ...]] = ("few_step",)

    def __post_init__(self) -> None:
        check_choice(self.kind, "method", self.method, METHODS)
        self.default_steps = check_int(self.kind, "default_steps", self.default_steps)
        self._init_base()

    def nfe(self, solver: str | None = None, steps: int | None = None) -> int:
        return self.resolve_steps(self.resolve_solver(solver), steps)

    def _sample(self, net, noise, cond, solver: str, steps: int, generator, **opts: Any) -> torch.Tensor:
        if self.method == "consistency":
            return consistency.sample(self.path, net, noise, cond, steps, generator)
        return euler_sample(self.path, net, noise, cond, steps)


@dataclass
class Bespoke(_FromTeacher):
    """The teacher's network with a learned K-step solver (``solver``: BespokeSolver.config()); steps are fixed."""

    base: dict = field(default_factory=lambda: {"kind": "flow"})
    solver: dict = field(default_factory=lambda: {"steps": 4, "base": "midpoint"})
    default_steps: int = 4

    kind: ClassVar[str] = "bespoke"
    solvers: ClassVar[tuple[str, ...]] = ("bespoke",)

    def __post_init__(self) -> None:
        self._init_base()
        if self.teacher_objective.kind != "flow":
            raise ConfigError(f"objective 'bespoke': field 'base': expected a flow objective, found "
                              f"{self.teacher_objective.kind!r}")
        self.bespoke = BespokeSolver.from_config(dict(self.solver))
        self.default_steps = self.bespoke.steps

    def resolve_steps(self, solver: str, steps: int | None) -> int:
        steps = super().resolve_steps(solver, steps)
        if steps != self.bespoke.steps:
            raise ConfigError(f"sampler: field 'steps': this bespoke solver was learned for {self.bespoke.steps} "
                              f"steps, found {steps}")
        return steps

    def nfe(self, solver: str | None = None, steps: int | None = None) -> int:
        self.resolve_steps(self.resolve_solver(solver), steps)
        return self.bespoke.nfe()

    def _sample(self, net, noise, cond, solver: str, steps: int, generator, **opts: Any) -> torch.Tensor:
        return self.bespoke.solve(time_field(self.teacher_objective, net, cond), noise)


def time_field(objective: Objective, net: Net, cond):
    """The flow ODE field as f(x, t) with a 0-dim tensor t (differentiable in t: bespoke training needs that)."""
    def f(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return objective.velocity(net, x, t.to(x.dtype).expand(x.shape[0]), cond)

    return f


DISTILLED: dict[str, type[Objective]] = {"distilled": Distilled, "bespoke": Bespoke}
