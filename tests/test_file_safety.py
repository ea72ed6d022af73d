"""What caloforge promises about files it writes (`data make`, `data split`): no overwrite without --force, never
onto an input, atomic, a full disk is one line with nothing left behind (never a segfault), stale temps removed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest

import caloforge
from caloforge.cli.main import main
from caloforge.outputs import TMP_MARK

SRC = Path(caloforge.__file__).resolve().parents[1]  # the caloforge under test, also in subprocesses
MAKE = ["data", "make", "--detector", "w-sci", "--n", "20", "--chunk", "10"]


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("caloforge: error: "), err
    return lines[0]


def test_data_make_refuses_to_overwrite_without_force_and_replaces_with_it(capsys, tmp_path):
    out = tmp_path / "m.h5"
    out.write_bytes(b"precious")
    code, _, err = _run(capsys, *MAKE, "--out", str(out))
    assert code == 2 and "exists; pass --force" in _one_error_line(err)
    assert out.read_bytes() == b"precious"
    code, _, _ = _run(capsys, *MAKE, "--out", str(out), "--force")
    assert code == 0 and out.read_bytes()[:8] == b"\x89HDF\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.h5"]


def test_data_split_refuses_existing_parts_without_force(capsys, tmp_path, tiny_ds2_file):
    out = tmp_path / "parts"
    assert _run(capsys, "data", "split", str(tiny_ds2_file), "--out", str(out))[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    code, _, err = _run(capsys, "data", "split", str(tiny_ds2_file), "--out", str(out), "--seed", "5")
    assert code == 2 and "tiny_ds2_train.h5: train part exists; pass --force" in _one_error_line(err)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    code, _, _ = _run(capsys, "data", "split", str(tiny_ds2_file), "--out", str(out), "--seed", "5", "--force")
    assert code == 0 and {p.name: p.read_bytes() for p in out.iterdir()} != before


@pytest.mark.parametrize("link", [os.link, os.symlink])
def test_split_never_writes_onto_its_input_even_with_force(capsys, tmp_path, tiny_ds2_file, link):
    out = tmp_path / "parts"
    out.mkdir()
    link(tiny_ds2_file, out / "tiny_ds2_train.h5")  # a part path that IS the source (hard link or symlink)
    before = tiny_ds2_file.read_bytes()
    code, _, err = _run(capsys, "data", "split", str(tiny_ds2_file), "--out", str(out), "--force")
    line = _one_error_line(err)
    assert code == 2 and ("is also an input of this command" in line or "differ from each other and from the source"
                          in line)
    assert tiny_ds2_file.read_bytes() == before


def test_stale_temps_of_a_killed_make_are_removed_on_the_next_start(capsys, tmp_path):
    stale = tmp_path / f".m.h5{TMP_MARK}999999-deadbeef"  # pid 999999 does not run
    stale.write_bytes(b"x" * 1000)
    assert _run(capsys, *MAKE, "--out", str(tmp_path / "m.h5"))[0] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.h5"]


_Usage = namedtuple("_Usage", "total used free")


@pytest.mark.parametrize("action", ["make", "split"])
def test_full_disk_mocked_is_one_line_and_leaves_nothing(capsys, tmp_path, tiny_ds2_file, monkeypatch, action):
    monkeypatch.setattr(shutil, "disk_usage", lambda p: _Usage(10**9, 10**9 - 50_000, 50_000))
    out = tmp_path / "out"
    out.mkdir()
    argv = [*MAKE, "--out", str(out / "m.h5")] if action == "make" else [
        "data", "split", str(tiny_ds2_file), "--out", str(out)]
    code, _, err = _run(capsys, *argv)
    line = _one_error_line(err)
    assert code == 2 and "MB are free there" in line and str(out) in line
    assert list(out.iterdir()) == []


_NO_PRECHECK = ("import sys; from caloforge.data import split, writer; writer.ShowerWriter._check_room = lambda s, n: None; "
                "split.ensure_free_space = lambda *a, **k: None; "
                "from caloforge.cli.main import main; sys.exit(main(sys.argv[1:]))")


@pytest.fixture
def small_disk(tmp_path):
    """A 3 MB tmpfs (needs root); skipped where it cannot be mounted."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if shutil.which("mount") is None or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)],
                                                      capture_output=True, check=False).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    yield mnt
    subprocess.run(["umount", str(mnt)], check=False)


@pytest.mark.parametrize("precheck", [True, False], ids=["free-space-check", "hdf5-hits-ENOSPC"])
def test_full_disk_on_a_real_small_tmpfs_is_one_line_no_segfault_nothing_left(small_disk, tiny_ds2_file, precheck):
    """Before: exit 139 (segfault) after h5py tracebacks. Without the free-space pre-check HDF5 itself hits ENOSPC
    in the middle of the file: still one line, exit 2, no temporary file."""
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    head = [sys.executable, "-m", "caloforge.cli.main"] if precheck else [sys.executable, "-c", _NO_PRECHECK]
    big = small_disk.parent / "big.h5"
    rng = np.random.default_rng(1)
    from caloforge.data.writer import write_showers

    e = 10 ** rng.uniform(3, 5, 600)
    write_showers(big, e, rng.exponential(1.0, (600, 6480)) * (rng.random((600, 6480)) < 0.3))  # ~6 MB gzip
    for argv in (["data", "make", "--detector", "par04-siw", "--n", "1500", "--chunk", "100",
                  "--out", str(small_disk / "m.h5")],
                 ["data", "split", str(big), "--out", str(small_disk / "parts")]):
        r = subprocess.run(head + argv, capture_output=True, text=True, env=env, timeout=300, check=False)
        assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
        assert r.stderr.strip().splitlines() == [r.stderr.strip()] and "free there" in r.stderr
        left = [p for p in small_disk.rglob("*") if p.is_file()]
        assert left == [], left
