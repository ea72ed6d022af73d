"""Few-step methods as functions: consistency boundary, progressive rounds, bespoke identity and training, reflow,
and the distilled objectives' configs (the distillation loop and runs: tests/test_distill_run.py)."""

from __future__ import annotations

import copy

import pytest
import torch
from gaussian_oracles import edm_oracle, flow_oracle
from torch import nn

from caloforge.errors import ConfigError
from caloforge.generative.distill import consistency, progressive, reflow
from caloforge.generative.distill.bespoke import BespokeSolver, Reference, lte_loss
from caloforge.generative.distill.objectives import time_field
from caloforge.generative.distill.paths import path_of
from caloforge.generative.distill.steps import euler_sample, linear_step, step_coefficients, times
from caloforge.generative.objectives import EDM, FlowMatching, build_objective
from caloforge.generative.samplers import ode

MU, S = 0.7, 0.4


class TinyNet(nn.Module):
    """net(z (B, D), t (B,), cond) -> (B, D): a small MLP on [z, t]; random init, any output (for exactness tests)."""

    def __init__(self, dim: int = 6, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.mlp = nn.Sequential(nn.Linear(dim + 1, 32), nn.SiLU(), nn.Linear(32, dim))

    def forward(self, z, t, cond):
        return self.mlp(torch.cat([z, t.reshape(-1, 1).to(z.dtype)], dim=1))


@pytest.mark.parametrize("objective", [FlowMatching(prediction="v"), FlowMatching(prediction="x"), EDM()])
def test_consistency_boundary_is_exact(objective):
    path = path_of(objective)
    net = TinyNet()
    z = torch.randn(16, 6) * 3.0
    f = consistency.consistency_function(path, net, z, times(path.t_data, z), None)
    assert torch.equal(f, z)  # bit-identical, whatever the network outputs
    g = consistency.consistency_function(path, net, z, times(0.5 * (path.t_data + path.t_noise), z), None)
    assert not torch.allclose(g, z)  # away from the boundary the network matters


def test_consistency_one_step_of_teacher_init_is_euler_jump():
    obj = FlowMatching(prediction="v")
    path, net = path_of(obj), flow_oracle(obj, MU, S)
    noise = torch.randn(64, 5)
    one = consistency.sample(path, net, noise, None, 1)
    assert torch.allclose(one, ode.euler(lambda x, t: obj.velocity(net, x, times(t, x), None), noise, [0.0, 1.0]))


def test_consistency_loss_is_zero_for_exact_consistency_function():
    # with the oracle teacher and Heun on a fine grid, student = target = oracle gives a tiny loss; a random student a large one
    obj = FlowMatching(prediction="v")
    path, oracle = path_of(obj), flow_oracle(obj, MU, S)
    x = MU + S * torch.randn(256, 4)
    grid = path.grid(64)
    gen = torch.Generator().manual_seed(0)
    small = consistency.distillation_loss(path, oracle, oracle, oracle, x, None, grid, gen, kind="l2")
    big = consistency.distillation_loss(path, TinyNet(4), oracle, oracle, x, None, grid, gen, kind="l2")
    assert float(small.detach()) < 1e-3 * float(big.detach())


def test_consistency_multistep_reaches_the_data_with_exact_function():
    # an exact consistency function (Gaussian: f(z, t) = E-free ODE map) gives N(mu, s^2) at 1 and at 3 steps
    obj = FlowMatching(prediction="v")

    def exact_f(z, t_in, cond):  # velocity whose Euler jump to t = 1 equals the exact ODE map (so f is exact)
        t = t_in.reshape(-1, 1)
        scale = torch.sqrt((1 - t) ** 2 + t**2 * S**2)
        n = (z - t * MU) / scale
        return (MU + S * n - z) / (1 - t).clamp_min(1e-6)

    path = path_of(obj)
    for steps in (1, 3):
        x = consistency.sample(path, exact_f, torch.randn(20000, 1), None, steps, torch.Generator().manual_seed(1))
        assert abs(float(x.mean()) - MU) < 0.02 and abs(float(x.std()) - S) < 0.02


def test_progressive_round_reduces_distance_to_teacher_two_steps():
    obj = FlowMatching(prediction="v")
    path = path_of(obj)
    teacher = TinyNet(4, seed=3)
    with torch.no_grad():  # a teacher with a clearly curved field: its two steps differ from one
        for p in teacher.parameters():
            p.mul_(3.0)
    student = copy.deepcopy(teacher)
    gen = torch.Generator().manual_seed(0)
    z_eval = torch.randn(512, 4, generator=gen)

    def distance():
        with torch.no_grad():
            want = euler_sample(path, teacher, z_eval, None, 2)
            got = euler_sample(path, student, z_eval, None, 1)
        return float((got - want).pow(2).mean())

    before = distance()
    opt = torch.optim.Adam(student.parameters(), lr=1e-2)
    for _ in range(60):
        x = torch.randn(64, 4, generator=gen) * S + MU
        loss = progressive.distillation_loss(path, student, teacher, x, None, 1, gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert distance() < 0.3 * before


def test_progressive_field_target_lands_on_the_two_step_point():
    for obj in (FlowMatching(prediction="v"), EDM()):
        path = path_of(obj)
        net = TinyNet(3)
        z = torch.randn(8, 3) * path.prior_scale
        t, u = times(float(path.grid(2)[0]), z), times(float(path.grid(2)[1]), z)
        z2 = progressive.two_step_target(path, net, z, t, u, None)
        want = progressive.field_target(path, z, t, u, z2)
        a, b = step_coefficients(path, t, u)
        assert torch.allclose(a.reshape(-1, 1) * z + b.reshape(-1, 1) * want, z2, atol=1e-5 * float(z2.abs().max()))
        if obj.kind == "flow":  # a v-network that outputs the target field makes one step land there
            one = linear_step(path, lambda zz, tt, c, w=want: w, z, t, u, None)
            assert torch.allclose(one, z2, atol=1e-5 * float(z2.abs().max()))


def test_progressive_rounds():
    assert progressive.rounds(16, 1) == [8, 4, 2, 1]
    assert progressive.rounds(8, 2) == [4, 2]


@pytest.mark.parametrize("base,solver", [("euler", ode.euler), ("midpoint", ode.midpoint)])
@pytest.mark.parametrize("steps", [1, 3, 4])
def test_bespoke_identity_equals_base_solver(base, solver, steps):
    obj = FlowMatching(prediction="v")
    net = TinyNet(5)
    x0 = torch.randn(32, 5)
    bes = BespokeSolver(steps, base)
    with torch.no_grad():
        got = bes.solve(time_field(obj, net, None), x0)
        want = solver(lambda x, t: obj.velocity(net, x, times(t, x), None), x0, torch.linspace(0, 1, steps + 1))
        via_objective = obj.sample(net, x0, None, solver=base, steps=steps)
    assert torch.allclose(got, want, atol=1e-6, rtol=1e-6)
    assert torch.allclose(got, via_objective, atol=1e-6, rtol=1e-6)
    assert bes.nfe() == obj.nfe(base, steps)


def test_bespoke_training_lowers_error_against_exact_solution():
    obj = FlowMatching(prediction="v")
    oracle = flow_oracle(obj, MU, S)
    f = time_field(obj, oracle, None)
    gen = torch.Generator().manual_seed(0)
    train_x0, test_x0 = torch.randn(256, 3, generator=gen), torch.randn(2048, 3, generator=gen)
    ref = Reference(f, train_x0, knots=8)
    assert torch.allclose(ref.x[-1], MU + S * train_x0, atol=1e-4)  # the reference is the exact solution
    bes = BespokeSolver(2, "euler")

    def end_error():
        with torch.no_grad():
            return float((bes.solve(f, test_x0) - (MU + S * test_x0)).pow(2).mean())

    before = end_error()
    opt = torch.optim.Adam(bes.parameters(), lr=2e-2)
    for _ in range(150):
        loss = lte_loss(bes, f, ref)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert end_error() < 0.2 * before
    t = bes.t()
    assert float(t[0]) == 0.0 and abs(float(t[-1]) - 1.0) < 1e-12 and bool((t[1:] > t[:-1]).all())


def test_reflow_pair_loss_zero_on_straight_pairs():
    obj = FlowMatching(prediction="v")
    path = path_of(obj)
    noise = torch.randn(64, 3)
    sample = 2.0 * noise + 1.0  # a straight coupling: the velocity field v = sample - noise is linear in z

    def straight(z, t, cond):
        tt = t.reshape(-1, 1)
        n = (z - tt) / (1 + tt)  # invert z = (1 - t) n + t (2 n + 1)
        return n + 1.0

    assert float(reflow.pair_loss(path, straight, noise, sample, None)) < 1e-10
    assert float(reflow.pair_loss(path, TinyNet(3), noise, sample, None)) > 0.1


def test_distilled_objective_configs_round_trip_and_refuse_bad_settings():
    base = FlowMatching().config()
    for method in ("consistency", "progressive", "reflow"):
        obj = build_objective({"kind": "distilled", "base": base, "method": method, "default_steps": 2})
        assert build_objective(obj.config()).config() == obj.config()
        assert obj.nfe() == 2 and obj.nfe(steps=4) == 4
    bes = build_objective({"kind": "bespoke", "base": base, "solver": BespokeSolver(3, "midpoint").config()})
    assert bes.nfe() == 6 and build_objective(bes.config()).config() == bes.config()
    with pytest.raises(ConfigError, match="learned for 3 steps"):
        bes.nfe(steps=4)
    with pytest.raises(ConfigError, match="method"):
        build_objective({"kind": "distilled", "base": base, "method": "magic"})
    with pytest.raises(ConfigError, match="expected a flow objective"):
        build_objective({"kind": "bespoke", "base": EDM().config(), "solver": {"steps": 2}})
    with pytest.raises(ConfigError, match="expected flow or edm"):
        build_objective({"kind": "distilled", "base": {"kind": "ddpm"}})
    with pytest.raises(ConfigError, match="needs a teacher"):
        obj.loss(TinyNet(2), torch.zeros(2, 2), None)


def test_distilled_sample_uses_its_steps_and_counts_nfe():
    obj = build_objective({"kind": "distilled", "base": FlowMatching().config(), "method": "progressive",
                           "default_steps": 2})
    net = TinyNet(4)
    out = obj.sample(net, torch.randn(8, 4), None)
    assert out.shape == (8, 4) and obj.last_nfe == 2
    edm = build_objective({"kind": "distilled", "base": EDM().config(), "method": "consistency", "default_steps": 3})
    edm.sample(edm_oracle(EDM(), MU, S), torch.randn(8, 4), None, generator=torch.Generator().manual_seed(0))
    assert edm.last_nfe == 3


def test_bespoke_registry_adapter_equals_solve():
    from caloforge.generative.distill.bespoke import registry_solver

    obj, net = FlowMatching(prediction="v"), TinyNet(3)
    bes = BespokeSolver(2, "midpoint")
    with torch.no_grad():
        bes.t_logits.add_(torch.tensor([0.3, -0.2, 0.1, 0.0], dtype=torch.float64))

    class Bound:  # the registry's bound model: velocity(x, t) with a 0-d / float t
        def velocity(self, x, t):
            return obj.velocity(net, x, times(float(t), x), None)

    fn, nfe = registry_solver(bes)
    x0 = torch.randn(4, 3)
    with torch.no_grad():
        want = bes.solve(time_field(obj, net, None), x0)
    assert torch.allclose(fn(Bound(), x0, torch.linspace(0, 1, 3)), want, atol=1e-6)
    assert nfe(2) == 4
    with pytest.raises(ConfigError, match="learned for 2 steps"):
        fn(Bound(), x0, torch.linspace(0, 1, 4))
