"""`caloforge evaluate`: the report opens, references valid PNGs, and metrics.json follows its schema."""

from __future__ import annotations

import csv
import json
from html.parser import HTMLParser
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from caloforge.cli.main import main
from caloforge.data.geometry import Geometry
from caloforge.evaluation.classifier import ClassifierSettings
from caloforge.evaluation.histograms import voxel_histogram
from caloforge.evaluation.report import evaluate
from caloforge.evaluation.scan import finish_reference_spectrum, scan_file, voxel_spectrum

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def one_torch_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def toy_ds2(path: Path, n: int, seed: int, depth_shift: float = 0.0, leak_from: Path | None = None) -> Path:
    """n DS2-mesh showers from a simple random model (longitudinal Gaussian profile, exponential radial fall-off,
    gamma fluctuations, 50 % empty voxels), written in chunks; optionally the first 5 rows copied from leak_from."""
    rng = np.random.default_rng(seed)
    z = np.arange(45, dtype=np.float32)[:, None, None]
    r = np.arange(9, dtype=np.float32)[None, None, :]
    with h5py.File(path, "w") as f:
        de = f.create_dataset("incident_energies", (n, 1), dtype="f4")
        ds = f.create_dataset("showers", (n, 6480), dtype="f4", chunks=(min(500, n), 6480))
        for i in range(0, n, 2000):
            m = min(2000, n - i)
            e = (10 ** rng.uniform(3, 5, m)).astype(np.float32)
            tmax = (8 + 2 * np.log10(e / 1e3) + depth_shift)[:, None, None, None]
            prof = np.exp(-0.5 * ((z - tmax) / 5) ** 2) * np.exp(-r / 1.5)  # (m, 45, 1, 9)
            prof = prof / prof.sum(axis=(1, 3), keepdims=True) * (0.7 / 16) * e[:, None, None, None]
            noise = rng.gamma(2.0, 0.5, (m, 45, 16, 9)).astype(np.float32) * (rng.random((m, 45, 16, 9)) < 0.5)
            de[i : i + m, 0] = e
            ds[i : i + m] = (prof * noise).reshape(m, -1)
        if leak_from is not None:
            with h5py.File(leak_from, "r") as src:
                de[:5], ds[:5] = src["incident_energies"][:5], src["showers"][:5]
    return path


@pytest.fixture(scope="module")
def ds2_4k(tmp_path_factory):
    d = tmp_path_factory.mktemp("ds2_4k")
    return toy_ds2(d / "ref.h5", 4000, 1), toy_ds2(d / "gen.h5", 4000, 2)


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.imgs, self.tags = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "img":
            self.imgs.append(dict(attrs)["src"])


def _check_schema(m: dict, n_gen: int, classifiers: tuple) -> None:
    assert m["schema"] == "caloforge.evaluate/1"
    assert isinstance(m["reference"]["n"], int) and isinstance(m["warnings"], list)
    assert isinstance(m["timings_s"]["total"], float)
    assert len(m["generated"]) == n_gen
    for g in m["generated"]:
        assert {"path", "label", "n", "energy_check", "fpd", "kpd", "classifiers", "separation_power",
                "timings_s"} <= set(g)
        assert isinstance(g["n"], int) and 0 <= g["energy_check"]["ks_pvalue"] <= 1
        assert set(g["classifiers"]) == set(classifiers)
        for c in g["classifiers"].values():
            assert 0 <= c["auc"] <= 1 and isinstance(c["jsd"], float) and isinstance(c["per_run"], list)
        sp = g["separation_power"]
        assert {"E_ratio", "E_layer", "EC_eta", "width_phi", "voxel"} <= set(sp["summary"])
        n_layer_hists = len([f for f in sp["features"] if f["name"] == "E_layer"])
        assert 30 <= n_layer_hists <= 45  # layers with no reference energy above threshold have no histogram
        assert all(0 <= f["separation_power"] <= 1 for f in sp["features"] if f["separation_power"] is not None)


def test_cli_evaluate_writes_an_html_report_with_valid_pngs(ds2_4k, tmp_path, capsys):
    ref, gen = ds2_4k
    out = tmp_path / "report"
    code = main(["evaluate", "--gen", str(gen), "--ref", str(ref), "--dataset", "2", "--classifiers", "high",
                 "--epochs", "2", "--no-fpd", "--no-kpd", "--out", str(out)])
    assert code == 0
    assert "auc_high" in capsys.readouterr().out
    page = _Links()
    page.feed((out / "report.html").read_text())
    assert page.tags[0] == "html" and "table" in page.tags
    assert len(page.imgs) >= 10
    for src in page.imgs:
        png = out / src
        assert src.startswith("plots/") and png.read_bytes()[:8] == PNG_MAGIC
    m = json.loads((out / "metrics.json").read_text())
    _check_schema(m, 1, ("high",))
    assert sorted(m["plots"]) == sorted(page.imgs)
    g = m["generated"][0]
    assert g["fpd"] is None and g["kpd"] is None and g["n"] == 4000
    assert 0.4 < g["classifiers"]["high"]["auc"] < 0.6  # two draws of the same model
    assert g["energy_check"]["warning"] is None
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert len(rows) == 1 and rows[0]["label"] == "gen"
    assert not list(out.rglob("*.tmp"))


def test_evaluate_compares_several_files_with_fpd_kpd_and_low_level_classifier(tmp_path):
    ref = toy_ds2(tmp_path / "ref.h5", 1500, 1)
    good = toy_ds2(tmp_path / "good.h5", 1500, 2)
    deep = toy_ds2(tmp_path / "deep.h5", 1500, 3, depth_shift=4.0, leak_from=ref)
    small = {"min_samples": 500, "max_samples": 1500, "num_batches": 2, "num_points": 3}
    m = evaluate([good, deep], ref, dataset="2", out_dir=tmp_path / "out", classifiers=("high", "low"),
                 fpd_options=small, kpd_options={"num_batches": 3, "batch_size": 500}, allow_overlap=True,
                 classifier_settings=ClassifierSettings(hidden=32, epochs=4, batch_size=100), low_level_cap=1000,
                 plots=False)
    _check_schema(m, 2, ("high", "low"))
    good_m, deep_m = m["generated"]
    assert any("OVERLAP ALLOWED" in w and "5 of 1500" in w for w in m["warnings"])
    assert m["settings"]["low_level_cap"] == 1000 and good_m["classifiers"]["low"]["n_per_class"] == 1000
    for key in ("fpd", "kpd"):
        assert isinstance(good_m[key]["value"], float) and good_m[key]["value_x1e3"] == pytest.approx(
            1e3 * good_m[key]["value"])
    # a 4-layer-deeper shower maximum is worse on every headline metric
    assert deep_m["fpd"]["value"] > good_m["fpd"]["value"]
    assert deep_m["separation_power"]["mean_official"] > good_m["separation_power"]["mean_official"]
    assert deep_m["classifiers"]["high"]["auc"] > good_m["classifiers"]["high"]["auc"]
    assert (tmp_path / "out" / "report.html").exists()


def test_streamed_voxel_spectrum_equals_the_official_histogram(tmp_path):
    geo = Geometry.official("2")
    ref_p, gen_p = toy_ds2(tmp_path / "r.h5", 300, 1), toy_ds2(tmp_path / "g.h5", 300, 5, depth_shift=2.0)
    for keep in (1 << 30, 0):  # kept in memory, and the second pass of a reference too large to keep
        ref = scan_file(ref_p, geo, batch_size=64, keep_voxel_bytes=keep)
        edges = finish_reference_spectrum(ref, geo)
        streamed = voxel_spectrum(ref, scan_file(gen_p, geo, batch_size=64, voxel_edges=edges), edges)
        with h5py.File(ref_p) as r, h5py.File(gen_p) as g:  # evaluate.py: float32 where(), logspace, np.histogram
            xr, xg = r["showers"][:], g["showers"][:]
            xr, xg = np.where(xr < geo.threshold_mev, 0, xr), np.where(xg < geo.threshold_mev, 0, xg)
        bins = np.logspace(np.log10(geo.threshold_mev), np.log10(xr.max()), 50)
        np.testing.assert_array_equal(streamed.edges, bins)
        np.testing.assert_array_equal(streamed.ref_counts, np.histogram(xr.ravel(), bins)[0])
        np.testing.assert_array_equal(streamed.gen_counts, np.histogram(xg.ravel(), bins)[0])
        official = voxel_histogram(xr, xg, geo.threshold_mev)
        assert streamed.separation_power == official.separation_power




def _numbers(entry: dict) -> dict:
    """Every metric of one generated file (not its timings or path)."""
    return {"fpd": entry["fpd"]["value"], "kpd": entry["kpd"]["value"],
            "auc": [r["auc"] for r in entry["classifiers"]["high"]["per_run"]],
            "seps": [f["separation_power"] for f in entry["separation_power"]["features"]],
            "energy": entry["energy_check"]["ks_pvalue"]}


def test_multi_model_report_has_one_column_per_model_equal_to_single_runs(tmp_path):
    from caloforge.evaluation.report_html import headline_columns

    ref = toy_ds2(tmp_path / "ref.h5", 400, 1)
    a, b = toy_ds2(tmp_path / "a.h5", 400, 2), toy_ds2(tmp_path / "b.h5", 400, 3, depth_shift=3.0)
    kw = {"dataset": "2", "classifiers": ("high",), "plots": False,
              "fpd_options": {"min_samples": 200, "max_samples": 400, "num_batches": 2, "num_points": 3},
              "kpd_options": {"num_batches": 2, "batch_size": 200},
              "classifier_settings": ClassifierSettings(hidden=16, epochs=2, batch_size=100)}
    both = evaluate([a, b], ref, out_dir=tmp_path / "both", labels=["model A", "model B"],
                    ms_per_shower=[2.0, 0.5], **kw)
    single_a = evaluate([a], ref, out_dir=tmp_path / "a", **kw)
    single_b = evaluate([b], ref, out_dir=tmp_path / "b", **kw)
    assert _numbers(both["generated"][0]) == _numbers(single_a["generated"][0])
    assert _numbers(both["generated"][1]) == _numbers(single_b["generated"][0])
    rows, labels, cells = headline_columns(both)
    assert labels == ["model A", "model B"]
    assert {"AUC cls-high", "FPD x10^3", "KPD x10^3", "sep. power E_layer", "ms / shower"} <= set(rows)
    assert cells[("FPD x10^3", "model B")] == both["generated"][1]["fpd"]["value_x1e3"]
    page = (tmp_path / "both" / "report.html").read_text()
    assert "<th>metric</th><th>model A</th><th>model B</th>" in page
    rows_csv = list(csv.DictReader((tmp_path / "both" / "summary.csv").open()))
    assert [r["label"] for r in rows_csv] == ["model A", "model B"] and rows_csv[1]["ms_per_shower"] == "0.5"


def test_report_directory_is_refused_replaced_whole_and_never_half_written(tmp_path, monkeypatch):
    from caloforge.outputs import OutputError

    ref, gen = toy_ds2(tmp_path / "ref.h5", 120, 1), toy_ds2(tmp_path / "gen.h5", 120, 2)
    kw = {"dataset": "2", "classifiers": (), "fpd": False, "kpd": False, "plots": False}
    out = tmp_path / "rep"
    evaluate([gen], ref, out_dir=out, **kw)
    (out / "stale.txt").write_text("from an older report")
    with pytest.raises(OutputError, match="pass --force"):
        evaluate([gen], ref, out_dir=out, **kw)
    with pytest.raises(OutputError, match="input"):  # never onto (or around) an input, even with force
        evaluate([gen], ref, out_dir=tmp_path, force=True, **kw)
    before = (out / "metrics.json").read_text()

    def boom(*a, **k):
        raise RuntimeError("killed while writing the report")

    monkeypatch.setattr("caloforge.evaluation.report.render_html", boom)
    with pytest.raises(RuntimeError):
        evaluate([gen], ref, out_dir=out, force=True, **kw)
    assert (out / "metrics.json").read_text() == before and (out / "stale.txt").exists()  # old report intact
    with pytest.raises(RuntimeError):
        evaluate([gen], ref, out_dir=tmp_path / "fresh", **kw)
    assert not (tmp_path / "fresh").exists()  # a failed first run leaves nothing (no empty plots/)
    monkeypatch.undo()
    evaluate([gen], ref, out_dir=out, force=True, **kw)
    assert not (out / "stale.txt").exists()  # replaced as a whole
    assert not [p for p in tmp_path.iterdir() if "caloforge-tmp" in p.name]


def test_cli_refuses_an_existing_report_in_one_line(tmp_path, capsys):
    ref, gen = toy_ds2(tmp_path / "ref.h5", 60, 1), toy_ds2(tmp_path / "gen.h5", 60, 2)
    (tmp_path / "rep").mkdir()
    code = main(["evaluate", "--gen", str(gen), "--ref", str(ref), "--classifiers", "none", "--no-fpd", "--no-kpd",
                 "--out", str(tmp_path / "rep")])
    assert code == 2 and "--force" in capsys.readouterr().err


def test_fpd_of_parametrised_showers_is_finite_and_reports_its_dropped_columns(tmp_path):
    from caloforge.cli.main import main as cli

    for seed in (1, 2):
        assert cli(["data", "make", "--detector", "par04-siw", "--n", "600", "--seed", str(seed),
                    "--out", str(tmp_path / f"p{seed}.h5")]) == 0
    m = evaluate([tmp_path / "p2.h5"], tmp_path / "p1.h5", out_dir=tmp_path / "rep", classifiers=(), plots=False,
                 fpd_options={"min_samples": 200, "max_samples": 600, "num_batches": 3, "num_points": 3},
                 kpd_options={"num_batches": 3, "batch_size": 300})
    for name in ("fpd", "kpd"):
        d = m["generated"][0][name]
        assert d["refused"] is None and np.isfinite(d["value"]) and isinstance(d["dropped_columns"], list)
    # O(1) (small draws of 600 showers bias it upwards); the blown-up normalisation of issue 14 gave ~1e11
    assert 0 < m["generated"][0]["fpd"]["value"] < 10
