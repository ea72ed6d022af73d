"""`evaluate` and `sample` apply the value checks of `train`: a NaN, inf or E = 0 row is one line naming the option,
the row and the field, before any work; incident energies outside a model's trained range are refused unless the user
says `--outside-energy-range warn`."""

from __future__ import annotations

import h5py
import pytest
from test_input_values import EXPECTED, _one_line, _spoil
from test_trainer import SMALL_GEO, structured_file

from caloforge.cli.main import main
from caloforge.sampling.random_run import random_checkpoint
from caloforge.training.recipe_io import load_recipe

SMALL = ["model.patch=[2,2,3]", "model.dim=32", "model.heads=2", "model.depth=1", "sampler.steps=2",
         "data.energy_range_mev=[1000.0, 100000.0]"]


@pytest.mark.parametrize("kind", ["nan", "e0"])
def test_evaluate_refuses_a_bad_file_naming_the_row_and_writes_nothing(tmp_path, capsys, kind):
    ref = structured_file(tmp_path / "ref.h5", seed=1)
    gen = _spoil(structured_file(tmp_path / "gen.h5", seed=2), kind)
    out = tmp_path / "report"
    assert main(["evaluate", "--gen", str(gen), "--ref", str(ref), "--out", str(out), "--classifiers", "none"]) == 2
    line = _one_line(capsys)
    assert "--gen" in line and EXPECTED[kind] in line
    assert not out.exists()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return random_checkpoint(load_recipe("tiny-fm", SMALL), tmp_path_factory.mktemp("run") / "run", SMALL_GEO)


def test_sample_refuses_energies_from_a_file_with_a_bad_row(tmp_path, capsys, run):
    src = _spoil(structured_file(tmp_path / "energies.h5"), "e0")
    out = tmp_path / "gen.h5"
    assert main(["sample", "--checkpoint", str(run), "--energies-from", str(src), "--out", str(out)]) == 2
    line = _one_line(capsys)
    assert "--energies-from" in line and EXPECTED["e0"] in line
    assert not out.exists()


def test_sample_refuses_energies_outside_the_trained_range_unless_told(tmp_path, capsys, run):
    src = structured_file(tmp_path / "energies.h5", n=8)
    with h5py.File(src, "a") as f:
        f["incident_energies"][3, 0] = 1.0e6  # 1 TeV against a 1-100 GeV model
    out = tmp_path / "gen.h5"
    args = ["sample", "--checkpoint", str(run), "--energies-from", str(src), "--out", str(out)]
    assert main(args) == 2
    assert "1 showers with incident energies" in _one_line(capsys)
    assert not out.exists()
    assert main([*args, "--outside-energy-range", "warn"]) == 0
    assert out.exists()
