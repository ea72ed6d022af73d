"""`caloforge distill` end to end on a tiny two-stage teacher: every method makes a normal run directory that
samples (Generator, `caloforge sample`), benches and exports (ONNX equal to PyTorch) like any other, settings are
refused at the door."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import write_raw_h5

from caloforge.cli.main import main
from caloforge.export.layouts import CaloChallengeLayout
from caloforge.export.writer import read_metadata
from caloforge.sampling.generator import Generator
from caloforge.training.checkpoint import load_checkpoint

TINY = ["model.dim=32", "model.depth=1", "layer_model.width=32", "layer_model.depth=1", "train.batch_size=8",
        "train.warmup_steps=1", "train.ckpt_every=2"]
QUICK = ["train.steps=2", "train.batch_size=8", "train.log_every=1", "reflow.pairs=8", "bespoke.iterations=2",
         "bespoke.trajectories=4", "bespoke.knots=2", "bespoke.batch=2", "progressive.start_steps=4"]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    return make_teacher(tmp_path_factory.mktemp("distill"))


def make_teacher(root):
    """(run, data, root): a 2-step tiny-fm-2s teacher on 48 random showers (also for test_distill_resume.py)."""
    rng = np.random.default_rng(0)
    e = 10 ** rng.uniform(3, 5, 48)
    data = write_raw_h5(root / "tiny.h5", e, rng.exponential(1.0, (48, 6480)) * (rng.random((48, 6480)) < 0.1))
    run = root / "teacher"
    assert main(["train", "--recipe", "tiny-fm-2s", "--data", str(data), "--out", str(run), "--steps", "2",
                 "--device", "cpu", *TINY]) == 0
    return run, data, root


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setenv("CALOFORGE_PROGRESS", "0")
    old = torch.get_num_threads()
    yield
    torch.set_num_threads(old)


@pytest.mark.slow
@pytest.mark.parametrize("method,steps,nfe", [("consistency", 2, 2), ("progressive", 1, 1), ("reflow", 1, 1),
                                              ("bespoke", 2, 4)])
def test_distilled_run_samples_and_benches_like_any_other(teacher, method, steps, nfe, tmp_path):
    run, data, _ = teacher
    out = tmp_path / f"{method}"
    assert main(["distill", "--method", method, "--teacher", str(run), "--data", str(data), "--steps", str(steps),
                 "--out", str(out), *QUICK]) == 0
    ck = load_checkpoint(out)
    assert ck["objective"]["kind"] == ("bespoke" if method == "bespoke" else "distilled")
    assert ck["layer_objective"]["kind"] == ck["objective"]["kind"]  # both stages reach the step count
    assert json.loads((out / "distill.json").read_text())["method"] == method
    gen = Generator.load(out, device="cpu")
    showers, stats = gen.generate(np.array([2e3, 5e4, 9e4]), seed=1)
    assert showers.shape == (3, 6480) and np.isfinite(showers).all() and (showers >= 0).all()
    assert stats["nfe"] == nfe and gen.layer_nfe() == nfe
    again, _ = Generator.load(out, device="cpu").generate(np.array([2e3, 5e4, 9e4]), seed=1)
    np.testing.assert_array_equal(showers, again)
    assert main(["sample", "--checkpoint", str(out), "--energy-range", "1:100", "--n", "4", "--device", "cpu",
                 "--out", str(tmp_path / "s.h5")]) == 0
    bench = tmp_path / "bench.json"
    assert main(["bench", "--checkpoint", str(out), "--batch-sizes", "1,2", "--threads", "1", "--repeats", "1",
                 "--no-gpu", "--out", str(bench)]) == 0
    (res,) = json.loads(bench.read_text())["results"]
    assert res["nfe"] == nfe and all(r["ms_per_shower"] > 0 for r in res["rows"])
    onnx_path = tmp_path / "distilled.onnx"
    assert main(["export", "--checkpoint", str(out), "--format", "onnx", "--layout", "calochallenge",
                 "--out", str(onnx_path)]) == 0
    meta = read_metadata(onnx_path)
    assert meta["nfe"] == meta["layer_nfe"] == nfe and meta["solver"] == stats["solver"]
    assert_onnx_equals_torch(onnx_path, CaloChallengeLayout(gen.module()), gen.threshold_mev)


def assert_onnx_equals_torch(path, wrapper, threshold: float) -> None:
    """onnxruntime on the exported file == the PyTorch generator on identical inputs (tests/test_export.py's
    tolerance: 1e-4 relative + 1e-6 MeV, voxels within float rounding of the threshold excepted)."""
    import onnxruntime as ort

    inputs = wrapper.example_inputs(5)
    with torch.no_grad():
        want = wrapper(*inputs).numpy()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {i.name: x.numpy() for i, x in zip(sess.get_inputs(), inputs)})[0]
    bad = np.abs(got - want) > 1e-4 * np.abs(want) + 1e-6
    near = np.maximum(np.abs(got), np.abs(want)) < 1.001 * threshold
    assert got.shape == want.shape and not (bad & ~near).any()


@pytest.mark.slow
def test_progressive_keeps_each_round_as_a_run(teacher, tmp_path):
    run, data, _ = teacher
    out = tmp_path / "pd"
    assert main(["distill", "--method", "progressive", "--teacher", str(run), "--data", str(data), "--steps", "1",
                 "--out", str(out), *QUICK, "progressive.start_steps=8"]) == 0
    for n in (4, 2):
        assert Generator.load(out / "rounds" / f"steps-{n}", device="cpu").nfe() == n
    assert Generator.load(out, device="cpu").nfe() == 1


@pytest.mark.parametrize("args,message", [
    (["--method", "progressive", "--steps", "3"], "start_steps"),
    (["--method", "consistency", "consistency.grids=4"], "consistency.grids: unknown key"),
    (["--method", "bespoke", "bespoke.base=rk9"], "bespoke.base"),
    (["--method", "reflow", "train.lr=-1"], "train.lr"),
    (["--method", "consistency", "steps=3"], "use --method / --steps"),
])
def test_bad_settings_are_refused_before_any_work(teacher, tmp_path, capsys, args, message):
    run, data, _ = teacher
    out = tmp_path / "never"
    assert main(["distill", "--teacher", str(run), "--data", str(data), "--out", str(out), *args]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_teacher_and_output_checks(teacher, tmp_path, capsys):
    run, data, _ = teacher
    out = tmp_path / "cd"
    base = ["distill", "--teacher", str(run), "--data", str(data), "--method", "consistency", *QUICK]
    assert main([*base, "--out", str(out)]) == 0
    assert main([*base, "--out", str(out)]) == 2 and "exists" in capsys.readouterr().err
    assert main([*base, "--out", str(out), "--force"]) == 0
    again = ["distill", "--teacher", str(out), "--data", str(data), "--method", "consistency", *QUICK]
    assert main([*again, "--out", str(tmp_path / "x")]) == 2
    assert "already a distilled run" in capsys.readouterr().err
    assert main([*base, "--out", str(run)]) == 2  # the teacher itself is never overwritten
