"""Preprocessing steps and chains: invertibility, streaming statistics, persistence, config errors, u-parametrisation.

Tolerances. Steps compute in float64, so a single step round-trips to ~1e-12 relative. A chain returns float32, and
the float32 rounding of the model-space value y (relative 2^-24 of |y|) dominates: for log chains that is a relative
error of about |y| std 6e-8 on (x + eps), well below 2e-5 (x + eps); for chains through logit(x / (k E)) it is an
absolute error below 1e-5 k E (|y| <= ~14 for alpha = 1e-6 and the sigmoid slope is <= 1/4).
"""

from __future__ import annotations

import itertools
import json
import warnings

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from caloforge.data.geometry import Geometry
from caloforge.errors import ConfigError, DataError
from caloforge.transforms import (
    Chain,
    RunningMoments,
    apply_threshold,
    denormalise_layers,
    layer_energies,
    layer_energies_to_u,
    normalise_layers,
    step_from_config,
    u_to_layer_energies,
)

FAST = settings(max_examples=40, deadline=None)

# Voxel energies in MeV: exact zeros mixed with values over eight decades.
voxel_value = st.one_of(st.just(0.0), st.floats(1e-4, 1e4))


@st.composite
def showers_and_energies(draw, max_n=8, max_v=12):
    n = draw(st.integers(1, max_n))
    v = draw(st.integers(1, max_v))
    x = draw(hnp.arrays(np.float64, (n, v), elements=voxel_value))
    e = draw(hnp.arrays(np.float64, (n,), elements=st.floats(1e3, 1e6)))
    return x.astype(np.float32), e


@st.composite
def fractions_and_energies(draw, max_n=8, max_v=12):
    """Showers whose voxels are fractions of E_inc in [0, 1] (so x / (2 E) stays within logit's [0, 1])."""
    n = draw(st.integers(1, max_n))
    v = draw(st.integers(1, max_v))
    f = draw(hnp.arrays(np.float64, (n, v), elements=st.one_of(st.just(0.0), st.just(1.0), st.floats(1e-9, 1.0))))
    e = draw(hnp.arrays(np.float64, (n,), elements=st.floats(1e3, 1e6)))
    return f, e


def as_showers(f, e):
    return (f * e[:, None]).astype(np.float32)


def fitted(chain_cfg, x, e, batch=3):
    chain = Chain.from_config(chain_cfg)
    return chain.fit(lambda: ((x[i:i + batch], e[i:i + batch]) for i in range(0, len(x), batch)))


# ---- single steps ---------------------------------------------------------------------------------------------------
STEP_CONFIGS = [
    {"kind": "scale", "factor": 1e-3},
    {"kind": "scale", "factor": 0.033},
    {"kind": "divide_by_energy", "k": 2.0},
    {"kind": "log", "eps": 1e-6},
    {"kind": "power", "p": 0.25},
    {"kind": "standardise", "mode": "global", "mean": -3.5, "std": 2.0},
]


@pytest.mark.parametrize("cfg", STEP_CONFIGS, ids=lambda c: c["kind"])
@FAST
@given(data=showers_and_energies())
def test_every_plain_step_inverts_its_forward_in_float64(cfg, data):
    x, e = data
    step = step_from_config(cfg)
    back = step.inverse(step.forward(x, e), e)
    np.testing.assert_allclose(back, x, rtol=1e-10, atol=1e-12)


@FAST
@given(data=fractions_and_energies())
def test_logit_step_inverts_its_forward_on_the_unit_interval(data):
    u, e = data  # (n, V) in [0, 1]
    step = step_from_config({"kind": "logit", "alpha": 1e-6})
    np.testing.assert_allclose(step.inverse(step.forward(u, e), e), u, rtol=0, atol=1e-9)


def test_logit_clips_out_of_range_inputs_counts_them_and_warns():
    step = step_from_config({"kind": "logit", "alpha": 1e-6})
    x = np.array([[-0.5, 0.2, 1.5, 2.0]])
    with pytest.warns(UserWarning, match="clipped"):
        y = step.forward(x, np.ones(1))
    assert step.n_clipped == 3
    np.testing.assert_allclose(step.inverse(y, np.ones(1)), [[0.0, 0.2, 1.0, 1.0]], atol=1e-9)


def test_logit_inverse_maps_any_model_output_into_the_unit_interval():
    step = step_from_config({"kind": "logit"})
    back = step.inverse(np.array([[-1e4, -30.0, 0.0, 30.0, 1e4]]), np.ones(1))
    assert np.all(np.isfinite(back)) and back.min() == 0.0 and back.max() == 1.0


@FAST
@given(data=showers_and_energies(), level=st.floats(1e-6, 1e-3))
def test_noise_fills_voxels_below_level_and_its_inverse_removes_it(data, level):
    x, e = data
    x = x.astype(np.float64)
    x = np.where(x < level, 0.0, x)  # voxels are either empty or at least `level`
    step = step_from_config({"kind": "noise", "level": level, "seed": 1})
    y = step.forward(x, e)
    empty = x == 0
    assert np.all((y[empty] >= 0) & (y[empty] < level))
    np.testing.assert_array_equal(y[~empty], x[~empty])
    np.testing.assert_array_equal(step.inverse(y, e), x)


def test_noise_with_a_seed_is_reproducible_and_draws_fresh_noise_per_call():
    x, e = np.zeros((4, 50)), np.ones(4)
    a, b = (step_from_config({"kind": "noise", "level": 1e-3, "seed": 7}) for _ in range(2))
    first = a.forward(x, e)
    np.testing.assert_array_equal(first, b.forward(x, e))
    assert not np.array_equal(first, a.forward(x, e))


def test_threshold_zeroes_below_value_on_inverse_only_unless_both_directions():
    x, e = np.array([[0.0, 0.01, 0.0151515, 0.02, 5.0]]), np.ones(1)
    thr = 0.5e-3 / 0.033
    step = step_from_config({"kind": "threshold", "value": thr})
    np.testing.assert_array_equal(step.forward(x, e), x)
    np.testing.assert_array_equal(step.inverse(x, e), apply_threshold(x, thr))
    np.testing.assert_array_equal(step.inverse(x, e), [[0.0, 0.0, 0.0, 0.02, 5.0]])
    both = step_from_config({"kind": "threshold", "value": thr, "both_directions": True})
    np.testing.assert_array_equal(both.forward(x, e), step.inverse(x, e))


# ---- chains -------------------------------------------------------------------------------------------------------
LOGIT_CHAIN = [{"kind": "divide_by_energy", "k": 2.0}, {"kind": "logit", "alpha": 1e-6},
               {"kind": "standardise", "mode": "global"}]
LOG_CHAIN = [{"kind": "scale", "factor": 1e-3}, {"kind": "log", "eps": 1e-6}, {"kind": "standardise", "mode": "voxel"}]


@FAST
@given(data=fractions_and_energies())
def test_logit_chain_round_trips_in_float32_within_1e_5_of_k_e(data):
    f, e = data
    x = as_showers(f, e)
    chain = fitted(LOGIT_CHAIN, x, e)
    y = chain.forward(x, e)
    assert y.dtype == np.float32 and np.all(np.isfinite(y))
    back = chain.inverse(y, e)
    assert back.dtype == np.float32
    assert np.all(np.abs(back - x) <= 1e-5 * 2.0 * e[:, None])


@FAST
@given(data=showers_and_energies())
def test_log_chain_round_trips_in_float32_and_brings_zeros_back_within_eps(data):
    x, e = data
    chain = fitted(LOG_CHAIN, x, e)
    back = chain.inverse(chain.forward(x, e), e)
    eps_mev = 1e-6 / 1e-3  # log eps in GeV, expressed in MeV
    assert np.all(np.abs(back - x) <= 2e-5 * (x + eps_mev))
    assert np.all(np.abs(back[x == 0]) <= eps_mev)


@FAST
@given(data=showers_and_energies())
def test_fitted_standardise_gives_zero_mean_unit_std_on_its_training_data(data):
    x, e = data
    y = fitted([{"kind": "log", "eps": 1e-6}, {"kind": "standardise", "mode": "global"}], x, e).forward(x, e)
    logs = np.log(x.astype(np.float64) + 1e-6)
    if logs.std() > 1e-6:  # a constant input has no spread to normalise
        assert abs(float(y.astype(np.float64).mean())) < 1e-4
        assert abs(float(y.astype(np.float64).std()) - 1) < 1e-4


def test_each_statistics_step_takes_one_pass_over_the_outputs_of_the_steps_before_it():
    rng = np.random.default_rng(0)
    x, e = rng.exponential(5.0, (40, 6)), np.full(40, 1e4)
    passes = []

    def batches():
        passes.append(1)
        return ((x[i:i + 16], e[i:i + 16]) for i in range(0, 40, 16))

    chain = Chain.from_config([{"kind": "log"}, {"kind": "standardise", "mode": "voxel"}, {"kind": "scale", "factor": 3},
                               {"kind": "standardise", "mode": "global"}]).fit(batches)
    assert len(passes) == 2
    first, second = chain.steps[1], chain.steps[3]
    np.testing.assert_allclose(first.mean, np.log(x + 1e-6).mean(axis=0), rtol=1e-12)
    # the second sees standardised-then-tripled values: mean 0, std 3 over all elements
    assert abs(float(second.mean)) < 1e-12 and abs(float(second.std) - 3.0) < 1e-12


def test_a_chain_with_given_statistics_needs_no_pass():
    chain = Chain.from_config([{"kind": "log"}, {"kind": "standardise", "mean": -15.7554139, "std": 4.7630354}])
    assert not chain.needs_fit
    chain.fit(lambda: pytest.fail("the batch factory must not be called"))


def test_using_an_unfitted_chain_is_a_clear_error():
    chain = Chain.from_config(LOG_CHAIN)
    with pytest.raises(ConfigError, match="not fitted"):
        chain.forward(np.ones((2, 3)), np.ones(2))


def test_voxel_statistics_reject_showers_of_another_width():
    x = np.ones((4, 5))
    chain = fitted(LOG_CHAIN, x, np.ones(4))
    with pytest.raises(DataError, match="expected 5 voxels per shower"):
        chain.forward(np.ones((4, 6)), np.ones(4))


@FAST
@given(data=showers_and_energies(), voxel=st.booleans())
def test_chain_state_is_json_and_restores_identical_outputs(data, voxel):
    x, e = data
    cfg = [{"kind": "threshold", "value": 0.0151515}] + (LOG_CHAIN if voxel else LOGIT_CHAIN[:1] + [
        {"kind": "scale", "factor": 0.1}, {"kind": "logit"}, {"kind": "standardise"}])
    chain = fitted(cfg, x, e)
    restored = Chain.from_state(json.loads(json.dumps(chain.state())))
    y = chain.forward(x, e)
    np.testing.assert_array_equal(restored.forward(x, e), y)
    np.testing.assert_array_equal(restored.inverse(y, e), chain.inverse(y, e))


def test_chunked_mapping_gives_the_same_result_as_one_block(monkeypatch):
    import caloforge.transforms.chain as chain_module

    rng = np.random.default_rng(4)
    x, e = rng.exponential(1.0, (37, 10)).astype(np.float32), 10 ** rng.uniform(3, 5, 37)
    cfg = [{"kind": "noise", "level": 1e-3, "seed": 3}] + LOG_CHAIN
    whole = fitted(cfg, x, e)
    y = Chain.from_state(whole.state()).forward(x, e)
    back = whole.inverse(y, e)
    monkeypatch.setattr(chain_module, "CHUNK_ELEMENTS", 25)  # 2 rows per chunk
    np.testing.assert_array_equal(Chain.from_state(whole.state()).forward(x, e), y)
    np.testing.assert_array_equal(whole.inverse(y, e), back)


@pytest.mark.parametrize(
    "steps, expected",
    [
        ([{"kind": "log"}, {"kind": "sqrt"}], r"preprocessing\[1\]: key 'kind': expected one of .*found 'sqrt'"),
        ([{"kind": "log", "epsilon": 1}], r"preprocessing\[0\]: step 'log': unknown parameter 'epsilon'"),
        ([{"kind": "scale"}, {"kind": "logit", "alpha": 0.7}], r"preprocessing\[1\]: .*'alpha'.*found 0.7"),
        ([{"kind": "scale", "factor": 0}], r"preprocessing\[0\]: .*'factor'"),
        ([{"kind": "standardise", "mode": "layer"}], r"preprocessing\[0\]: .*'mode'.*found 'layer'"),
        ([{"kind": "standardise", "mean": 1.0}], r"preprocessing\[0\]: .*'mean' and 'std'"),
        ([{"kind": "standardise", "mean": 1.0, "std": -2.0}], r"preprocessing\[0\]: .*'std'"),
        ([{"factor": 2}], r"preprocessing\[0\]: expected a mapping with a 'kind' key"),
        ([{"kind": "noise", "seed": "abc"}], r"preprocessing\[0\]: .*'seed'"),
    ],
)
def test_bad_step_configs_raise_one_line_errors_naming_index_and_key(steps, expected):
    with pytest.raises(ConfigError, match=expected) as info:
        Chain.from_config(steps)
    assert "\n" not in str(info.value)


# ---- streaming statistics ----------------------------------------------------------------------------------------
@FAST
@given(
    x=hnp.arrays(np.float64, st.tuples(st.integers(1, 30), st.integers(1, 5)), elements=st.floats(-1e3, 1e3)),
    cuts=st.lists(st.integers(0, 30), max_size=6),
)
def test_streaming_moments_equal_numpy_for_any_batching(x, cuts):
    edges = sorted({0, len(x), *[c for c in cuts if c < len(x)]})
    per_col, overall = RunningMoments(per_column=True), RunningMoments(per_column=False)
    for a, b in itertools.pairwise(edges):
        per_col.update(x[a:b])
        overall.update(x[a:b])
    scale = 1e-9 * (1 + np.abs(x).max())
    np.testing.assert_allclose(per_col.mean, x.mean(axis=0), rtol=1e-12, atol=scale)
    np.testing.assert_allclose(per_col.std, x.std(axis=0), rtol=1e-9, atol=scale)
    np.testing.assert_allclose(overall.mean, x.mean(), rtol=1e-12, atol=scale)
    np.testing.assert_allclose(overall.std, x.std(), rtol=1e-9, atol=scale)


# ---- u-parametrisation of layer energies ----------------------------------------------------------------------------
@st.composite
def layer_energy_sets(draw):
    n, n_layers = draw(st.integers(1, 6)), draw(st.integers(1, 10))
    E = draw(hnp.arrays(np.float64, (n, n_layers), elements=st.one_of(st.just(0.0), st.floats(1e-3, 1e4))))
    empty_tail = draw(st.integers(0, n_layers))  # whole trailing layers empty, as in short showers
    E[:, n_layers - empty_tail:] = 0.0
    e_inc = E.sum(axis=1) + draw(hnp.arrays(np.float64, (n,), elements=st.floats(1.0, 1e5)))
    return E, e_inc


@settings(max_examples=80, deadline=None)
@given(data=layer_energy_sets())
def test_u_parametrisation_is_exactly_invertible_and_handles_empty_layers(data):
    E, e_inc = data
    u = layer_energies_to_u(E, e_inc, max_dep=2.0)
    assert u.shape == E.shape and np.all(np.isfinite(u)) and np.all((u >= 0) & (u <= 1))
    back = u_to_layer_energies(u, e_inc, max_dep=2.0)
    assert np.all(np.abs(back - E) <= 1e-10 * E + 1e-12 * (1 + E.sum(axis=1, keepdims=True)))


def test_u_parametrisation_follows_its_definition():
    E, e_inc = np.array([[2.0, 6.0, 0.0, 2.0]]), np.array([20.0])
    u = layer_energies_to_u(E, e_inc, max_dep=2.0)
    np.testing.assert_allclose(u, [[10 / 40, 2 / 10, 6 / 8, 0 / 2]])
    zero = layer_energies_to_u(np.zeros((1, 4)), e_inc)
    np.testing.assert_array_equal(zero, 0.0)
    np.testing.assert_array_equal(u_to_layer_energies(zero, e_inc), 0.0)


def test_any_u_in_the_unit_cube_gives_non_negative_energies_with_the_encoded_total():
    rng = np.random.default_rng(3)
    u, e_inc = rng.random((50, 45)), 10 ** rng.uniform(3, 5, 50)
    E = u_to_layer_energies(u, e_inc, max_dep=2.0)
    assert np.all(E >= 0)
    np.testing.assert_allclose(E.sum(axis=1), u[:, 0] * 2.0 * e_inc, rtol=1e-12)


@pytest.mark.parametrize("geometry", [Geometry.regular(3, 4, 2, 4.65), Geometry.official("1-photons")],
                         ids=["mesh", "ds1-photons-with-empty-layers"])
def test_layer_normalisation_round_trips_and_leaves_empty_layers_zero(geometry):
    rng = np.random.default_rng(1)
    x = rng.exponential(1.0, (5, geometry.n_voxels)) * (rng.random((5, geometry.n_voxels)) < 0.5)
    first = geometry.layer_slice(geometry.relevant_layers[0])
    x[0, first] = 0.0  # one layer with no energy at all
    shapes, E = normalise_layers(x, geometry)
    assert np.all(np.isfinite(shapes))
    sums = layer_energies(shapes, geometry)
    np.testing.assert_allclose(sums, (E > 0).astype(float), atol=1e-12)
    np.testing.assert_allclose(denormalise_layers(shapes, E, geometry), x, rtol=1e-12, atol=1e-15)


def test_denormalise_imposes_layer_energies_on_shapes_that_do_not_sum_to_one():
    geometry = Geometry.regular(2, 2, 2, 1.0)
    shapes = np.full((1, 8), 0.3)  # each layer sums to 1.2
    out = denormalise_layers(shapes, np.array([[6.0, 0.0]]), geometry)
    np.testing.assert_allclose(layer_energies(out, geometry), [[6.0, 0.0]])


# ---- real Geant4 showers -------------------------------------------------------------------------------------------
def _g4_batches(path, n=600, batch=200):
    with h5py.File(path, "r") as f:
        x = f["showers"][:n]
        e = f["incident_energies"][:n, 0].astype(np.float64)
    return x, e, (lambda: ((x[i:i + batch], e[i:i + batch]) for i in range(0, n, batch)))


def test_calorart_style_log_chain_on_geant4_showers(g4_file):
    """CaloArt's CCD2 chain (threshold on inverse, MeV -> GeV x 0.033, log, global standardise) on real showers."""
    x, e, batches = _g4_batches(g4_file)
    thr = 0.5e-3 / 0.033
    chain = Chain.from_config([{"kind": "threshold", "value": thr}, {"kind": "scale", "factor": 1e-3 * 0.033},
                               {"kind": "log", "eps": 1e-8}, {"kind": "standardise"}]).fit(batches)
    y = chain.forward(x, e).astype(np.float64)
    assert abs(y.mean()) < 1e-3 and abs(y.std() - 1) < 1e-3
    back = chain.inverse(y.astype(np.float32), e)
    want = apply_threshold(x, thr)
    assert np.all(np.abs(back - want) <= 2e-5 * (want + 1e-8 / 3.3e-5))


def test_calodiffusion_style_logit_chain_on_geant4_showers_needs_no_clipping(g4_file):
    x, e, batches = _g4_batches(g4_file)
    chain = Chain.from_config(LOGIT_CHAIN[:2] + [{"kind": "standardise", "mode": "voxel"}]).fit(batches)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a clipping warning would fail the test
        y = chain.forward(x, e)
    assert chain.steps[1].n_clipped == 0
    back = chain.inverse(y, e)
    assert np.all(np.abs(back - x) <= 1e-5 * 2.0 * e[:, None])
    assert np.isclose(back.sum(dtype=np.float64), x.sum(dtype=np.float64), rtol=1e-5)
