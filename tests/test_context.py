"""Report context: the reference-vs-reference floor, the published values and the one-line verdicts."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from caloforge.data.geometry import Geometry
from caloforge.evaluation.classifier import ClassifierSettings
from caloforge.evaluation.context import (
    auc_verdict,
    compare,
    distance_verdict,
    fmt_x1e3,
    headline_rows,
    load_inputs,
    published_for,
    reference_floor,
)

TINY = ClassifierSettings(hidden=32, n_hidden_layers=2, epochs=8, patience=None, batch_size=200, lr=2e-3)
FAST_PD = {"fpd_options": {"min_samples": 100, "max_samples": 300, "num_batches": 5, "num_points": 3},
           "kpd_options": {"batch_size": 300, "num_batches": 5}}


def toy(path, n: int, seed: int, depth_shift: float = 0.0):
    """n DS2-mesh showers: a Gaussian longitudinal profile (optionally shifted deeper) times gamma noise."""
    rng = np.random.default_rng(seed)
    z = np.arange(45, dtype=np.float32)[None, :, None, None]
    e = (10 ** rng.uniform(3, 5, n)).astype(np.float32)
    tmax = (8 + 2 * np.log10(e / 1e3) + depth_shift)[:, None, None, None]
    prof = np.exp(-0.5 * ((z - tmax) / 5) ** 2) * np.exp(-np.arange(9)[None, None, None, :] / 1.5)
    prof = prof / prof.sum(axis=(1, 3), keepdims=True) * (0.7 / 16) * e[:, None, None, None]
    x = prof * rng.gamma(2.0, 0.5, (n, 45, 16, 9)) * (rng.random((n, 45, 16, 9)) < 0.5)
    with h5py.File(path, "w") as f:
        f["incident_energies"] = e[:, None]
        f["showers"] = x.reshape(n, -1).astype(np.float32)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("ctx")
    return toy(d / "ref.h5", 600, 1), toy(d / "other.h5", 600, 2), toy(d / "shifted.h5", 600, 3, depth_shift=1.5)


def test_floor_of_the_same_distribution_is_low_and_a_shifted_sample_is_far_above_it(files):
    ref, other, shifted = files
    geo = Geometry.official("2")
    kw = dict(classifiers=("high",), classifier_settings=TINY, **FAST_PD)
    floor = reference_floor(ref, geo, 300, other_path=other, **kw)
    assert floor["n"] == [300, 300] and floor["kind"].startswith("independent")
    halves = reference_floor(ref, geo, 600, **kw)
    assert halves["n"] == [300, 300] and "halves" in halves["kind"]
    far = compare(load_inputs(ref, geo, low=False), load_inputs(shifted, geo, low=False), **kw)
    for fl in (floor, halves):
        assert fl["classifiers"]["high"]["auc"] < 0.65
        assert far["classifiers"]["high"]["auc"] > fl["classifiers"]["high"]["auc"] + 0.2
        assert far["kpd"]["value"] > 10 * max(fl["kpd"]["value"], fl["kpd"]["error"])
    rows = headline_rows(far, floor, published_for(geo))
    by = {r["metric"]: r for r in rows}
    assert "floor" in by["KPD"]["verdict"]
    assert by["FPD"]["verdict"].startswith(("refused", "not reliable"))  # 300 showers < 2 x 362 features
    assert by["classifier AUC (high-level)"]["verdict"].startswith(("weak", "poor"))


def test_published_values_apply_to_the_ds2_and_ds3_meshes_only():
    ds2 = published_for(Geometry.official("2"))
    assert ds2[0]["name"].startswith("Geant4") and abs(ds2[0]["auc_high"] - 0.5) < 0.01
    assert ds2[0]["fpd_x1e3"] < min(r["fpd_x1e3"] for r in ds2[1:])
    assert published_for(None, "3")[0]["dataset"] == "ds3"
    assert published_for(Geometry.official("1-photons")) == []


def test_numbers_print_in_units_of_1e_3_like_the_published_tables():
    assert fmt_x1e3(0.00864) == "8.64 x1e-3"
    assert fmt_x1e3(8.64131) == "8641 x1e-3"
    assert fmt_x1e3(0.4481, 0.011) == "448 ± 11 x1e-3"
    assert fmt_x1e3(None) == "-"


def test_verdicts_read_each_number_against_its_floor():
    assert auc_verdict(0.51, 0.50).startswith("at the floor")
    assert auc_verdict(0.56, 0.50).startswith("good")
    assert auc_verdict(0.71, 0.50).startswith("fair")
    assert auc_verdict(0.99, 0.50).startswith("poor")
    assert distance_verdict(0.50, 0.01, 0.45, 0.01).startswith("1.1x the floor")
    assert "far from" in distance_verdict(8.6, 0.02, 0.45, 0.01)
    assert distance_verdict(0.47, 0.01, 0.45, 0.01).startswith("at the floor")
    assert distance_verdict(0.02e-3, 0.1e-3, 0.0, 0.1e-3).startswith("at the floor")  # KPD: floor ~ 0
    assert "errors above" in distance_verdict(5e-3, 0.1e-3, 0.0, 0.1e-3)


def test_the_report_section_shows_each_number_beside_its_floor_without_scripts():
    from caloforge.evaluation.context import context_html

    entry = {"label": "gen", "n": 1200, "classifiers": {"high": {"auc": 0.712, "auc_std": 0.0}},
             "fpd": {"value": 0.583, "error": 0.01}, "kpd": {"value": 0.67e-3, "error": 0.12e-3}}
    floor = {"kind": "independent sample of the same size", "n": [1200, 1200],
             "classifiers": {"high": {"auc": 0.498}}, "fpd": {"value": 0.448, "error": 0.011},
             "kpd": {"value": 0.06e-3, "error": 0.13e-3}}
    page = context_html({"generated": [entry], "floor": floor, "published": published_for(Geometry.official("2"))})
    assert "<script" not in page and "http" not in page
    assert "<td>0.712</td><td>0.498</td>" in page and "583 ± 10 x1e-3</td><td>448 ± 11 x1e-3" in page
    assert "1.3x the floor" in page and "CaloDREAM" in page and "100k" in page
    small = context_html({"generated": [{**entry, "n": 300}], "floor": {**floor, "n_features": 362}})
    assert "not reliable" in small  # FPD from fewer showers than twice the features is not read against a floor


def test_the_ratio_strip_widens_to_show_a_large_mismatch():
    from caloforge.evaluation.plots import ratio_limits

    assert ratio_limits([np.array([0.9, 1.1, np.nan])]) == (0.5, 1.5, False)
    lo, hi, log = ratio_limits([np.array([0.9, 2.4])])
    assert not log and hi >= 2.4
    lo, hi, log = ratio_limits([np.array([0.02, 1.0, 40.0])])
    assert log and lo <= 0.02 and hi >= 40.0
