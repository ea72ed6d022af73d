"""Condition encoding: energy term at the range ends, angle columns, detector one-hot with a spare slot, state."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from caloforge.errors import CaloforgeError, ConfigError
from caloforge.transforms import ConditionEncoder


def test_energy_term_is_zero_at_emin_one_at_emax_and_linear_in_log_energy():
    enc = ConditionEncoder(energy_range_mev=(1e3, 1e6))
    out = enc.encode(np.array([1e3, 1e6, np.sqrt(1e3 * 1e6), 1e4]))
    assert out.shape == (4, 1) and out.dtype == np.float32 and enc.dim == 1
    np.testing.assert_allclose(out[:, 0], [0.0, 1.0, 0.5, 1 / 3], atol=1e-7)


def test_energies_outside_the_range_extrapolate_instead_of_clipping():
    out = ConditionEncoder((1e3, 1e5)).encode([1e2, 1e6])
    np.testing.assert_allclose(out[:, 0], [-0.5, 1.5], atol=1e-7)


@settings(max_examples=40, deadline=None)
@given(lo_exp=st.floats(0, 3), span=st.floats(0.5, 4), frac=st.floats(0, 1))
def test_energy_term_recovers_the_log_position_within_any_range(lo_exp, span, frac):
    lo, hi = 10**lo_exp, 10 ** (lo_exp + span)
    e = 10 ** (lo_exp + frac * span)
    assert abs(float(ConditionEncoder((lo, hi)).encode([e])[0, 0]) - frac) < 1e-5


def test_angles_are_sin_cos_of_phi_and_theta_over_pi():
    enc = ConditionEncoder(angles=True)
    phi = np.array([0.0, np.pi / 2, -np.pi, np.pi])
    theta = np.array([0.0, np.pi / 2, np.pi, np.pi / 4])
    out = enc.encode(np.full(4, 1e4), phi=phi, theta=theta)
    assert enc.dim == 4 and out.shape == (4, 4)
    np.testing.assert_allclose(out[:, 1:], [[0, 1, 0], [1, 0, 0.5], [0, -1, 1], [0, -1, 0.25]], atol=1e-7)
    np.testing.assert_allclose(out[2, 1:3], out[3, 1:3], atol=1e-7)  # phi = -pi and pi are the same direction


def test_detector_one_hot_has_k_plus_one_columns_with_a_spare_slot():
    enc = ConditionEncoder(n_detectors=3)
    assert enc.dim == 1 + 4 and enc.new_detector_id == 3
    out = enc.encode(np.full(4, 1e4), detector_id=np.array([[0], [2], [3], [1]]))
    np.testing.assert_array_equal(out[:, 1:], np.eye(4)[[0, 2, 3, 1]])


def test_all_blocks_together_come_in_the_documented_column_order():
    enc = ConditionEncoder((1e3, 1e6), angles=True, n_detectors=2)
    out = enc.encode([1e6], phi=[np.pi / 2], theta=[np.pi], detector_id=[1])
    np.testing.assert_allclose(out, [[1.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0]], atol=1e-7)
    assert out.shape[1] == enc.dim


@pytest.mark.parametrize(
    "enc, kwargs, expected",
    [
        (ConditionEncoder(angles=True), {"theta": [0.1]}, "'phi' is required"),
        (ConditionEncoder(angles=True), {"phi": [0.1]}, "'theta' is required"),
        (ConditionEncoder(n_detectors=2), {}, "'detector_id' is required"),
        (ConditionEncoder(n_detectors=2), {"detector_id": [3]}, r"detector_id: expected integers in \[0, 2\]"),
        (ConditionEncoder(n_detectors=2), {"detector_id": [0.5]}, "found 0.5"),
        (ConditionEncoder(angles=True), {"phi": [0.1, 0.2], "theta": [0.1]}, "'phi': expected 1 finite values"),
    ],
)
def test_missing_or_bad_conditions_raise_one_line_errors(enc, kwargs, expected):
    with pytest.raises(CaloforgeError, match=expected) as info:
        enc.encode([1e4], **kwargs)
    assert "\n" not in str(info.value)


def test_non_positive_energy_is_rejected():
    with pytest.raises(CaloforgeError, match="incident energy: expected finite values > 0"):
        ConditionEncoder().encode([1e4, 0.0])


@pytest.mark.parametrize("kwargs", [{"energy_range_mev": (1e6, 1e3)}, {"energy_range_mev": (0, 1e3)},
                                    {"n_detectors": -1}, {"n_detectors": 1.5}])
def test_bad_encoder_settings_are_config_errors(kwargs):
    with pytest.raises(ConfigError):
        ConditionEncoder(**kwargs)


def test_conditions_the_encoder_was_not_built_for_are_ignored():
    enc = ConditionEncoder()
    np.testing.assert_array_equal(enc.encode([1e4], phi=[1.0], theta=[1.0], detector_id=[5]), enc.encode([1e4]))


def test_state_round_trips_through_json():
    enc = ConditionEncoder((1e3, 1e5), angles=True, n_detectors=4)
    back = ConditionEncoder.from_state(json.loads(json.dumps(enc.state())))
    args = {"phi": [0.3, -2.0], "theta": [0.2, 1.0], "detector_id": [4, 0]}
    np.testing.assert_array_equal(back.encode([2e3, 5e4], **args), enc.encode([2e3, 5e4], **args))
    with pytest.raises(ConfigError, match="conditions state"):
        ConditionEncoder.from_state({"angles": True})
