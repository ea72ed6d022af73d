"""LR schedules are pure functions of the step; EMA follows the inverse-decay warm-up formula."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from caloforge.training.ema import EMA, ema_decay
from caloforge.training.schedules import lr_factor


def test_warmup_is_linear_and_never_zero():
    assert [lr_factor(s, 100, "cosine", 4) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor(4, 100, "cosine", 4) == pytest.approx(1.0)


def test_cosine_ends_at_min_factor_and_is_half_way_at_mid_point():
    assert lr_factor(100, 100, "cosine", 0, min_factor=0.1) == pytest.approx(0.1)
    assert lr_factor(50, 100, "cosine", 0, min_factor=0.0) == pytest.approx(0.5)
    assert lr_factor(55, 110, "cosine", 10, min_factor=0.2) == pytest.approx(0.2 + 0.8 * 0.5 * (1 + math.cos(math.pi * 0.45)))


def test_wsd_holds_then_decays_linearly_over_the_last_fraction():
    f = [lr_factor(s, 100, "wsd", 10, decay_fraction=0.2, min_factor=0.1) for s in range(101)]
    assert all(v == 1.0 for v in f[10:80])
    assert f[90] == pytest.approx(1 - 0.9 * 0.5)
    assert f[100] == pytest.approx(0.1)


def test_constant_schedule_and_unknown_schedule():
    assert lr_factor(10_000, 100, "constant", 5) == 1.0
    with pytest.raises(ValueError, match="unknown schedule"):
        lr_factor(0, 10, "linear")


@settings(max_examples=60, deadline=None)
@given(total=st.integers(2, 5000), warm=st.integers(0, 100), minf=st.floats(0, 1), kind=st.sampled_from(["cosine", "wsd"]))
def test_after_warmup_schedules_never_increase_and_stay_in_range(total, warm, minf, kind):
    f = [lr_factor(s, total, kind, warm, 0.3, minf) for s in range(warm, total + 1, max(1, total // 50))]
    assert all(a >= b - 1e-12 for a, b in itertools.pairwise(f))
    assert all(minf - 1e-12 <= v <= 1 + 1e-12 for v in f)


def test_ema_decay_formula_copy_at_start_and_cap():
    assert ema_decay(0) == 0.0
    assert ema_decay(10, power=0.7, max_decay=0.9999) == pytest.approx(1 - 11 ** -0.7)
    assert ema_decay(10**9, power=0.7, max_decay=0.999) == 0.999
    assert ema_decay(5, start=10) == 0.0
    assert ema_decay(12, start=10, power=0.5) == pytest.approx(1 - 3 ** -0.5)


def test_ema_tracks_the_running_average_it_claims():
    net = torch.nn.Linear(3, 2)
    ema = EMA(net, power=0.7, max_decay=0.9)
    expected = {k: v.clone() for k, v in net.state_dict().items()}
    for step in range(20):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(1.0)
        d = ema.update(net, step)
        assert d == ema_decay(step, 0.7, 0.9)
        expected = {k: d * expected[k] + (1 - d) * v for k, v in net.state_dict().items()}
    for k, v in ema.state_dict().items():
        torch.testing.assert_close(v, expected[k])
    copy = torch.nn.Linear(3, 2)
    ema.copy_to(copy)
    torch.testing.assert_close(copy.weight, expected["weight"])


def test_ema_state_round_trips_and_rejects_other_models():
    net = torch.nn.Linear(3, 2)
    a = EMA(net)
    b = EMA(torch.nn.Linear(3, 2))
    b.load_state_dict(a.state_dict())
    for k in a.shadow:
        assert torch.equal(a.shadow[k], b.shadow[k])
    with pytest.raises(KeyError, match="keys differ"):
        EMA(torch.nn.Linear(3, 2, bias=False)).load_state_dict(a.state_dict())
