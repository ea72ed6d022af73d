"""Exported generators (ONNX via onnxruntime, TorchScript) equal the PyTorch generator; the par04 layout has the
Geant4 shape, units and cell order; the Par04-style consumer feeds `caloforge evaluate`.

Tolerance of the export comparisons: |exported - torch| <= 1e-4 |torch| + 1e-6 MeV per voxel on identical noise; a
voxel within float rounding of the readout threshold may flip (both values then lie below 1.001 x threshold).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from caloforge.cli.main import main
from caloforge.data.geometry import Geometry
from caloforge.errors import CaloforgeError
from caloforge.export.layouts import (
    CaloChallengeLayout,
    Par04Layout,
    calochallenge_to_par04,
    par04_to_calochallenge,
)
from caloforge.export.writer import export_generator, read_metadata
from caloforge.sampling.generator import Generator
from caloforge.sampling.random_run import random_checkpoint, synthetic_showers
from caloforge.training.recipe_io import load_recipe

GEO = Geometry.regular(10, 4, 3, dr_mm=5.0, dz_mm=3.4, name="mesh-test")
SMALL = ["model.patch=[2,2,3]", "model.dim=32", "model.heads=2", "model.depth=1"]
RECIPES = {
    "one": ("tiny-fm", SMALL),
    "two": ("tiny-fm-2s", [*SMALL, "layer_model.width=32", "layer_model.depth=1"]),
    "angles": ("tiny-fm", [*SMALL, "data.conditions=[energy,phi,theta]"]),
}
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    return {k: random_checkpoint(load_recipe(name, overrides), root / k, GEO, seed=1)
            for k, (name, overrides) in RECIPES.items()}


def assert_export_close(got: np.ndarray, want: np.ndarray, threshold: float) -> None:
    bad = np.abs(got - want) > 1e-4 * np.abs(want) + 1e-6
    near = np.maximum(np.abs(got), np.abs(want)) < 1.001 * threshold
    assert not (bad & ~near).any(), float(np.abs(got - want)[bad & ~near].max())


def run_onnx(path: Path, inputs) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {i.name: x.numpy() for i, x in zip(sess.get_inputs(), inputs)})[0]


@pytest.mark.parametrize(("solver", "steps"), [("euler", 1), ("heun", 4)])
@pytest.mark.parametrize("stage", ["one", "two"])
def test_onnx_and_torchscript_equal_the_pytorch_generator(runs, tmp_path, stage, solver, steps):
    import onnx

    gen = Generator.load(runs[stage], device="cpu")
    layer_steps = steps if stage == "two" else None  # a K-step two-stage generator: both stages take K steps
    wrapper = CaloChallengeLayout(gen.module(solver, steps, layer_steps))
    onnx_path, ts_path = tmp_path / "g.onnx", tmp_path / "g.pt"
    meta = export_generator(gen, "onnx", "calochallenge", onnx_path, solver, steps, layer_steps=layer_steps)
    export_generator(gen, "torchscript", "calochallenge", ts_path, solver, steps, layer_steps=layer_steps)
    onnx.checker.check_model(onnx.load(str(onnx_path)), full_check=True)
    assert meta["steps"] == steps and meta["solver"] == solver and meta["two_stage"] == (stage == "two")
    if stage == "two":
        assert wrapper.gen.layer.steps == meta["layer_steps"] == steps
        assert meta["layer_nfe"] == gen.layer_nfe(steps) < gen.layer_nfe()  # fewer than the recipe's layer steps
    assert read_metadata(onnx_path)["nfe"] == read_metadata(ts_path)["nfe"] == gen.nfe(solver, steps)
    traced = torch.jit.load(str(ts_path))
    for batch in (1, 7):
        inputs = wrapper.example_inputs(batch)
        with torch.no_grad():
            want = wrapper(*inputs).numpy()
            got_ts = traced(*inputs).numpy()
        assert want.shape == (batch, GEO.n_voxels) and (want > 0).any()
        assert_export_close(run_onnx(onnx_path, inputs), want, gen.threshold_mev)
        assert_export_close(got_ts, want, gen.threshold_mev)


def test_layer_steps_are_refused_for_a_one_stage_model_before_any_work(runs, tmp_path, capsys):
    out = tmp_path / "g.onnx"
    assert main(["export", "--checkpoint", str(runs["one"]), "--format", "onnx", "--layout", "calochallenge",
                 "--layer-steps", "1", "--out", str(out)]) == 2
    assert "--layer-steps" in capsys.readouterr().err and not out.exists()


def test_par04_reorder_both_ways_on_a_known_shower():
    z, a, r = GEO.grid_shape
    iz, ia, ir = np.meshgrid(np.arange(z), np.arange(a), np.arange(r), indexing="ij")
    shower = (1000 * iz + 100 * ia + ir).reshape(1, -1).astype(np.float32)  # CaloChallenge flat order
    assert shower[0, GEO.flat_index(2, 1, 2)] == 2000 + 100 + 2
    cells = calochallenge_to_par04(shower, (z, a, r))
    for ir_, ia_, iz_ in [(0, 0, 0), (2, 1, 7), (1, 3, 9)]:
        assert cells[0, ir_ * a * z + ia_ * z + iz_] == 1000 * iz_ + 100 * ia_ + ir_  # Par04 index, z innermost
    np.testing.assert_array_equal(par04_to_calochallenge(cells, (z, a, r)), shower)
    t = torch.from_numpy(shower)
    np.testing.assert_array_equal(calochallenge_to_par04(t, (z, a, r)).numpy(), cells)
    np.testing.assert_array_equal(par04_to_calochallenge(calochallenge_to_par04(t, (z, a, r)), (z, a, r)), t)


def test_par04_export_has_geant4_shape_units_and_order(runs, tmp_path):
    gen = Generator.load(runs["angles"], device="cpu")
    module = gen.module("euler", 2)
    layout = Par04Layout(module, GEO.grid_shape).eval()
    x = torch.tensor([[10.0, 0.3, 1.2, 1, 0, 0, 0, 0], [50.0, -2.0, 2.0, 1, 0, 0, 0, 0]])
    with torch.no_grad():
        torch.manual_seed(5)
        got = layout(x)
        torch.manual_seed(5)
        noise = torch.randn(2, module.noise_dim)
        mev = module(noise, torch.cat([x[:, :1] * 1000.0, x[:, 1:3]], dim=1))  # E in MeV, phi, theta
    np.testing.assert_allclose(got.numpy(), calochallenge_to_par04(mev.numpy(), GEO.grid_shape) / 1000.0, rtol=1e-6)
    ts_path, onnx_path = tmp_path / "p.pt", tmp_path / "p.onnx"
    export_generator(gen, "torchscript", "par04", ts_path, "euler", 2)
    export_generator(gen, "onnx", "par04", onnx_path, "euler", 2)
    traced = torch.jit.load(str(ts_path))
    with torch.no_grad():
        torch.manual_seed(5)
        np.testing.assert_allclose(traced(x).numpy(), got.numpy(), rtol=1e-5, atol=1e-9)
        assert traced(x[0]).shape == (1, GEO.n_voxels)  # Par04TorchInference passes a 1-D tensor of 8
    out = run_onnx(onnx_path, (x.repeat(3, 1),))
    assert out.shape == (6, GEO.n_voxels) and np.all(np.isfinite(out)) and np.all(out >= 0)
    assert not np.array_equal(out[0], out[2])  # noise is drawn in the graph, fresh per row
    meta = read_metadata(onnx_path)
    assert meta["layout"] == "par04" and meta["inputs"] == ["conditions"] and "z innermost" in meta["cell_order"]


def test_angle_conditioned_model_refuses_to_sample_without_angles(runs, tmp_path, capsys):
    gen = Generator.load(runs["angles"], device="cpu")
    with pytest.raises(CaloforgeError, match="incident angles") as info:
        gen.generate(np.array([1e4, 2e4]), steps=1)
    assert "\n" not in str(info.value)
    args = ["sample", "--checkpoint", str(runs["angles"].parent.parent), "--energy-range", "1:10", "--n", "2",
            "--steps", "1", "--out", str(tmp_path / "s.h5")]
    assert main(args) == 2
    assert "incident angles" in capsys.readouterr().err and not (tmp_path / "s.h5").exists()
    assert main([*args, "--phi", "0.1", "--theta", "1.5"]) == 0
    import h5py

    with h5py.File(tmp_path / "s.h5") as f:
        assert f.attrs["recipe"] == "tiny-fm" and int(f.attrs["steps"]) == 1 and str(f.attrs["solver"]) == "heun"
        assert "caloforge_version" in f.attrs and int(f.attrs["seed"]) == 0
        np.testing.assert_allclose(f["incident_theta"][:, 0], 1.5)


def test_sample_never_writes_onto_an_input_or_a_checkpoint_and_stops_cleanly(runs, tmp_path, capsys, monkeypatch):
    from caloforge.data.writer import write_showers

    x, e = synthetic_showers(GEO, 4)
    victim = write_showers(tmp_path / "victim.h5", e, x, geometry=GEO)
    before = victim.read_bytes()
    run = str(runs["one"].parent.parent)
    base = ["sample", "--checkpoint", run, "--steps", "1"]
    assert main([*base, "--energies-from", str(victim), "--out", str(victim), "--force"]) == 2
    assert "also an input" in capsys.readouterr().err and victim.read_bytes() == before
    assert main([*base, "--energy-range", "1:10", "--n", "2", "--out", str(runs["one"]), "--force"]) == 2
    assert "also an input" in capsys.readouterr().err
    out = tmp_path / "new.h5"
    out.write_text("keep me")
    assert main([*base, "--energy-range", "1:10", "--n", "2", "--out", str(out)]) == 2
    assert "--force" in capsys.readouterr().err and out.read_text() == "keep me"

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(Generator, "generate", interrupted)
    assert main([*base, "--energy-range", "1:10", "--n", "2", "--out", str(tmp_path / "int.h5")]) == 130
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.h5", "victim.h5"]  # nothing half-written


@pytest.mark.slow
def test_export_then_par04_consumer_then_evaluate_end_to_end(runs, tmp_path):
    from caloforge.data.writer import write_showers

    x, e = synthetic_showers(GEO, 40, seed=3)
    ref = write_showers(tmp_path / "ref.h5", e, x, geometry=GEO)
    model = tmp_path / "cd.onnx"
    assert main(["export", "--checkpoint", str(runs["angles"]), "--format", "onnx", "--layout", "par04",
                 "--steps", "2", "--solver", "euler", "--out", str(model)]) == 0
    gen_file = tmp_path / "par04_showers.h5"
    done = subprocess.run([sys.executable, str(REPO / "examples" / "par04_consumer.py"), "--model", str(model),
                           "--energies-from", str(ref), "--phi", "0.2", "--theta", "1.4", "--out", str(gen_file)],
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert main(["evaluate", "--gen", str(gen_file), "--ref", str(ref), "--classifiers", "none", "--no-kpd",
                 "--out", str(tmp_path / "report")]) == 0
    assert (tmp_path / "report" / "metrics.json").is_file()


def test_detector_names_resolve_to_slots_and_missing_detector_is_refused():
    from caloforge.sampling.conditions import detector_slots, raw_conditions
    from caloforge.transforms.conditions import ConditionEncoder

    enc = ConditionEncoder((1e3, 1e6), angles=False, n_detectors=4)
    names = ["Par04SiW", "Par04SciPb", "ODD", "FCCeeCLD"]
    np.testing.assert_array_equal(detector_slots(["ODD", "4", 1], enc, names), [2, 4, 1])
    with pytest.raises(CaloforgeError, match="one of Par04SiW"):
        detector_slots("ALLEGRO", enc, names)
    with pytest.raises(CaloforgeError, match="slot in"):
        detector_slots(5, enc, names)
    with pytest.raises(CaloforgeError, match="conditioned on a detector"):
        raw_conditions(enc, [1e4, 2e4])
    raw = raw_conditions(enc, [1e4, 2e4], detector="FCCeeCLD", names=names)
    np.testing.assert_array_equal(raw[:, 1:], [[0, 0, 0, 1, 0], [0, 0, 0, 1, 0]])
