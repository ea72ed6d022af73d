"""The pure parts of benchmarks/fidelity.py: the seeded split, step planning, and the results-table rows."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from caloforge.training.recipe_io import list_recipes, load_recipe

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "fidelity.py"


@pytest.fixture(scope="module")
def fidelity():
    spec = importlib.util.spec_from_file_location("fidelity_bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rows(path: Path) -> np.ndarray:
    with h5py.File(path) as f:
        return np.asarray(f["incident_energies"][:, 0])


def test_split_is_identical_on_every_run_and_parts_are_disjoint(fidelity, tiny_ds2_file, tmp_path):
    a = fidelity.cached_split(tiny_ds2_file, tmp_path / "a")
    b = fidelity.cached_split(tiny_ds2_file, tmp_path / "b")
    parts_a = {k: _rows(p) for k, p in a.items()}
    for k in ("train", "val", "test"):
        np.testing.assert_array_equal(parts_a[k], _rows(b[k]))
    assert [len(parts_a[k]) for k in ("train", "val", "test")] == [45, 6, 13]  # 64 x 0.7 / 0.1 / 0.2, rounded
    everything = np.concatenate(list(parts_a.values()))
    np.testing.assert_array_equal(np.sort(everything), np.sort(_rows(tiny_ds2_file)))  # each row exactly once


def test_split_cache_is_reused_and_remade_when_the_source_changes(fidelity, tiny_ds2_file, tmp_path):
    first = fidelity.cached_split(tiny_ds2_file, tmp_path)
    stamp = first["test"].stat().st_mtime_ns
    assert fidelity.cached_split(tiny_ds2_file, tmp_path)["test"].stat().st_mtime_ns == stamp
    with h5py.File(tiny_ds2_file, "r+") as f:  # a changed source must not silently reuse the old split
        f["incident_energies"][0, 0] = 5000.0
    remade = fidelity.cached_split(tiny_ds2_file, tmp_path)
    assert 5000.0 in np.concatenate([_rows(p) for p in remade.values()])


def test_another_seed_gives_another_split(fidelity, tiny_ds2_file, tmp_path):
    a = fidelity.cached_split(tiny_ds2_file, tmp_path, seed=1001)
    b = fidelity.cached_split(tiny_ds2_file, tmp_path, seed=7)
    assert a["test"].parent != b["test"].parent
    assert not np.array_equal(_rows(a["test"]), _rows(b["test"]))


@given(sps=st.floats(1e-3, 10.0), budget=st.floats(60.0, 7200.0), spent=st.floats(0.0, 50.0),
       setup=st.floats(0.0, 50.0))
@settings(max_examples=200, deadline=None)
def test_planned_steps_never_overrun_the_remaining_budget(fidelity, sps, budget, spent, setup):
    steps = fidelity.plan_steps(sps, budget, spent, setup)
    assert steps >= 1
    if steps > 1:
        assert spent + setup + steps * sps <= budget


def test_time_per_step_ignores_the_warm_up_interval(fidelity):
    records = [{"step": 10, "samples_per_s": 10.0}, {"step": 20, "samples_per_s": 640.0},
               {"step": 30, "samples_per_s": 640.0}, {"step": 30, "val_loss": 1.0}]
    assert fidelity.seconds_per_step(records, batch_size=64) == pytest.approx(0.1)
    with pytest.raises(ValueError):
        fidelity.seconds_per_step([{"step": 1, "val_loss": 1.0}], 64)


def test_row_has_one_cell_per_column_and_escapes_pipes(fidelity):
    row = {"recipe": "cpu-fm-v", "overrides": "model.patch=[5,4,3] a|b", "FPD x1e3": 12.3456789, "params": 1234,
           "KPD x1e3": float("nan")}
    line = fidelity.format_row(row)
    cells = [c.strip() for c in line.replace("\\|", "").strip("|").split("|")]
    assert len(cells) == len(fidelity.COLUMNS)
    assert cells[fidelity.COLUMNS.index("FPD x1e3")] == "12.35"
    assert cells[fidelity.COLUMNS.index("KPD x1e3")] == "-"
    assert cells[fidelity.COLUMNS.index("tag")] == "-"
    assert "a\\|b" in line


def test_results_file_gets_header_once_and_one_row_per_run(fidelity, tmp_path):
    path = tmp_path / "results" / "fidelity.md"
    fidelity.append_row(path, {"recipe": "r1"}, "# title\n\nmachine text")
    fidelity.append_row(path, {"recipe": "r2"}, "# IGNORED when the file exists")
    text = path.read_text()
    assert text.count(fidelity.table_header()) == 1 and "IGNORED" not in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [line.split(" | ")[2] for line in rows] == ["r1", "r2"]
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_headline_reads_the_evaluation_metrics(fidelity):
    metrics = {"generated": [{
        "classifiers": {"high": {"auc": 0.61234, "auc_std": 0.01}, "low": {"auc": 0.9, "auc_std": 0.0}},
        "fpd": {"value_x1e3": 30.0, "error_x1e3": 1.0}, "kpd": None,
        "separation_power": {"summary": {"E_ratio": {"mean": 0.05}, "E_layer": {"mean": 0.02}}}}]}
    h = fidelity.headline(metrics)
    assert h["AUC high"] == "0.612±0.010" and h["AUC low"] == "0.900"
    assert h["FPD x1e3"] == "30±1" and h["KPD x1e3"] is None
    assert h["sep E_tot/E_inc"] == 0.05 and h["sep E_layer"] == 0.02


def test_cpu_recipes_load_and_pair_x_and_v_on_the_same_large_patch():
    names = [n for n, _ in list_recipes() if n.startswith("cpu-")]
    assert {"cpu-fm-v", "cpu-fm-x-largepatch", "cpu-fm-v-largepatch", "cpu-edm"} <= set(names)
    x, v = load_recipe("cpu-fm-x-largepatch"), load_recipe("cpu-fm-v-largepatch")
    assert x.model == v.model and x.train == v.train
    assert (x.objective["prediction"], v.objective["prediction"]) == ("x", "v")
    assert x.objective["loss_space"] == v.objective["loss_space"] == "v"


def test_a_few_training_steps_sample_and_write_a_generated_file(fidelity, tiny_ds2_file, tmp_path):
    paths = fidelity.cached_split(tiny_ds2_file, tmp_path)
    recipe = load_recipe("cpu-fm-v", ["model.dim=16", "model.heads=2", "model.depth=1", "train.batch_size=8", "sampler.steps=2"])
    recipe = fidelity._with_train(recipe, steps=3, warmup_steps=0, log_every=1, ckpt_every=3, val_every=3)
    fidelity._train_with_deadline(recipe, paths["train"], paths["val"], tmp_path / "run", deadline=time.monotonic() + 3600)
    out = fidelity.sample_test_energies(tmp_path / "run", paths["test"], tmp_path / "gen.h5")
    assert out["params"] > 0 and out["nfe"] == 3 and out["ms"] > 0
    np.testing.assert_allclose(_rows(tmp_path / "gen.h5"), _rows(paths["test"]), rtol=1e-6)


def test_fpd_and_kpd_draws_never_exceed_the_smaller_sample(fidelity):
    for n_ref, n_gen in ((1700, 1700), (850, 850), (1700, 900)):
        fpd_opts, kpd_opts = fidelity.pd_options(n_ref, n_gen)
        n = min(n_ref, n_gen)
        assert fpd_opts["min_samples"] < fpd_opts["max_samples"] == n
        assert kpd_opts["batch_size"] == n


def _challenge_sets():
    import sys

    sys.path.insert(0, str(SCRIPT.parent))  # it imports machine and fidelity as siblings
    spec = importlib.util.spec_from_file_location("challenge_sets_bench", SCRIPT.parent / "challenge_sets.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_challenge_sets_rows_pair_x_and_v_at_each_patch_after_the_floor():
    cs = _challenge_sets()
    rows = cs.rows("ds3", 8, ["5x10x6", "9x10x6"])
    assert rows[0][1] == "par04-siw-ds3-floor" and rows[0][2][:2] == ["--baseline", "geant4-train"]
    runs = [r[2] for r in rows[1:]]
    assert [a[-2:] for a in runs] == [[f"model.patch=[{p}]", f"objective.prediction={x}"]
                                      for p in ("5,10,6", "9,10,6") for x in ("x", "v")]
    for args in runs:  # every DS3 row: the recipe CaloArt's question is asked of, at the given budget
        load_recipe(args[1], args[-2:])
        assert args[:4] == ["--recipe", "cpu-ds3-largepatch", "--budget-min", "8"]
    assert [r[1] for r in cs.rows("ds1", 5, [])] == ["atlas-ds1-photons-floor", "atlas-ds1-photons",
                                                      "atlas-ds1-pions-floor", "atlas-ds1-pions"]


@pytest.mark.parametrize("text", ["5x10", "5x0x6", "axbxc"])
def test_challenge_sets_refuses_a_malformed_patch(text):
    with pytest.raises(SystemExit, match="ZxAxR"):
        _challenge_sets().parse_patch(text)
