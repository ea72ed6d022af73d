"""The CaloChallenge classifier protocol: splits, calibration, JSD, and AUC ~0.5 / ~1 where it must be."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from caloforge.data.geometry import Geometry
from caloforge.errors import CaloforgeError
from caloforge.evaluation.classifier import (
    ClassifierSettings,
    build_dnn,
    calibrated_scores,
    jsd_from_probs,
    run_classifier,
    split_per_class,
)
from caloforge.evaluation.resnet import ShowerResNet


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny networks run fastest on one thread (and do not fight other processes for the cores)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


FAST = ClassifierSettings(hidden=64, epochs=8, patience=3, batch_size=100)  # small samples: more steps


def test_split_keeps_official_sizes_for_100k():
    parts = split_per_class(100_000, np.random.default_rng(0))
    assert [len(p) for p in parts] == [60_000, 20_000, 20_000]
    assert len(np.unique(np.concatenate(parts))) == 100_000


def test_split_scales_ratios_to_small_samples():
    parts = split_per_class(1003, np.random.default_rng(1))
    assert [len(p) for p in parts] == [601, 200, 202]  # train/test int-truncated, val takes the rest (official)


def test_official_settings_are_the_published_protocol():
    st = ClassifierSettings.official()
    assert (st.hidden, st.n_hidden_layers, st.epochs, st.patience, st.batch_size, st.lr, st.dropout, st.dtype) == (
        2048, 3, 50, None, 1000, 2e-4, 0.0, "float64")
    net = build_dnn(362, st.hidden, st.n_hidden_layers)
    linears = [m for m in net if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(362, 2048), (2048, 2048), (2048, 2048), (2048, 1)]
    assert sum(isinstance(m, torch.nn.LeakyReLU) for m in net) == 3


def test_jsd_is_zero_for_coin_flip_and_one_for_perfect_scores():
    y = np.array([0, 1] * 50, dtype=float)
    assert jsd_from_probs(np.full(100, 0.5), y) == pytest.approx(0.0, abs=1e-12)
    assert jsd_from_probs(np.where(y > 0, 1 - 1e-6, 1e-6), y) == pytest.approx(1.0, abs=1e-4)


def test_isotonic_calibration_is_clipped_to_official_bounds():
    rng = np.random.default_rng(0)
    y = (rng.random(500) > 0.5).astype(float)
    p = np.clip(y * 0.9 + 0.05, 0, 1)  # perfectly separating scores
    cal = calibrated_scores(p, y, np.array([-1.0, 0.0, 0.5, 1.0, 2.0]))
    assert cal.min() >= 1e-6 and cal.max() <= 1 - 1e-6


def _g4_high_level(g4_file, n=4000, first_half_delay=0):
    """cls-high features of n Geant4 showers; the first half optionally starting ``first_half_delay`` layers late."""
    from caloforge.evaluation.features import compute_hlf, hlf_vector

    geo = Geometry.official("2")
    with h5py.File(g4_file, "r") as f:
        s, e = f["showers"][:n], f["incident_energies"][:n, 0]
    s = s.reshape(n, 45, 144)  # (n, layer, alpha * r)
    s[: n // 2] = np.roll(s[: n // 2], first_half_delay, axis=1)
    return hlf_vector(compute_hlf(s.reshape(n, -1), e, geo), geo)


def test_auc_is_half_on_two_halves_of_one_geant4_file(g4_file):
    x = _g4_high_level(g4_file)
    res = run_classifier(x[:2000], x[2000:], settings=FAST, seed=1, device="cpu")
    assert abs(res["auc"] - 0.5) < 0.06, res["per_run"]
    assert res["jsd"] < 0.05
    assert res["n_per_class"] == 2000 and res["n_features"] == 362


def test_auc_is_near_one_when_generated_showers_are_clearly_wrong(g4_file):
    x = _g4_high_level(g4_file, first_half_delay=3)  # showers start 3 layers (~2.4 X0) too deep
    res = run_classifier(x[:2000], x[2000:], settings=FAST, seed=1, device="cpu")
    assert res["auc"] > 0.97
    assert res["jsd"] > 0.7
    fpr, tpr = np.asarray(res["roc"]["fpr"]), np.asarray(res["roc"]["tpr"])
    assert fpr[0] == 0 and tpr[-1] == 1 and np.all(np.diff(fpr) >= 0)


def test_repeats_give_mean_and_spread():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(600, 5)), rng.normal(0.3, 1.0, size=(600, 5))
    res = run_classifier(a, b, repeats=3, settings=ClassifierSettings(hidden=16, epochs=3), device="cpu")
    aucs = [r["auc"] for r in res["per_run"]]
    assert len(aucs) == 3 and res["auc"] == pytest.approx(np.mean(aucs))
    assert res["auc_std"] == pytest.approx(np.std(aucs, ddof=1))


def test_unequal_sample_sizes_are_cut_to_the_smaller_one():
    rng = np.random.default_rng(0)
    res = run_classifier(rng.normal(size=(300, 4)), rng.normal(size=(500, 4)),
                         settings=ClassifierSettings(hidden=8, epochs=1), device="cpu")
    assert res["n_per_class"] == 300


@pytest.mark.parametrize("bad", [np.zeros((50, 3)), np.zeros(50), np.full((50, 4), np.nan)])
def test_bad_inputs_raise_one_line_errors(bad):
    with pytest.raises(CaloforgeError) as exc:
        run_classifier(bad, np.zeros((50, 4)))
    assert "\n" not in str(exc.value)


def test_resnet_gives_one_logit_per_shower_on_ds2_grid():
    net = ShowerResNet((45, 16, 9)).eval()
    x = torch.randn(3, 1 + 6480)
    assert net(x).shape == (3, 1)


def test_cnn_classifier_runs_end_to_end_on_a_small_grid():
    rng = np.random.default_rng(0)
    grid = (6, 4, 3)
    a = np.concatenate([rng.uniform(3, 5, (80, 1)), rng.random((80, 72))], axis=1)
    b = np.concatenate([rng.uniform(3, 5, (80, 1)), rng.random((80, 72)) * 3], axis=1)
    res = run_classifier(a, b, network="cnn", grid_shape=grid, settings=ClassifierSettings(epochs=2, batch_size=32),
                         device="cpu")
    assert 0.0 <= res["auc"] <= 1.0 and res["network"] == "cnn"
    with pytest.raises(CaloforgeError):
        run_classifier(a, b, network="cnn", grid_shape=(5, 4, 3), device="cpu")
