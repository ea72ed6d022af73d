"""Post-processing: threshold, unphysical-shower detection and reject-and-redraw bookkeeping."""

from __future__ import annotations

import numpy as np
import pytest

from caloforge.errors import CaloforgeError
from caloforge.transforms import apply_threshold, reject_and_redraw, unphysical_mask

THR = 0.5e-3 / 0.033


def test_threshold_zeroes_strictly_below_and_does_not_modify_its_input():
    x = np.array([[0.01, THR, 0.02, -1.0]], dtype=np.float32)
    out = apply_threshold(x, THR)
    np.testing.assert_array_equal(out, np.array([[0.0, THR, 0.02, 0.0]], dtype=np.float32))
    assert x[0, 0] == np.float32(0.01) and out.dtype == np.float32


def test_unphysical_mask_flags_nan_inf_negative_and_too_much_energy():
    x = np.array([[1.0, 1.0], [np.nan, 1.0], [np.inf, 0.0], [-0.1, 1.0], [10.0, 11.0], [10.0, 10.0]])
    e = np.full(6, 10.0)
    np.testing.assert_array_equal(unphysical_mask(x, e, max_ratio=2.0), [False, True, True, True, True, False])


def test_unphysical_mask_rejects_mismatched_energies():
    with pytest.raises(CaloforgeError, match="expected showers"):
        unphysical_mask(np.ones((3, 2)), np.ones(2), 2.0)


def make_draw(seed: int, p_bad: float, n_voxels: int = 5, always_bad=()):
    """A generator stand-in: each drawn row is bad (NaN, negative or too energetic) with probability p_bad."""
    rng = np.random.default_rng(seed)
    calls: list[np.ndarray] = []

    def draw(indices):
        calls.append(np.array(indices))
        rows = rng.random((len(indices), n_voxels))  # sums < 5, well below max_ratio * E = 20
        kind = rng.integers(0, 3, len(indices))
        bad = (rng.random(len(indices)) < p_bad) | np.isin(indices, list(always_bad))
        rows[bad & (kind == 0), 0] = np.nan
        rows[bad & (kind == 1), 1] = -1.0
        rows[bad & (kind == 2), 2] = 100.0
        return rows

    return draw, calls


def test_bad_rows_are_redrawn_until_good_and_counts_match_the_draws():
    energies = np.full(200, 10.0)
    draw, calls = make_draw(seed=0, p_bad=0.3)
    showers, stats = reject_and_redraw(draw, energies, max_ratio=2.0, max_rounds=20)
    assert showers.shape == (200, 5)
    assert not unphysical_mask(showers, energies, 2.0).any()
    assert stats.n_still_bad == 0 and stats.still_bad_indices == [] and stats.rejected_per_round[-1] == 0
    # the first call draws every row; each later call redraws exactly the rows the previous round rejected
    assert len(calls[0]) == 200
    assert [len(c) for c in calls[1:]] == stats.rejected_per_round[:-1]
    assert stats.n_redrawn == sum(len(c) for c in calls[1:])
    assert stats.rejected_per_round[0] > 30  # ~60 expected: the test really exercises redrawing
    assert all(a >= b for a, b in zip(stats.rejected_per_round, stats.rejected_per_round[1:]))


def test_good_rows_are_never_redrawn_or_changed():
    energies = np.full(50, 10.0)
    draw, _ = make_draw(seed=1, p_bad=0.3)
    first = draw(np.arange(50))
    good = ~unphysical_mask(first, energies, 2.0)
    replay, _ = make_draw(seed=1, p_bad=0.3)
    showers, _ = reject_and_redraw(replay, energies, max_ratio=2.0)
    np.testing.assert_array_equal(showers[good], first[good])


def test_reject_and_redraw_is_deterministic_with_a_seeded_draw():
    energies = np.full(100, 10.0)
    a, sa = reject_and_redraw(make_draw(5, 0.4)[0], energies, 2.0)
    b, sb = reject_and_redraw(make_draw(5, 0.4)[0], energies, 2.0)
    np.testing.assert_array_equal(a, b)
    assert sa.to_dict() == sb.to_dict()


def test_rows_still_bad_after_the_last_round_are_kept_cleaned_and_reported():
    energies = np.full(20, 10.0)
    draw, calls = make_draw(seed=2, p_bad=0.0, always_bad=(3, 11))
    showers, stats = reject_and_redraw(draw, energies, max_ratio=2.0, max_rounds=4)
    assert showers.shape == (20, 5)  # N energies in, N showers out
    assert stats.rejected_per_round == [2, 2, 2, 2, 2] and len(calls) == 5
    assert stats.n_still_bad == 2 and stats.still_bad_indices == [3, 11] and stats.n_redrawn == 8
    assert np.all(np.isfinite(showers)) and np.all(showers >= 0)  # NaN and negative voxels set to 0
    assert not unphysical_mask(np.delete(showers, [3, 11], axis=0), np.delete(energies, [3, 11]), 2.0).any()


def test_zero_rounds_only_reports():
    draw, calls = make_draw(seed=3, p_bad=0.0, always_bad=(0,))
    _, stats = reject_and_redraw(draw, np.full(4, 10.0), max_ratio=2.0, max_rounds=0)
    assert len(calls) == 1 and stats.rejected_per_round == [1] and stats.n_still_bad == 1 and stats.n_redrawn == 0


def test_a_draw_function_returning_the_wrong_rows_is_an_error():
    with pytest.raises(ValueError, match="draw_fn returned shape"):
        reject_and_redraw(lambda idx: np.zeros((len(idx) + 1, 3)), np.ones(4), 2.0)
