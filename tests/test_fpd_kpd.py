"""FPD / KPD: independent straightforward re-derivations of the jetnet 0.2.5 formulas, self-distance, bias."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import linalg

from caloforge.errors import CaloforgeError
from caloforge.evaluation import fpd_kpd
from caloforge.evaluation.fpd_kpd import (
    fpd,
    fpd_batch_sizes,
    fpd_curve,
    frechet_distance,
    kpd,
    kpd_values,
    mmd_poly_unbiased,
)

pytestmark = pytest.mark.filterwarnings("ignore:recommended number of samples:RuntimeWarning")


def test_frechet_distance_of_diagonal_gaussians_has_the_closed_form():
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([0.5, 1.0, 1.0])
    sd1, sd2 = np.array([1.0, 2.0, 0.5]), np.array([3.0, 2.0, 1.5])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((sd1 - sd2) ** 2)
    assert frechet_distance(mu1, np.diag(sd1**2), mu2, np.diag(sd2**2)) == pytest.approx(expected, rel=1e-12)


def test_frechet_distance_survives_singular_covariances():
    s = np.zeros((3, 3))
    s[0, 0] = 1.0
    assert np.isfinite(frechet_distance(np.zeros(3), s, np.ones(3), s))


def _reference_fpd(real, gen, min_samples, max_samples, num_batches, num_points, seed):
    """Straightforward: per-feature max normalisation, explicit size list, np.cov + sqrtm, exact least squares
    (valid while the fitted intercept and slope are both positive, i.e. the bounds are inactive)."""
    maxes = np.array([max(abs(v) for v in col) or 1.0 for col in real.T])
    x, y = real / maxes, gen / maxes
    step = (1.0 / max_samples - 1.0 / min_samples) / (num_points - 1)
    inv = [1.0 / min_samples + k * step for k in range(num_points - 1)] + [1.0 / max_samples]  # exact end point
    sizes = [int(1.0 / v) for v in inv]  # truncation, as astype('int32')
    rng = np.random.default_rng(seed)
    means = []
    for size in sizes:
        vals = []
        for _ in range(num_batches):
            a = x[rng.choice(len(x), size=size)]
            b = y[rng.choice(len(y), size=size)]
            s1, s2 = np.cov(a.T), np.cov(b.T)
            root = linalg.sqrtm(s1 @ s2).real
            diff = a.mean(0) - b.mean(0)
            vals.append(diff @ diff + np.trace(s1 + s2 - 2 * root))
        means.append(np.mean(vals))
    inv_n = 1.0 / np.array(sizes, dtype=np.float64)
    design = np.stack([np.ones_like(inv_n), inv_n], axis=1)
    coef, *_ = np.linalg.lstsq(design, np.array(means), rcond=None)
    resid = np.array(means) - design @ coef
    cov = np.linalg.inv(design.T @ design) * (resid @ resid) / (len(sizes) - 2)
    return sizes, np.array(means), coef, np.sqrt(cov[0, 0])


def test_fpd_reproduces_the_jetnet_recipe_on_small_arrays():
    rng = np.random.default_rng(1)
    real = rng.normal(size=(400, 4)) * [1.0, 2.0, 0.5, 3.0]
    gen = rng.normal(size=(300, 4)) * [1.2, 2.0, 0.5, 2.5] + [0.3, 0.0, 0.1, -0.5]
    sizes, means, (ref_intercept, ref_slope), ref_err = _reference_fpd(real, gen, 50, 200, 6, 5, seed=7)
    assert ref_intercept > 0 and ref_slope > 0  # the bounds are inactive, so plain least squares is the answer
    our_sizes, our_means = fpd_curve(real, gen, min_samples=50, max_samples=200, num_batches=6, num_points=5, seed=7)
    assert our_sizes.tolist() == sizes
    np.testing.assert_allclose(our_means, means, rtol=1e-8)
    value, err = fpd(real, gen, min_samples=50, max_samples=200, num_batches=6, num_points=5, seed=7)
    # curve_fit (jetnet's fit, bounded trust-region) stops at its own tolerance, not at the exact optimum
    assert value == pytest.approx(ref_intercept, rel=1e-4)
    assert err == pytest.approx(ref_err, rel=1e-3)


def test_fpd_batch_sizes_are_even_in_one_over_n():
    sizes = fpd_batch_sizes(10_000, 50_000, 10)
    # 1 / (1 / 50000) is 49999.999... in floating point and jetnet truncates, so its largest batch is 49 999
    assert sizes[0] == 10_000 and sizes[-1] == 49_999 and len(sizes) == 10
    inv = 1.0 / sizes
    np.testing.assert_allclose(np.diff(inv), np.diff(inv)[0], rtol=3e-3)  # up to int truncation


def test_fpd_of_a_set_against_itself_is_near_zero_and_a_shift_is_not():
    rng = np.random.default_rng(2)
    data = rng.normal(size=(2000, 5))
    same, same_err = fpd(data, data, min_samples=200, max_samples=1000, num_batches=5, num_points=5)
    shifted, _ = fpd(data, data + 0.5, min_samples=200, max_samples=1000, num_batches=5, num_points=5)
    assert same <= max(5 * same_err, 1e-3)
    assert shifted > 100 * max(same, 1e-4)


def _reference_mmd(x, y, degree=4):
    """Explicit double loops over pairs; diagonal terms left out of XX and YY."""
    d = x.shape[1]
    k = lambda a, b: (sum(a[t] * b[t] for t in range(d)) / d + 1.0) ** degree
    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def test_unbiased_mmd_matches_explicit_double_loops_across_block_boundaries(monkeypatch):
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(23, 3)), rng.normal(size=(17, 3)) + 0.2
    expected = _reference_mmd(x, y)
    assert mmd_poly_unbiased(x, y) == pytest.approx(expected, rel=1e-10, abs=1e-12)
    monkeypatch.setattr(fpd_kpd, "_BLOCK", 5)  # exercise off-diagonal symmetric blocks and ragged ends
    assert mmd_poly_unbiased(x, y) == pytest.approx(expected, rel=1e-10, abs=1e-12)


def test_kpd_uses_per_batch_seeds_median_and_half_the_central_68_range():
    rng = np.random.default_rng(4)
    real, gen = rng.normal(size=(60, 3)), rng.normal(size=(50, 3)) * 1.3
    vals = kpd_values(real, gen, num_batches=5, batch_size=20, seed=9)
    maxes = np.abs(real).max(0)
    expected = []
    for i in range(5):
        r = np.random.default_rng(9 + 1000 * i)
        a, b = (real / maxes)[r.choice(60, size=20)], (gen / maxes)[r.choice(50, size=20)]
        expected.append(_reference_mmd(a, b))
    np.testing.assert_allclose(vals, expected, rtol=1e-10, atol=1e-13)
    median, err = kpd(real, gen, num_batches=5, batch_size=20, seed=9)
    assert median == pytest.approx(np.median(expected))
    lo, hi = np.percentile(expected, [16.275, 83.725])
    assert err == pytest.approx((hi - lo) / 2)


def test_kpd_is_unbiased_for_one_distribution_and_positive_for_shifted_ones():
    rng = np.random.default_rng(5)
    same = np.array([mmd_poly_unbiased(rng.normal(size=(40, 3)), rng.normal(size=(40, 3))) for _ in range(300)])
    stderr = same.std(ddof=1) / np.sqrt(len(same))
    assert abs(same.mean()) < 3 * stderr
    shifted = np.array(
        [mmd_poly_unbiased(rng.normal(size=(40, 3)), rng.normal(size=(40, 3)) + 0.7) for _ in range(50)]
    )
    assert shifted.mean() > 10 * shifted.std(ddof=1) / np.sqrt(len(shifted))


def test_bad_feature_matrices_raise():
    with pytest.raises(CaloforgeError, match="same D"):
        fpd(np.zeros((10, 3)), np.zeros((10, 4)))
    with pytest.raises(CaloforgeError, match="same D"):
        kpd(np.zeros(10), np.zeros(10))


def test_agrees_with_installed_jetnet():
    jn = pytest.importorskip("jetnet.evaluation")
    rng = np.random.default_rng(6)
    real, gen = rng.normal(size=(500, 4)), rng.normal(size=(500, 4)) + 0.2
    ours = fpd(real, gen, min_samples=100, max_samples=400, num_batches=4, num_points=4)
    theirs = jn.fpd(real, gen, min_samples=100, max_samples=400, num_batches=4, num_points=4)
    assert ours[0] == pytest.approx(theirs[0], rel=1e-8) and ours[1] == pytest.approx(theirs[1], rel=1e-6)
    ours_k = kpd(real, gen, num_batches=4, batch_size=100)
    theirs_k = jn.kpd(real, gen, num_batches=4, batch_size=100)
    assert ours_k[0] == pytest.approx(theirs_k[0], rel=1e-8, abs=1e-12)


def test_eigh_frechet_trace_agrees_with_scipy_sqrtm():
    rng = np.random.default_rng(8)
    a, b = rng.normal(size=(300, 12)), rng.normal(size=(300, 12)) @ rng.normal(size=(12, 12)) * 0.3
    args = (a.mean(0), np.cov(a.T), b.mean(0), np.cov(b.T))
    assert frechet_distance(*args, method="eigh") == pytest.approx(frechet_distance(*args), rel=1e-9)
    with pytest.raises(CaloforgeError, match="method"):
        frechet_distance(*args, method="svd")


def test_bootstrap_moments_from_counts_equal_np_cov_of_the_drawn_rows():
    from caloforge.evaluation.fpd_kpd import _bootstrap_moments

    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 7))
    for size in (50, 5000):  # gathered path and counts path
        idx = rng.choice(len(x), size=size)
        mu, cov = _bootstrap_moments(x, idx)
        np.testing.assert_allclose(mu, x[idx].mean(0), rtol=0, atol=1e-12)
        np.testing.assert_allclose(cov, np.cov(x[idx], rowvar=False), rtol=0, atol=1e-12)


def test_degenerate_reference_columns_are_dropped_and_named_not_blown_up():
    from caloforge.evaluation.fpd_kpd import MetricRefused, degenerate_columns, guarded

    rng = np.random.default_rng(3)
    real, gen = rng.normal(0, 1, (600, 4)), rng.normal(0.1, 1, (600, 4))
    real[:, 2] = rng.normal(0, 1e-12, 600)  # ~zero spread: jetnet would divide by max|real| ~ 3e-12
    gen[:, 2] = rng.normal(0, 0.05, 600)
    real[:, 3] = gen[:, 3] = 0.0  # all-zero columns are fine (jetnet divides by 1)
    assert degenerate_columns(real, gen).tolist() == [2]
    opts = {"min_samples": 200, "max_samples": 600, "num_batches": 2, "num_points": 3}
    with pytest.raises(MetricRefused, match="starting point"):  # the issue-14 case: jetnet would print 1000 ± 0
        fpd(real, gen, **opts, method="eigh")
    entry = guarded("fpd", fpd, real, gen, ["a", "b", "c", "d"], **opts, method="eigh")
    assert entry["dropped_columns"] == ["c"] and entry["refused"] is None
    assert entry["value"] == pytest.approx(fpd(real[:, [0, 1, 3]], gen[:, [0, 1, 3]], **opts, method="eigh")[0])
    assert entry["value"] < 1.0


def test_a_failed_extrapolation_fit_is_refused_not_printed(monkeypatch):
    import caloforge.evaluation.fpd_kpd as fk

    rng = np.random.default_rng(0)
    real, gen = rng.normal(0, 1, (300, 3)), rng.normal(0, 1, (300, 3))
    monkeypatch.setattr(fk, "curve_fit", lambda *a, **k: (np.array([1.0, 1.0]), np.zeros((2, 2))))
    with pytest.raises(fk.MetricRefused, match="starting point"):
        fk.fpd(real, gen, min_samples=100, max_samples=300, num_batches=2, num_points=3)
    entry = fk.guarded("fpd", fk.fpd, real, gen, min_samples=100, max_samples=300, num_batches=2, num_points=3)
    assert entry["value"] is None and "starting point" in entry["refused"]


def test_non_finite_kernel_sums_are_refused():
    from caloforge.evaluation.fpd_kpd import MetricRefused

    real = np.ones((50, 2))
    gen = np.full((50, 2), 1e300)
    with pytest.raises(MetricRefused):
        kpd(real, gen, num_batches=2, batch_size=20)


def test_the_in_loop_distance_leaves_out_a_round_off_column_instead_of_blowing_up():
    from caloforge.evaluation.fpd_kpd import frechet_distance, normalise_features, sample_frechet_distance

    rng = np.random.default_rng(4)
    real, gen = rng.normal(1, 1, (300, 3)), rng.normal(1.2, 1, (300, 3))
    real[:, 1] = 5.8e-9  # the width of a layer with one voxel in every reference shower (cld-like, layer 36)
    gen[:, 1] = rng.uniform(0, 0.2, 300)
    x, y = normalise_features(real, gen)
    unguarded = frechet_distance(x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False), method="eigh")
    assert unguarded > 1e12  # what the adaptation study's cld-like rows showed
    xk, yk = normalise_features(real[:, [0, 2]], gen[:, [0, 2]])
    expected = frechet_distance(xk.mean(0), np.cov(xk, rowvar=False), yk.mean(0), np.cov(yk, rowvar=False),
                                method="eigh")
    assert sample_frechet_distance(real, gen) == pytest.approx(expected) and expected < 1.0
