"""Bad values never get past a command: NaN/inf/negative voxels and E <= 0 are refused by `train` and `data inspect`
with the file, row and field named; energies outside the trained range refused (or warned); settings bounded at
the door; odd files (extra datasets, unknown voxel counts, deep JSON, empty checkpoints) judged in one line."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from conftest import write_raw_h5
from test_trainer import small_recipe_file, structured_file

import caloforge.training.trainer as trainer_mod
from caloforge.cli.main import main
from caloforge.data.validate import check_energy_range, require_valid
from caloforge.errors import CaloforgeError, DataError
from caloforge.training.checkpoint import load_checkpoint
from caloforge.training.recipe_io import load_recipe


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("caloforge: error: "), err
    return err[0]


def _spoil(path, kind):
    with h5py.File(path, "a") as f:
        if kind == "nan":
            f["showers"][7, 11] = np.nan
        elif kind == "inf":
            f["showers"][7, 11] = np.inf
        elif kind == "negative":
            f["showers"][7, 11] = -0.5
        else:
            f["incident_energies"][7, 0] = 0.0
    return path


EXPECTED = {"nan": "row 7, voxel 11: expected a finite deposit >= 0 MeV, found nan",
            "inf": "row 7, voxel 11: expected a finite deposit >= 0 MeV, found inf",
            "negative": "row 7, voxel 11: expected a finite deposit >= 0 MeV, found -0.5",
            "e0": "dataset 'incident_energies': row 7: expected a finite energy > 0 MeV, found 0.0"}


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_train_refuses_bad_values_naming_option_file_row_and_field(tmp_path, capsys, kind):
    data = _spoil(structured_file(tmp_path / "train.h5"), kind)
    recipe = small_recipe_file(tmp_path)
    code = main(["train", "--recipe", str(recipe), "--data", str(data), "--out", str(tmp_path / "run"), "--steps", "2"])
    line = _one_line(capsys)
    assert code == 2 and f"--data: {data}" in line and EXPECTED[kind] in line
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_inspect_refuses_bad_values_naming_the_row(tiny_ds2_file, capsys, kind):
    _spoil(tiny_ds2_file, kind)
    code = main(["data", "inspect", str(tiny_ds2_file)])
    line = _one_line(capsys)  # before: a crash on inf, 'max voxel 0 MeV' on NaN
    assert code == 2 and EXPECTED[kind] in line


def test_a_bad_validation_file_is_refused_too(tmp_path):
    data = structured_file(tmp_path / "train.h5")
    val = _spoil(structured_file(tmp_path / "val.h5", seed=1), "nan")
    with pytest.raises(DataError, match=r"--val: .*val.h5: dataset 'showers': row 7, voxel 11"):
        trainer_mod.train(load_recipe(small_recipe_file(tmp_path)), data, tmp_path / "run", val_path=val, steps=2,
                          device="cpu")


def test_energies_outside_the_recipe_range_are_refused_or_warned(tmp_path, capsys):
    data = structured_file(tmp_path / "train.h5")  # 1-100 GeV, as the recipe
    val = structured_file(tmp_path / "val.h5", seed=2)
    with h5py.File(val, "a") as f:
        f["incident_energies"][3, 0] = 1.0e6  # a 1 TeV shower against a 1-100 GeV recipe
    recipe = load_recipe(small_recipe_file(tmp_path))
    with pytest.raises(DataError, match=r"--val .*val.h5: incident energies .*-1e\+06 MeV outside the model's "
                                        r"trained range 1000-100000 MeV"):
        trainer_mod.train(recipe, data, tmp_path / "run", val_path=val, steps=2, device="cpu")
    result = trainer_mod.train(recipe, data, tmp_path / "run", val_path=val, steps=2, device="cpu",
                               outside_energy_range="warn")
    assert result.completed and "caloforge: warning: --val" in capsys.readouterr().err


def test_check_energy_range_counts_the_showers_outside():
    assert check_energy_range(np.array([1e3, 5e4, 1e5]), (1e3, 1e5)) is None
    line = check_energy_range(np.array([5e2, 5e4, 2e6]), (1e3, 1e5), "x.h5", on_outside="ignore")
    assert line.startswith("x.h5: 2 showers with incident energies 500-2e+06 MeV outside")
    with pytest.raises(DataError, match="outside the model's trained range"):
        check_energy_range(np.array([2e6]), (1e3, 1e5))


def test_a_non_finite_loss_stops_training_and_names_the_batch_rows(tmp_path, monkeypatch):
    data = structured_file(tmp_path / "train.h5")
    real = trainer_mod.batch_loss
    calls = []

    def poisoned(*args, **kwargs):
        calls.append(1)
        loss = real(*args, **kwargs)
        return loss * float("nan") if len(calls) == 3 else loss

    monkeypatch.setattr(trainer_mod, "batch_loss", poisoned)
    with pytest.raises(CaloforgeError, match=r"step 2: training loss is not finite \(nan\) on the batch of .*train.h5 "
                                             r"rows \[\d+, .*\] \(\d+ rows\)"):
        trainer_mod.train(load_recipe(small_recipe_file(tmp_path)), data, tmp_path / "run", steps=5, device="cpu")


@pytest.mark.parametrize(("override", "fragment"), [
    ("train.lr=.inf", "train.lr: Input should be a finite number, found inf"),
    ("train.betas=[2,-1]", "train.betas.0: Input should be less than 1, found 2"),
    ("train.seed=-1", "train.seed: Input should be greater than or equal to 0, found -1"),
    ("train.seed=1e23", "train.seed: "),
    ("train.seed=100000000000000000000000", "train.seed: Input should be less than or equal to"),
    ("model.depth=100000", "model.depth: Input should be less than or equal to 512, found 100000"),
])
def test_settings_out_of_bounds_are_one_line_exit_2_before_any_work(tmp_path, capsys, override, fragment):
    out = tmp_path / "run"
    code = main(["train", "--recipe", "tiny-fm", "--data", str(tmp_path / "none.h5"), "--out", str(out), override])
    assert code == 2 and fragment in _one_line(capsys) and not out.exists()


def test_unknown_extra_datasets_are_accepted_and_reported(tiny_ds2_file, capsys):
    with h5py.File(tiny_ds2_file, "a") as f:
        f["angles_xyz"] = np.zeros((64, 3), np.float32)
        f.create_group("provenance").attrs["g4"] = "11.2"
        f["incident_theta"] = np.full(64, 1.5, np.float32)  # a known column stored flat (N,)
    assert main(["data", "validate", str(tiny_ds2_file)]) == 0
    out = capsys.readouterr().out
    assert "other datasets (not read): angles_xyz, provenance" in out and "extras: incident_theta" in out
    assert main(["data", "inspect", str(tiny_ds2_file)]) == 0
    assert "angles_xyz, provenance (not read by caloforge)" in capsys.readouterr().out


@pytest.mark.parametrize("action", ["validate", "inspect"])
def test_a_voxel_count_of_no_known_geometry_is_refused_with_the_known_ones(tmp_path, capsys, action):
    path = write_raw_h5(tmp_path / "odd.h5", np.full(4, 1e4), np.ones((4, 6479)))
    assert main(["data", action, str(path)]) == 2
    line = _one_line(capsys)
    assert "6479 voxels per shower match no known geometry" in line and "6480 (2), 40500 (3)" in line
    with pytest.raises(DataError, match="6479 voxels"):
        require_valid(path)


def test_deeply_nested_geometry_json_is_one_line(tiny_ds2_file, capsys):
    with h5py.File(tiny_ds2_file, "a") as f:
        f.attrs["caloforge_geometry"] = "[" * 100000 + "]" * 100000
    assert main(["data", "validate", str(tiny_ds2_file)]) == 2
    assert "attribute 'caloforge_geometry': expected JSON text of a sane depth" in _one_line(capsys)


@pytest.mark.parametrize("content", [None, {"format": "caloforge-checkpoint-1"}])
def test_an_empty_or_format_only_checkpoint_is_one_line(tmp_path, content):
    path = tmp_path / "x.pt"
    path.write_bytes(b"") if content is None else torch.save(content, path)
    with pytest.raises(CaloforgeError, match=r"x.pt: (not a caloforge checkpoint \(the file is empty\)|incomplete "
                                             r"caloforge checkpoint \(missing: step, config, model)"):
        load_checkpoint(path)
