"""The one solver registry: every objective x every deterministic solver reaches the data distribution with the
exact (oracle) network, and a solver registered later plugs into every objective the same way."""

from __future__ import annotations

import pytest
import torch
from gaussian_oracles import oracle_for

from caloforge.errors import ConfigError
from caloforge.generative.objectives import OBJECTIVES, build_objective
from caloforge.generative.objectives.base import CallCounter
from caloforge.generative.samplers import registry

MU, S = 1.5, 0.5
DETERMINISTIC = ["euler", "midpoint", "heun", "heun_full", "rk4", "edm_heun", "ddim"]
STEPS = {"ddpm": 60, "vp": 60, "edm": 30, "flow": 30}


def noise(n=2048, seed=0):
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("solver", DETERMINISTIC)
@pytest.mark.parametrize("kind", list(OBJECTIVES))
def test_every_objective_samples_with_every_deterministic_solver(kind, solver):
    obj = build_objective({"kind": kind, "prediction": "x", "t_eps": 1e-3} if kind == "flow" else {"kind": kind})
    counter = CallCounter(oracle_for(obj, MU, S))
    out = obj.sample(counter, noise(), None, solver=solver, steps=STEPS[kind])
    assert torch.isfinite(out).all()
    assert abs(out.mean().item() - MU) < 0.05 and abs(out.std().item() - S) < 0.05, (out.mean(), out.std())
    assert obj.nfe(solver, STEPS[kind]) == counter.calls


def test_a_registered_solver_works_for_every_objective_and_is_refused_twice():
    calls = []

    def two_point(model, x, ts, noise=None):  # a "learned" solver: one DDIM jump from the first to the last point
        calls.append(len(ts))
        x_hat, eps_hat = model.x_eps(x, ts[0])
        a, s = model.alpha_sigma(ts[-1])
        return a * x_hat + s * eps_hat

    registry.register_solver("test_jump", two_point, lambda n: 1, description="test")
    try:
        with pytest.raises(ConfigError, match="already registered"):
            registry.register_solver("test_jump", two_point, lambda n: 1)
        for kind in OBJECTIVES:
            obj = build_objective({"kind": kind})
            assert "test_jump" in obj.solvers and obj.nfe("test_jump", 3) == 1
            out = obj.sample(oracle_for(obj, MU, S), noise(512), None, solver="test_jump", steps=3)
            assert torch.isfinite(out).all() and obj.last_nfe == 1
        assert len(calls) == len(OBJECTIVES)
    finally:
        registry.SOLVERS.pop("test_jump", None)


def test_bad_solver_names_are_one_line_config_errors():
    with pytest.raises(ConfigError, match="identifier"):
        registry.register_solver("no spaces", lambda *a: None, lambda n: n)
    with pytest.raises(ConfigError, match="field 'solver'"):
        registry.get_solver("leapfrog")


def test_flow_own_solvers_run_through_the_generator_module_and_are_seeded(tmp_path):
    """dopri5 and the SDE are the flow objective's own solvers: `sample` and `bench` run them through the same
    module as registry solvers; dopri5 lands where a fine Heun grid lands, the SDE's noise follows the seed."""
    import numpy as np
    from test_trainer import SMALL_GEO

    from caloforge.sampling.generator import Generator
    from caloforge.sampling.random_run import random_checkpoint
    from caloforge.training.recipe_io import load_recipe

    ckpt = random_checkpoint(load_recipe("tiny-fm", ["model.patch=[2,2,3]", "model.dim=32", "model.heads=2",
                                                     "model.depth=1"]), tmp_path / "run", SMALL_GEO, seed=2)
    gen = Generator.load(ckpt, device="cpu")
    e = np.full(4, 1e4)
    exact, _ = gen.generate(e, solver="dopri5", seed=1)
    fine, _ = gen.generate(e, solver="heun", steps=64, seed=1)
    coarse, _ = gen.generate(e, solver="euler", steps=2, seed=1)
    assert np.abs(exact - fine).sum() < 0.5 * np.abs(exact - coarse).sum()
    a, stats = gen.generate(e, solver="sde", steps=8, seed=1)
    b, _ = gen.generate(e, solver="sde", steps=8, seed=1)
    c, _ = gen.generate(e, solver="sde", steps=8, seed=2)
    assert stats["nfe"] == 8 and np.array_equal(a, b) and not np.array_equal(a, c)
