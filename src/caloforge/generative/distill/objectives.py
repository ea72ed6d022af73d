"""Objectives of distilled runs: they carry the teacher's objective (``base``) and everything a few-step sampler
needs, so ``Generator``, ``sample`` and ``bench`` treat a distilled run like any other. They cannot be trained with
``caloforge train`` (their loss needs a teacher): ``caloforge distill`` makes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from caloforge.errors import ConfigError
from caloforge.generative.distill import consistency, progressive
from caloforge.generative.distill.bespoke import BespokeSolver
from caloforge.generative.distill.paths import path_of
from caloforge.generative.distill.steps import euler_sample
from caloforge.generative.objectives.base import Net, Objective, check_choice, check_int, check_number

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

    # the sampling hooks of the solver registry (``generative.samplers.registry``) are the teacher's path
    def time_grid(self, steps: int, **opts):
        return self.teacher_objective.time_grid(steps, **opts)

    def alpha_sigma(self, t):
        return self.teacher_objective.alpha_sigma(t)


@dataclass
class Distilled(_FromTeacher):
    """A distilled student: ``consistency`` samples by multistep consistency, ``progressive`` / ``reflow`` by Euler
    (first-order) steps on the teacher's grid; NFE = steps.

    Consistency and progressive students train in the ordinary trainer through its loss context (``train.teacher``:
    the frozen teacher, ``ctx.ema``: the EMA network = the consistency target); the loss covers both stages of a
    two-stage net (``layer_base``: the layer model's teacher objective). Reflow trains on precomputed teacher pairs
    (``caloforge.training.distill_loops``), so its loss is not available here.
    """

    base: dict = field(default_factory=lambda: {"kind": "flow"})
    method: str = "consistency"
    default_steps: int = 1
    grid: int = 18  # consistency: intervals of the teacher grid
    distance: str = "pseudo_huber"  # consistency: pseudo_huber or l2
    huber_c: float = 0.03
    teacher_solver: str = "euler"  # progressive: the teacher's two steps (heun for a round from an ODE teacher)
    layer_base: dict | None = None  # two-stage: the layer model's teacher objective
    layer_weight: float = 1.0

    kind: ClassVar[str] = "distilled"
    solvers: ClassVar[tuple[str, ...]] = ("few_step", "consistency")
    own_solvers: ClassVar[tuple[str, ...]] = ("few_step", "consistency")
    uses_context: ClassVar[bool] = True

    def own_solver(self, name: str):
        """Registry-shaped records, offered by this objective only (they need a distilled student)."""
        from caloforge.generative.samplers.registry import Solver

        if name == "few_step":
            return Solver("few_step", _few_step, lambda n: n, description="progressive / reflow students")
        if name == "consistency":
            return Solver("consistency", _consistency, lambda n: n, stochastic=True,
                          description="multistep consistency sampling (re-noising drawn from the noise input)")
        return super().own_solver(name)

    @property
    def default_solver(self) -> str:  # type: ignore[override]
        """Multistep consistency re-noises between steps (a stochastic solver); the others are first-order moves."""
        return "consistency" if self.method == "consistency" else "few_step"

    def __post_init__(self) -> None:
        k = self.kind
        check_choice(k, "method", self.method, METHODS)
        check_choice(k, "distance", self.distance, ("pseudo_huber", "l2"))
        check_choice(k, "teacher_solver", self.teacher_solver, ("euler", "heun"))
        self.default_steps = check_int(k, "default_steps", self.default_steps)
        self.grid = check_int(k, "grid", self.grid)
        self.huber_c = check_number(k, "huber_c", self.huber_c, low=0.0)
        self.layer_weight = check_number(k, "layer_weight", self.layer_weight, low=0.0, strict=False)
        self._init_base()
        self.layer_path = None
        if self.layer_base is not None:
            from caloforge.generative.objectives import build_objective

            self.layer_path = path_of(build_objective(dict(self.layer_base)))

    def loss(self, net, x, cond, generator=None, ctx=None):
        if ctx is None or getattr(ctx, "teacher", None) is None:
            raise ConfigError(f"objective 'distilled' ({self.method}): training needs a teacher (train.teacher); "
                              f"use `caloforge distill`")
        if self.method == "reflow":
            raise ConfigError("objective 'distilled' (reflow): trained on teacher pairs by `caloforge distill`")
        model, target, teacher = getattr(net, "module", net), ctx.ema, ctx.teacher
        stages = [(self.path, getattr(model, "voxel", model), getattr(target, "voxel", target), teacher.voxel, x,
                   cond, 1.0)]
        if hasattr(model, "layer"):
            if self.layer_path is None:
                raise ConfigError("objective 'distilled': field 'layer_base': expected the layer model's teacher "
                                  "objective for a two-stage net, found None")
            n = model.layer.cfg.cond_dim
            stages.append((self.layer_path, model.layer, target.layer, teacher.layer, cond[:, n:], cond[:, :n],
                           self.layer_weight))
        total = 0.0
        for path, student, tgt, tch, data, c, w in stages:
            if self.method == "consistency":
                part = consistency.distillation_loss(path, student, tgt, tch, data, c, path.grid(self.grid), generator,
                                                     self.distance, self.huber_c)
            else:
                part = progressive.distillation_loss(path, student, tch, data, c, self.default_steps, generator,
                                                     self.teacher_solver)
            total = total + w * part
        return total

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
    own_solvers: ClassVar[tuple[str, ...]] = ("bespoke",)

    def own_solver(self, name: str):
        from caloforge.generative.samplers.registry import Solver

        if name == "bespoke":
            return Solver("bespoke", _bespoke, lambda n: self.bespoke.nfe(), description="this run's learned solver")
        return super().own_solver(name)

    def __post_init__(self) -> None:
        self._init_base()
        if self.teacher_objective.kind != "flow":
            raise ConfigError(f"objective 'bespoke': field 'base': expected a flow objective, found "
                              f"{self.teacher_objective.kind!r}")
        # this run's solver is fixed (it is learned by the distill loop, not here): plain constants, so the
        # generator traces into ONNX / TorchScript
        self.bespoke = BespokeSolver.from_config(dict(self.solver)).requires_grad_(False)
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


# ---- registry solvers: how Generator, sample, bench and export run distilled objectives --------------------------
def _few_step(model, x: torch.Tensor, ts: torch.Tensor, noise=None) -> torch.Tensor:
    """Progressive / reflow students: K first-order moves on the teacher's grid; a 1-step consistency student."""
    obj, steps = model.objective, len(ts) - 1
    if obj.method == "consistency":
        if steps != 1:
            raise ConfigError("sampler: field 'solver': a multistep consistency student samples with solver "
                              "'consistency' (it re-noises between steps)")
        return _consistency(model, x, ts)
    return euler_sample(obj.path, model.net, x, model.cond, steps)


def _consistency(model, x: torch.Tensor, ts: torch.Tensor, noise=None) -> torch.Tensor:
    """Multistep consistency sampling with its re-noising draws taken from ``noise(i)`` (an input, so seeded)."""
    obj, steps = model.objective, len(ts) - 1
    path, net, cond = obj.path, model.net, model.cond
    at = consistency.sample_times(path, steps)
    z = consistency.consistency_function(path, net, path.prior(x), consistency.times(at[0], x), cond)
    for i, t in enumerate(at[1:]):
        tt = consistency.times(t, z)
        z = consistency.consistency_function(path, net, path.noisy(z, noise(i), tt), tt, cond)
    return z


def _bespoke(model, x: torch.Tensor, ts: torch.Tensor, noise=None) -> torch.Tensor:
    obj = model.objective
    if len(ts) - 1 != obj.bespoke.steps:
        raise ConfigError(f"bespoke: this solver was learned for {obj.bespoke.steps} steps, found {len(ts) - 1}")
    return obj.bespoke.solve(time_field(obj.teacher_objective, model.net, model.cond), x)



DISTILLED: dict[str, type[Objective]] = {"distilled": Distilled, "bespoke": Bespoke}
