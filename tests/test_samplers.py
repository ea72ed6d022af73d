"""Samplers: grids, integrator orders, dopri5, EDM Heun, DDIM/ancestral, NFE accounting, determinism.

Gaussian data x ~ N(mu, s^2) gives closed-form ideal networks (tests/gaussian_oracles.py) and closed-form transport
maps, so each sampler is checked against the exact answer rather than against itself.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from gaussian_oracles import oracle_for

from caloforge.errors import CaloforgeError
from caloforge.generative.objectives import OBJECTIVES, build_objective
from caloforge.generative.objectives.base import CallCounter
from caloforge.generative.objectives.ddpm import betas_linear
from caloforge.generative.samplers import ddim, grids, ode

MU, S = 1.5, 0.5


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: intra-op threads only add contention on the shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def noise(n: int = 4096, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 2, 2, generator=gen(seed), dtype=torch.float64)  # (n, 2, 2): rank is not assumed


def gaussian_flow_field(mu: float, s: float):
    """Exact velocity of the straight path for x ~ N(mu, s^2): its flow maps n to mu + s n at t = 1."""

    def f(x, t):
        var = (1 - t) ** 2 + t * t * s * s
        return mu + (t * s * s - (1 - t)) * (x - t * mu) / var

    return f


def assert_gaussian(out: torch.Tensor, mu: float = MU, s: float = S, tol: float = 0.03) -> None:
    assert abs(out.mean().item() - mu) < tol and abs(out.std().item() - s) < tol


# ---- grids -----------------------------------------------------------------------------------------------------------
def test_uniform_and_shifted_grids_share_end_points_and_shift_moves_steps_towards_noise():
    u = grids.uniform(8)
    assert (
        u.shape == (9,)
        and u[0] == 0
        and u[-1] == 1
        and torch.allclose(u.diff(), torch.full((8,), 1 / 8, dtype=u.dtype))
    )
    assert torch.allclose(grids.shifted(8, 1.0), u)
    sh = grids.shifted(8, 3.0)
    assert sh[0] == 0 and sh[-1] == 1 and bool((sh.diff() > 0).all())
    assert bool((sh[1:-1] < u[1:-1]).all())  # shift > 1: points pulled towards t = 0 (noise)
    assert sh.diff()[0] < sh.diff()[-1]
    # SD3 form on the noise level 1 - t
    sigma = 1 - u
    assert torch.allclose(1 - sh, 3 * sigma / (1 + 2 * sigma))


def test_karras_grid_runs_from_sigma_max_to_sigma_min_then_zero():
    k = grids.karras(32, 0.002, 80.0, 7.0)
    assert k.shape == (33,) and k[0].item() == pytest.approx(80.0) and k[-2].item() == pytest.approx(0.002)
    assert k[-1] == 0 and bool((k.diff() < 0).all())
    roots = k[:-1] ** (1 / 7)
    assert torch.allclose(roots.diff(), roots.diff()[0].expand(31))  # equal steps in sigma^(1/rho)
    assert torch.allclose(
        grids.karras(5, 1.0, 5.0, 1.0)[:-1], torch.tensor([5.0, 4, 3, 2, 1], dtype=torch.float64)
    )


# ---- fixed-step integrators ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["midpoint", "heun", "rk4"])
def test_second_order_methods_are_exact_for_a_velocity_linear_in_time(method):
    a, b = torch.tensor([0.3, -1.0]), torch.tensor([2.0, 0.5])
    x0 = torch.tensor([1.0, 1.0], dtype=torch.float64)
    out = getattr(ode, method)(lambda x, t: a + b * t, x0, grids.uniform(3))
    assert torch.allclose(out, x0 + a + b / 2, atol=1e-12)  # integral of a + b t over [0, 1]


def test_rk4_is_exact_for_a_velocity_cubic_in_time():
    out = ode.rk4(
        lambda x, t: torch.full_like(x, 4 * t**3 - t), torch.zeros(1, dtype=torch.float64), [0.0, 0.5, 1.0]
    )
    assert out.item() == pytest.approx(1.0 - 0.5, abs=1e-14)


def test_heun_is_not_exact_for_a_quadratic_velocity_so_the_exactness_test_can_fail():
    out = ode.heun(
        lambda x, t: torch.full_like(x, 3 * t**2), torch.zeros(1, dtype=torch.float64), grids.uniform(2)
    )
    assert abs(out.item() - 1.0) > 1e-3


@pytest.mark.parametrize(("method", "order"), [("euler", 1), ("midpoint", 2), ("heun", 2), ("rk4", 4)])
def test_error_on_the_gaussian_flow_shrinks_at_the_method_order(method, order):
    mu, s = 1.0, 2.0
    x = torch.linspace(-3, 3, 13, dtype=torch.float64)
    errs = [
        (getattr(ode, method)(gaussian_flow_field(mu, s), x, grids.uniform(n)) - (mu + s * x))
        .abs()
        .max()
        .item()
        for n in (16, 32, 64)
    ]
    observed = [math.log2(errs[i] / errs[i + 1]) for i in range(2)]
    assert all(o > order - 0.3 for o in observed), observed
    if order == 1:
        assert all(o < 1.3 for o in observed)


def test_heun_euler_last_saves_one_evaluation_and_keeps_second_order_accuracy():
    f = CallCounterField(gaussian_flow_field(MU, S))
    x = noise(64)
    full = ode.heun(f, x, grids.uniform(16))
    assert f.calls == 32
    f.calls = 0
    last_euler = ode.heun(f, x, grids.uniform(16), euler_last=True)
    assert f.calls == 31
    exact = MU + S * x
    finer = ode.heun(f, x, grids.uniform(32), euler_last=True)
    assert (full - exact).abs().max() < 5e-3
    assert (last_euler - exact).abs().max() / (finer - exact).abs().max() > 3.0  # still second order


class CallCounterField:
    def __init__(self, f):
        self.f, self.calls = f, 0

    def __call__(self, x, t):
        self.calls += 1
        return self.f(x, t)


# ---- dopri5 ----------------------------------------------------------------------------------------------------------
def test_dopri5_meets_its_tolerance_and_reports_the_evaluations_it_used():
    x = noise(256)
    exact = MU + S * x
    results = []
    for tol in (1e-3, 1e-7):
        f = CallCounterField(gaussian_flow_field(MU, S))
        out, nfe = ode.dopri5(f, x, 0.0, 1.0, rtol=tol, atol=tol)
        assert nfe == f.calls and (nfe - 1) % 6 == 0
        results.append(((out - exact).abs().max().item(), nfe))
    (loose_err, loose_nfe), (tight_err, tight_nfe) = results
    assert loose_err < 1e-2 and tight_err < 1e-5 and tight_err < loose_err and tight_nfe > loose_nfe


def test_dopri5_integrates_backwards_in_time():
    x1 = torch.tensor([2.0], dtype=torch.float64)
    out, _ = ode.dopri5(lambda x, t: -x, x1, 1.0, 0.0, rtol=1e-8, atol=1e-10)
    assert out.item() == pytest.approx(2.0 * math.e, rel=1e-6)


def test_dopri5_raises_a_caloforge_error_when_max_steps_is_too_small():
    with pytest.raises(CaloforgeError, match="max_steps=2"):
        ode.dopri5(gaussian_flow_field(MU, S), noise(8), 0.0, 1.0, rtol=1e-10, atol=1e-10, max_steps=2)


# ---- flow-matching sampling through the objective --------------------------------------------------------------------
@pytest.mark.parametrize("prediction", ["x", "v", "eps"])
@pytest.mark.parametrize("solver", ["heun", "rk4", "dopri5"])
def test_flow_sampling_with_the_exact_network_reaches_the_data_distribution(prediction, solver):
    obj = build_objective({"kind": "flow", "prediction": prediction, "t_eps": 1e-4})
    z = noise()
    out = obj.sample(oracle_for(obj, MU, S), z, None, solver=solver, steps=32)
    assert out.shape == z.shape
    assert_gaussian(out)
    # x (eps) predictions carry no velocity at t = 1 (t = 0); the sampler evaluates t_eps inside, so all agree
    assert (out - (MU + S * z)).abs().max() < 0.01


def test_flow_shifted_grid_and_sde_sampler_reach_the_data_distribution():
    obj = build_objective({"kind": "flow", "shift": 3.0})
    net = oracle_for(obj, MU, S)
    assert_gaussian(obj.sample(net, noise(), None, solver="heun", steps=16))
    sde = obj.sample(net, noise(), None, solver="sde", steps=200, generator=gen(1))
    assert_gaussian(sde)
    assert (sde - (MU + S * noise())).abs().max() > 0.05  # the SDE really is stochastic
    assert torch.equal(sde, obj.sample(net, noise(), None, solver="sde", steps=200, generator=gen(1)))


# ---- EDM -------------------------------------------------------------------------------------------------------------
def test_edm_heun_is_second_order_and_euler_first_order_towards_the_exact_map():
    obj = build_objective({"kind": "edm"})
    net, z = oracle_for(obj, MU, S), noise(512)
    smax = obj.sigma_max
    exact = MU + (smax * z - MU) * S / math.sqrt(S**2 + smax**2)  # the ODE map started from sigma_max z
    heun = [(obj.sample(net, z, None, steps=n) - exact).abs().max().item() for n in (32, 64)]
    euler = [(obj.sample(net, z, None, solver="euler", steps=n) - exact).abs().max().item() for n in (32, 64)]
    assert math.log2(heun[0] / heun[1]) > 1.7 and 0.7 < math.log2(euler[0] / euler[1]) < 1.3
    assert heun[0] < 0.05


def test_edm_sampler_maps_noise_to_the_data_distribution_with_and_without_churn():
    obj = build_objective({"kind": "edm"})
    net = oracle_for(obj, MU, S)
    assert_gaussian(obj.sample(net, noise(), None, steps=32))
    churned = obj.sample(net, noise(), None, steps=64, generator=gen(5), s_churn=10.0)
    assert_gaussian(churned, tol=0.04)


def test_edm_churn_is_seeded_by_the_generator_and_leaves_the_global_rng_alone():
    obj = build_objective({"kind": "edm", "s_churn": 20.0, "s_tmin": 0.01, "s_tmax": 50.0})
    net, z = oracle_for(obj, MU, S), noise(64)
    state = torch.random.get_rng_state()
    a = obj.sample(net, z, None, steps=8, generator=gen(1))
    b = obj.sample(net, z, None, steps=8, generator=gen(1))
    c = obj.sample(net, z, None, steps=8, generator=gen(2))
    assert torch.equal(a, b) and not torch.allclose(a, c)
    assert torch.equal(state, torch.random.get_rng_state())


def test_edm_heun_without_churn_is_deterministic_and_ignores_the_generator():
    obj = build_objective({"kind": "edm"})
    net, z = oracle_for(obj, MU, S), noise(64)
    assert torch.equal(obj.sample(net, z, None, steps=8, generator=gen(1)), obj.sample(net, z, None, steps=8))


# ---- DDIM / ancestral -------------------------------------------------------------------------------------------------
def test_ancestral_step_variance_is_the_ddpm_posterior_variance():
    ab = torch.cumprod(1 - betas_linear(1000), 0)
    k = 500
    beta = 1 - ab[k] / ab[k - 1]
    expected = beta * (1 - ab[k - 1]) / (1 - ab[k])  # Ho et al. beta-tilde
    std = ddim.posterior_std(
        ab[k].sqrt().item(), (1 - ab[k]).sqrt().item(), ab[k - 1].sqrt().item(), (1 - ab[k - 1]).sqrt().item()
    )
    assert std**2 == pytest.approx(expected.item(), rel=1e-9)
    assert ddim.posterior_std(0.5, math.sqrt(0.75), 1.0, 0.0) == 0.0


@pytest.mark.parametrize("cfg", [{"kind": "vp"}, {"kind": "ddpm"}, {"kind": "ddpm", "schedule": "cosine"}])
def test_ddim_error_halves_when_steps_double_and_reaches_the_data_distribution(cfg):
    obj = build_objective(cfg)
    net, z = oracle_for(obj, MU, S), noise()
    if obj.kind == "vp":
        a, sg = (float(v) for v in obj.schedule(torch.tensor(1.0, dtype=torch.float64)))
    else:
        a, sg = math.sqrt(float(obj.alpha_bar[-1])), math.sqrt(1 - float(obj.alpha_bar[-1]))
    exact = MU + S * (z - a * MU) / math.sqrt(a * a * S * S + sg * sg)  # the probability-flow map from z
    errs = [(obj.sample(net, z, None, steps=n) - exact).abs().max().item() for n in (40, 80, 160)]
    assert all(1.8 < errs[i] / errs[i + 1] < 2.2 for i in range(2)), errs
    assert_gaussian(obj.sample(net, z, None, steps=160))


@pytest.mark.parametrize(("kind", "solver", "steps"), [("vp", "ancestral", 200), ("ddpm", "ddpm", None)])
def test_ancestral_samplers_reach_the_data_distribution_and_are_seeded(kind, solver, steps):
    obj = build_objective({"kind": kind})
    net, z = oracle_for(obj, MU, S), noise()
    out = obj.sample(net, z, None, solver=solver, steps=steps, generator=gen(3))
    assert_gaussian(out)
    again = obj.sample(net, z[:16], None, solver=solver, steps=20, generator=gen(3))
    assert torch.equal(again, obj.sample(net, z[:16], None, solver=solver, steps=20, generator=gen(3)))
    assert not torch.allclose(again, obj.sample(net, z[:16], None, solver=solver, steps=20, generator=gen(4)))


# ---- NFE accounting --------------------------------------------------------------------------------------------------
SOLVER_CASES = [(kind, solver) for kind, cls in OBJECTIVES.items() for solver in cls.solvers]


@pytest.mark.parametrize(("kind", "solver"), SOLVER_CASES)
def test_nfe_matches_the_counted_network_calls_for_every_solver(kind, solver):
    obj = build_objective({"kind": kind})
    counter = CallCounter(oracle_for(obj, MU, S))
    obj.sample(counter, noise(16), None, solver=solver, steps=5, generator=gen(0))
    assert obj.last_nfe == counter.calls > 0
    expected = obj.nfe(solver, 5)
    if solver == "dopri5":
        assert expected is None and (counter.calls - 1) % 6 == 0  # adaptive: known only after sampling
    else:
        assert expected == counter.calls


def test_default_nfe_matches_the_reference_recipes():
    assert build_objective({"kind": "flow"}).nfe() == 63  # CaloArt: Heun 32, last step Euler
    assert build_objective({"kind": "edm"}).nfe() == 63  # CaloDiT-2 / EDM: Heun 32 on the Karras grid
    assert build_objective({"kind": "flow"}).nfe("rk4", 50) == 200
    assert build_objective({"kind": "ddpm"}).nfe("ddpm") == 1000


@pytest.mark.parametrize("shape", [(3, 7), (2, 4, 3, 5), (2, 1, 2, 3, 2)])
@pytest.mark.parametrize("kind", list(OBJECTIVES))
def test_sampling_and_loss_work_for_any_tensor_rank(kind, shape):
    obj = build_objective({"kind": kind})
    net = oracle_for(obj, MU, S)
    z = torch.randn(shape, generator=gen(0), dtype=torch.float64)
    assert obj.sample(net, z, None, steps=2).shape == z.shape
    assert obj.loss(lambda zz, t, c: torch.zeros_like(zz), z, None, gen(0)).dim() == 0


# ---- distillation hook: one deterministic step ------------------------------------------------------------------------
def _grid(obj, steps: int) -> list[float]:
    """The time grid each objective's first-order deterministic sampler walks (last point = clean data)."""
    if obj.kind == "flow":
        return [float(t) for t in obj.grid(steps)]
    if obj.kind == "edm":
        return [float(s) for s in grids.karras(steps, obj.sigma_min, obj.sigma_max, obj.rho)]
    if obj.kind == "vp":
        return [float(t) for t in torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)]
    from caloforge.generative.objectives.ddpm import timestep_subsequence

    return [float(k) for k in timestep_subsequence(obj.timesteps, steps)] + [-1.0]


@pytest.mark.parametrize(
    ("cfg", "solver"),
    [
        ({"kind": "flow", "prediction": "x"}, "euler"),
        ({"kind": "edm"}, "euler"),
        ({"kind": "vp"}, "ddim"),
        ({"kind": "ddpm"}, "ddim"),
    ],
)
def test_iterating_step_on_the_grid_reproduces_the_first_order_sampler(cfg, solver):
    obj = build_objective(cfg)
    net, z = oracle_for(obj, MU, S), noise(64)
    expected = obj.sample(net, z, None, solver=solver, steps=6)
    x = z * obj.sigma_max if obj.kind == "edm" else z
    ts = _grid(obj, 6)
    if obj.kind == "edm":
        ts = ts[:-1]  # the Karras grid ends at 0; stop at sigma_min then take the final Euler step to 0 below
    with torch.no_grad():
        for t, s in itertools.pairwise(ts):
            x = obj.step(
                net, x, torch.full((64,), t, dtype=x.dtype), torch.full((64,), s, dtype=x.dtype), None
            )
        if obj.kind == "edm":
            x = obj.denoise(net, x, torch.full((64,), ts[-1], dtype=x.dtype), None)  # Euler to sigma = 0 is D
    assert torch.allclose(x, expected, atol=1e-10)
