"""Guards: the reference must not be the training data nor share showers with a generated file."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import write_raw_h5

from caloforge.cli.main import main
from caloforge.errors import CaloforgeError
from caloforge.evaluation.guards import (
    check_independence,
    energy_distribution_check,
    file_digests,
    n_shared,
    row_digests,
)


def _showers(n, seed):
    rng = np.random.default_rng(seed)
    e = 10 ** rng.uniform(3, 5, n)
    s = (rng.exponential(1.0, (n, 6480)) * (rng.random((n, 6480)) < 0.05)).astype(np.float32)
    return e, s


@pytest.fixture
def files(tmp_path):
    e_ref, s_ref = _showers(120, 1)
    e_gen, s_gen = _showers(100, 2)
    e_mix, s_mix = e_gen.copy(), s_gen.copy()
    e_mix[:7], s_mix[:7] = e_ref[10:17], s_ref[10:17]  # 7 reference showers leaked into a generated file
    return {
        "ref": write_raw_h5(tmp_path / "ref.h5", e_ref, s_ref),
        "gen": write_raw_h5(tmp_path / "gen.h5", e_gen, s_gen),
        "mix": write_raw_h5(tmp_path / "mix.h5", e_mix, s_mix),
    }


def test_row_digests_ignore_storage_precision_but_see_one_changed_voxel():
    e, s = _showers(20, 0)
    d32 = row_digests(e.astype(np.float32), s)
    assert np.array_equal(d32, row_digests(e, s.astype(np.float64)))
    s2 = s.copy()
    s2[3, 100] += 1.0
    changed = row_digests(e, s2) != d32
    assert changed.tolist() == [i == 3 for i in range(20)]


def test_reference_equal_to_training_file_is_refused_with_one_line(files):
    with pytest.raises(CaloforgeError) as exc:
        check_independence(files["ref"], [files["gen"]], train_path=files["ref"])
    msg = str(exc.value)
    assert "\n" not in msg and "training file" in msg and "--allow-overlap" in msg


def test_training_file_sharing_showers_with_reference_is_refused(files):
    with pytest.raises(CaloforgeError, match="7 of 120 reference showers are in the training file"):
        check_independence(files["ref"], [files["gen"]], train_path=files["mix"])


def test_generated_file_sharing_showers_with_reference_is_detected(files):
    assert n_shared(file_digests(files["ref"]), file_digests(files["mix"])) == 7
    with pytest.raises(CaloforgeError, match="7 of 100 generated showers also occur in the reference"):
        check_independence(files["ref"], [files["gen"], files["mix"]])


def test_allow_overlap_passes_with_a_loud_warning(files):
    warnings = check_independence(files["ref"], [files["mix"]], train_path=files["ref"], allow_overlap=True)
    assert len(warnings) == 2 and all(w.startswith("OVERLAP ALLOWED") for w in warnings)


def test_independent_files_pass_silently(files):
    assert check_independence(files["ref"], [files["gen"]], train_path=files["gen"].with_name("none.h5"),
                              content=False) == []
    assert check_independence(files["ref"], [files["gen"]]) == []


def test_cli_refuses_reference_that_is_the_training_file(files, capsys):
    code = main(["evaluate", "--gen", str(files["gen"]), "--ref", str(files["ref"]), "--train", str(files["ref"]),
                 "--out", str(files["ref"].parent / "out")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("caloforge: error:") and err.count("\n") == 1
    assert not (files["ref"].parent / "out" / "metrics.json").exists()


def test_energy_check_accepts_same_distribution_and_flags_a_different_one():
    rng = np.random.default_rng(0)
    ref = 10 ** rng.uniform(3, 6, 5000)
    same = energy_distribution_check(10 ** rng.uniform(3, 6, 5000), ref)
    assert same["warning"] is None and same["ks_pvalue"] > 1e-3 and same["separation_power_log_e"] < 0.01
    other = energy_distribution_check(10 ** rng.uniform(3, 5, 5000), ref)  # no showers above 100 GeV
    assert other["warning"] is not None and other["ks_pvalue"] < 1e-3
    assert other["separation_power_log_e"] > 0.1
