"""Objectives: config door, exact identities between prediction spaces, zero loss for exact targets, training sanity."""

from __future__ import annotations

import json
import math

import pytest
import torch
from gaussian_oracles import oracle_for
from hypothesis import given, settings
from hypothesis import strategies as st

from caloforge.errors import ConfigError
from caloforge.generative.objectives import OBJECTIVES, build_objective
from caloforge.generative.objectives.base import expand
from caloforge.generative.objectives.ddpm import betas_linear, timestep_subsequence
from caloforge.generative.objectives.edm import loss_weight, precondition
from caloforge.generative.objectives.flow_matching import SPACES, convert
from caloforge.generative.objectives.vp import alpha_sigma, logsnr_cosine, v_target, x_eps_from_v
from caloforge.generative.samplers import ode

KINDS = tuple(OBJECTIVES)
NON_DEFAULT = {
    "flow": {"prediction": "x", "loss_space": "eps", "time_sampling": "uniform", "t_eps": 0.05, "shift": 3.0},
    "edm": {"sigma_data": 1.0, "p_mean": -1.0, "s_churn": 5.0, "s_tmax": 10.0, "solver": "euler"},
    "ddpm": {"timesteps": 400, "schedule": "cosine", "solver": "ddpm", "default_steps": 20},
    "vp": {"logsnr_min": -15.0, "logsnr_max": 15.0, "solver": "ancestral", "default_steps": 8},
}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: intra-op threads only add contention on the shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---- config door ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_config_round_trips_through_json_and_build_objective(kind):
    obj = build_objective({"kind": kind, **NON_DEFAULT[kind]})
    cfg = json.loads(json.dumps(obj.config()))
    assert cfg["kind"] == kind and all(cfg[k] == v for k, v in NON_DEFAULT[kind].items())
    assert build_objective(cfg) == obj


@pytest.mark.parametrize(
    ("cfg", "needle"),
    [
        ({"kind": "score"}, "field 'kind'"),
        ({"kind": "flow", "predicton": "x"}, "unknown field 'predicton'"),
        ({"kind": "flow", "prediction": "y"}, "field 'prediction'"),
        ({"kind": "flow", "time_std": -1.0}, "field 'time_std'"),
        ({"kind": "flow", "t_eps": 0.7}, "field 't_eps'"),
        ({"kind": "edm", "sigma_max": 0.001}, "field 'sigma_max'"),
        ({"kind": "edm", "rho": "seven"}, "field 'rho'"),
        ({"kind": "ddpm", "timesteps": 1.5}, "field 'timesteps'"),
        ({"kind": "ddpm", "schedule": "sqrt"}, "field 'schedule'"),
        ({"kind": "vp", "logsnr_max": -30.0}, "field 'logsnr_max'"),
        (["flow"], "expected a mapping"),
    ],
)
def test_bad_config_raises_one_line_config_error_naming_the_field(cfg, needle):
    with pytest.raises(ConfigError) as info:
        build_objective(cfg)
    assert needle in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("kind", "kwargs", "needle"),
    [
        ("flow", {"solver": "leapfrog"}, "field 'solver'"),
        ("flow", {"steps": 0}, "field 'steps'"),
        ("flow", {"s_churn": 1.0}, "unknown option 's_churn'"),
        ("edm", {"shift": 2.0}, "unknown option 'shift'"),
        ("ddpm", {"steps": 1001}, "field 'steps'"),
        ("vp", {"solver": "leapfrog"}, "field 'solver'"),
    ],
)
def test_bad_sampler_arguments_raise_config_error(kind, kwargs, needle):
    obj = build_objective({"kind": kind})
    with pytest.raises(ConfigError, match=needle):
        obj.sample(lambda z, t, c: z, torch.zeros(2, 3), None, **kwargs)


# ---- flow matching identities --------------------------------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(
    t=st.floats(0.01, 0.99),
    seed=st.integers(0, 2**16),
    src=st.sampled_from(SPACES),
    dst=st.sampled_from(SPACES),
)
def test_flow_conversions_round_trip_between_x_v_eps(t, seed, src, dst):
    g = gen(seed)
    x, noise = (
        torch.randn(3, 4, generator=g, dtype=torch.float64),
        torch.randn(3, 4, generator=g, dtype=torch.float64),
    )
    tt = torch.full((3, 1), t, dtype=torch.float64)
    z = (1 - tt) * noise + tt * x
    truth = {"x": x, "v": x - noise, "eps": noise}
    # conversion to dst gives the true dst quantity, and converting back recovers the source
    assert torch.allclose(convert(truth[src], z, tt, src, dst, 1e-5), truth[dst], atol=1e-9)
    back = convert(convert(truth[src], z, tt, src, dst, 1e-5), z, tt, dst, src, 1e-5)
    assert torch.allclose(back, truth[src], atol=1e-9)


def _flow_truth_net(x: torch.Tensor, prediction: str):
    """A network that knows the clean batch x and returns the exact prediction-space target."""

    def net(z, t_in, cond):
        t = expand(t_in, z)
        noise = (z - t * x) / (1 - t)
        return {"x": x, "v": x - noise, "eps": noise}[prediction]

    return net


@pytest.mark.parametrize("prediction", SPACES)
@pytest.mark.parametrize("loss_space", SPACES)
def test_flow_loss_is_zero_for_the_exact_target_in_all_nine_space_pairs(prediction, loss_space):
    obj = build_objective({"kind": "flow", "prediction": prediction, "loss_space": loss_space, "t_eps": 1e-3})
    x = torch.randn(64, 2, 3, 2, generator=gen(1), dtype=torch.float64)
    assert obj.loss(_flow_truth_net(x, prediction), x, None, gen(2)).item() < 1e-12
    assert obj.loss(lambda z, t, c: torch.zeros_like(z), x, None, gen(2)).item() > 0.1


def test_flow_loss_is_the_mean_per_sample_mse_of_the_velocity():
    obj = build_objective({"kind": "flow", "time_sampling": "uniform"})
    x = torch.randn(8, 3, 5, generator=gen(0))
    loss = obj.loss(lambda z, t, c: torch.zeros_like(z), x, None, gen(7))
    g = gen(7)
    noise = torch.randn(x.shape, generator=g)  # the loss draws noise first, then t
    assert torch.isclose(loss, ((x - noise) ** 2).mean(), rtol=1e-5)


@pytest.mark.parametrize(("sampling", "mean", "std"), [("uniform", None, None), ("logit_normal", -0.8, 0.8)])
def test_flow_time_sampling_follows_its_distribution(sampling, mean, std):
    cfg = {"kind": "flow", "time_sampling": sampling}
    if mean is not None:
        cfg.update(time_mean=mean, time_std=std)
    t = build_objective(cfg).sample_t(20000, torch.zeros(1), gen(0)).double()
    assert 0.0 <= t.min() and t.max() <= 1.0
    if sampling == "uniform":
        assert abs(t.mean() - 0.5) < 0.01 and abs(t.var() - 1 / 12) < 0.005
    else:
        logit = torch.log(t / (1 - t))
        assert abs(logit.mean() - mean) < 0.03 and abs(logit.std() - std) < 0.03


# ---- EDM -------------------------------------------------------------------------------------------------------------
def test_edm_preconditioning_limits_and_loss_weight():
    sd = 0.5
    c_skip, c_out, c_in, c_noise = precondition(torch.tensor([1e-8, 1e8], dtype=torch.float64), sd)
    assert c_skip[0] == pytest.approx(1.0) and c_out[0] == pytest.approx(0.0, abs=1e-7)
    assert c_skip[1] == pytest.approx(0.0, abs=1e-12) and c_out[1] == pytest.approx(sd)
    assert c_in[1] * 1e8 == pytest.approx(1.0)  # unit-variance input at large sigma
    sigma = torch.tensor([0.01, 0.5, 3.0, 80.0], dtype=torch.float64)
    c_skip, c_out, c_in, c_noise = precondition(sigma, sd)
    assert torch.allclose(c_noise, sigma.log() / 4)
    assert torch.allclose(loss_weight(sigma, sd), 1 / c_out**2)
    # c_skip^2 (s^2 + sd^2) ... the effective target (x - c_skip z)/c_out has unit variance when x ~ N(0, sd^2)
    var_target = (sd**2 * (1 - c_skip) ** 2 + c_skip**2 * sigma**2) / c_out**2
    assert torch.allclose(var_target, torch.ones_like(sigma))


def test_edm_loss_is_zero_for_the_exact_raw_network_target():
    obj = build_objective({"kind": "edm"})
    x = torch.randn(32, 4, 3, generator=gen(3), dtype=torch.float64)
    sd = obj.sigma_data

    def net(z_in, c_noise, cond):
        sigma = expand(torch.exp(4 * c_noise), z_in)
        z = z_in * torch.sqrt(sigma**2 + sd**2)
        c_skip, c_out, _, _ = precondition(sigma, sd)
        return (x - c_skip * z) / c_out

    assert obj.loss(net, x, None, gen(4)).item() < 1e-16
    assert obj.loss(lambda z, t, c: torch.zeros_like(z), x, None, gen(4)).item() > 0.1


def test_edm_denoiser_with_gaussian_oracle_is_the_posterior_mean():
    obj = build_objective({"kind": "edm"})
    mu, s = 1.5, 0.5
    z = torch.randn(6, 5, generator=gen(0), dtype=torch.float64) * 3
    sigma = torch.tensor([0.01, 0.1, 0.5, 1.0, 10.0, 80.0], dtype=torch.float64)
    d = obj.denoise(oracle_for(obj, mu, s), z, sigma, None)
    expected = mu + s**2 / (s**2 + expand(sigma, z) ** 2) * (z - mu)
    assert torch.allclose(d, expected, atol=1e-10)


# ---- VP --------------------------------------------------------------------------------------------------------------
@settings(max_examples=30, deadline=None)
@given(t=st.floats(0.0, 1.0), seed=st.integers(0, 2**16))
def test_vp_alpha_sigma_are_a_rotation_and_v_round_trips(t, seed):
    logsnr = logsnr_cosine(torch.tensor([t], dtype=torch.float64))
    alpha, sigma = alpha_sigma(logsnr)
    assert torch.allclose(alpha**2 + sigma**2, torch.ones(1, dtype=torch.float64))
    g = gen(seed)
    x, eps = (
        torch.randn(4, 3, generator=g, dtype=torch.float64),
        torch.randn(4, 3, generator=g, dtype=torch.float64),
    )
    z = alpha * x + sigma * eps
    x_back, eps_back = x_eps_from_v(z, v_target(x, eps, alpha, sigma), alpha, sigma)
    assert torch.allclose(x_back, x, atol=1e-10) and torch.allclose(eps_back, eps, atol=1e-10)


def test_vp_cosine_logsnr_spans_plus_minus_twenty_monotonically():
    logsnr = logsnr_cosine(torch.linspace(0, 1, 101, dtype=torch.float64))
    assert logsnr[0].item() == pytest.approx(20.0) and logsnr[-1].item() == pytest.approx(-20.0)
    assert bool((logsnr.diff() < 0).all())
    assert logsnr[50].item() == pytest.approx(0.0, abs=1e-9)  # symmetric limits put logSNR 0 at t = 1/2


def test_vp_loss_is_zero_for_the_exact_v_target():
    obj = build_objective({"kind": "vp"})
    x = torch.randn(32, 2, 5, generator=gen(5), dtype=torch.float64)

    def net(z, t_in, cond):
        alpha, sigma = (expand(a, z) for a in obj.schedule(t_in))
        eps = (z - alpha * x) / sigma
        return v_target(x, eps, alpha, sigma)

    assert obj.loss(net, x, None, gen(6)).item() < 1e-12
    assert obj.loss(lambda z, t, c: torch.zeros_like(z), x, None, gen(6)).item() > 0.1


# ---- DDPM ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_ddpm_alpha_bar_decreases_from_one_towards_zero(schedule):
    obj = build_objective({"kind": "ddpm", "schedule": schedule})
    ab = obj.alpha_bar
    assert ab.shape == (1000,) and bool((ab.diff() < 0).all())
    assert 0.99 < ab[0] < 1.0 and ab[-1] < 1e-3
    betas = betas_linear(1000)
    assert betas[0].item() == pytest.approx(1e-4) and betas[-1].item() == pytest.approx(0.02)


def test_timestep_subsequence_runs_from_last_to_first_timestep():
    ks = timestep_subsequence(1000, 50)
    assert ks[0] == 999 and ks[-1] == 0 and len(set(ks)) == 50 and ks == sorted(ks, reverse=True)
    assert timestep_subsequence(10, 10) == list(range(9, -1, -1))


def test_ddpm_loss_is_zero_for_the_exact_noise_and_uses_t_in_equal_to_k_over_t():
    obj = build_objective({"kind": "ddpm", "timesteps": 100})
    x = torch.randn(64, 3, 2, generator=gen(8), dtype=torch.float64)
    seen = []

    def net(z, t_in, cond):
        seen.append(t_in)
        k = torch.round(t_in * obj.timesteps).long()
        ab = expand(obj.alpha_bar[k], z)
        return (z - ab.sqrt() * x) / (1 - ab).sqrt()

    assert obj.loss(net, x, None, gen(9)).item() < 1e-12
    k = seen[0] * 100
    assert torch.allclose(k, k.round()) and 0 <= k.min() and k.max() <= 99


# ---- distillation helpers: velocity integrates to the data distribution ----------------------------------------------
@pytest.mark.parametrize("kind", ["vp", "ddpm"])
def test_velocity_helper_is_the_derivative_of_the_deterministic_sampler(kind):
    obj = build_objective({"kind": kind, "timesteps": 1000} if kind == "ddpm" else {"kind": kind})
    mu, s = 1.5, 0.5
    net = oracle_for(obj, mu, s)
    noise = torch.randn(2048, 2, generator=gen(0), dtype=torch.float64)
    t0, t1 = (1.0, 0.0) if kind == "vp" else (999.0, 0.0)

    def field(z, t):
        return obj.velocity(net, z, torch.full((z.shape[0],), t, dtype=z.dtype), None)

    ts = torch.linspace(t0, t1, 401, dtype=torch.float64)
    x = obj.denoise(net, ode.heun(field, noise, ts), torch.full((2048,), t1, dtype=torch.float64), None)
    assert abs(x.mean().item() - mu) < 0.03 and abs(x.std().item() - s) < 0.03


# ---- training sanity -------------------------------------------------------------------------------------------------
class TinyMLP(torch.nn.Module):
    """Flattens z, appends t_in, returns a tensor like z (rank-agnostic)."""

    def __init__(self, n: int):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Linear(n + 1, 64), torch.nn.SiLU(), torch.nn.Linear(64, n))

    def forward(self, z, t_in, cond):
        h = torch.cat([z.flatten(1), t_in[:, None]], dim=1)  # (B, n + 1)
        return self.body(h).reshape(z.shape)


@pytest.mark.parametrize("kind", KINDS)
def test_loss_decreases_when_training_a_tiny_mlp_on_two_points(kind):
    torch.manual_seed(0)
    obj = build_objective({"kind": kind})
    points = torch.tensor([[-1.0, 0.5, 1.0, -0.5], [1.0, -0.5, 0.0, 0.5]]).reshape(2, 2, 2)
    x_eval = points[torch.arange(2048) % 2]  # (2048, 2, 2)
    net = TinyMLP(4)

    def eval_loss() -> float:  # same noise and times before and after training
        with torch.no_grad():
            return obj.loss(net, x_eval, None, gen(123)).item()

    before = eval_loss()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    g = gen(0)
    for _ in range(300):
        loss = obj.loss(net, points[torch.arange(64) % 2], None, g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = eval_loss()
    assert math.isfinite(after) and after < 0.7 * before


def test_loss_is_float32_under_bf16_autocast():
    obj = build_objective({"kind": "flow"})
    net = TinyMLP(6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = obj.loss(net, torch.randn(8, 2, 3), None, gen(0))
    assert loss.dtype == torch.float32 and loss.dim() == 0 and torch.isfinite(loss)
