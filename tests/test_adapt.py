"""`caloforge adapt`: a pre-trained multi-detector model takes a new detector into its reserved slot and learns it
faster than the same network from scratch; the adapted run is an ordinary run directory."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from caloforge.cli.main import main
from caloforge.sampling.generator import Generator
from caloforge.simulate.detectors import DetectorSpec, Mesh
from caloforge.simulate.generate import make_file
from caloforge.training.checkpoint import load_checkpoint
from caloforge.training.recipe_io import load_recipe
from caloforge.training.trainer import train
from caloforge.transforms.conditions import ConditionEncoder

MESH = Mesh(10, 2, 3, 6.0, 5.0)
KNOWN = {  # three small sampling calorimeters for pre-training, and a new one
    "w-si": DetectorSpec("w-si", 0, "test", "Si", MESH, "W", 1.4, 0.3),
    "pb-lar": DetectorSpec("pb-lar", 0, "test", "LAr", MESH, "Pb", 1.5, 4.2),
    "fe-sci": DetectorSpec("fe-sci", 0, "test", "scintillator", MESH, "Fe", 3.0, 3.0),
}
NEW = DetectorSpec("pb-sci", 0, "test", "scintillator", MESH, "Pb", 2.0, 4.0)
BASE = ["data.energy_range_mev=[1.0e3, 1.0e5]", "data.conditions=[energy, phi, theta, detector]",
        "model.patch=[2, 2, 3]", "model.dim=32", "train.batch_size=32", "train.log_every=5", "train.seed=0",
        "sampler.steps=4"]


def _file(spec, tmp_path, n, seed):
    return make_file(spec, n, tmp_path / f"{spec.name}.h5", energy_range=(1e3, 1e5), seed=seed,
                     theta_range=(0.9, 2.2), phi_range=(-3.14, 3.14))


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    torch.set_num_threads(2)
    tmp = tmp_path_factory.mktemp("adapt")
    files = [_file(spec, tmp, 400, i) for i, spec in enumerate(KNOWN.values())]
    recipe = load_recipe("tiny-fm", [*BASE, f"data.detectors=[{', '.join(KNOWN)}]", "train.steps=200",
                                     "train.lr=3e-3", "train.ckpt_every=200"])
    train(recipe, files, tmp / "pre", device="cpu")
    new = _file(NEW, tmp, 160, 9)
    return tmp, tmp / "pre", new


def _losses(run):
    return [r["loss"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "loss" in r]


@pytest.mark.slow
def test_adapted_model_learns_the_new_detector_faster_than_from_scratch(pretrained, monkeypatch):
    monkeypatch.setenv("CALOFORGE_PROGRESS", "0")
    tmp, pre, new = pretrained
    steps = 30
    assert main(["adapt", "--from", str(pre), "--data", str(new), "--out", str(tmp / "ad"), "--steps", str(steps),
                 "--device", "cpu"]) == 0
    scratch = load_recipe("tiny-fm", [*BASE, f"data.detectors=[{', '.join(KNOWN)}]", "data.new_detector=pb-sci",
                                      f"train.steps={steps}", "train.lr=3e-3", "train.warmup_steps=3"])
    from caloforge.training.sources import DataSource

    train(scratch, DataSource(new, "pb-sci"), tmp / "sc", device="cpu")
    ad, sc = np.mean(_losses(tmp / "ad")), np.mean(_losses(tmp / "sc"))
    assert ad < 0.8 * sc, (ad, sc)  # same steps, same seed and batches: the pre-trained start is well ahead

    # the adapted run is a normal run: K + 1 layout kept, new detector in the reserved (last) slot, samples
    ckpt = load_checkpoint(tmp / "ad")
    enc = ConditionEncoder.from_state(ckpt["encoder"])
    assert enc.detector_names == [*KNOWN, "pb-sci"] and enc.slot("pb-sci") == enc.n_detectors == 3
    assert ckpt["init"]["weights"] == "ema" and ckpt["config"]["train"]["lr"] == pytest.approx(
        0.25 * load_checkpoint(pre)["config"]["train"]["lr"])
    gen = Generator.load(tmp / "ad", device="cpu")
    showers, _ = gen.generate(np.full(8, 1e4), np.zeros(8), np.full(8, 1.5), np.full(8, enc.slot("pb-sci")))
    assert showers.shape == (8, MESH.n_z * MESH.n_alpha * MESH.n_r) and np.all(showers.sum(1) > 0)
    # re-running the same command resumes (here: already complete) instead of refusing or restarting
    assert main(["adapt", "--from", str(pre), "--data", str(new), "--out", str(tmp / "ad"), "--steps", str(steps),
                 "--device", "cpu"]) == 0
    assert load_checkpoint(tmp / "ad")["step"] == steps


@pytest.mark.slow
def test_freezing_keeps_the_matching_weights_at_the_pretrained_ema(pretrained, monkeypatch):
    monkeypatch.setenv("CALOFORGE_PROGRESS", "0")
    tmp, pre, new = pretrained
    assert main(["adapt", "--from", str(pre), "--data", str(new), "--out", str(tmp / "fz"), "--steps", "5",
                 "--freeze", "blocks.*", "--device", "cpu"]) == 0
    src, out = load_checkpoint(pre)["ema"], load_checkpoint(tmp / "fz")["model"]
    blocks = [k for k in out if k.startswith("blocks.")]
    assert blocks and all(torch.equal(out[k], src[k]) for k in blocks)
    assert any(not torch.equal(out[k], src[k]) for k in out if not k.startswith("blocks."))


@pytest.mark.slow
@pytest.mark.parametrize("args, expected", [
    (["--detector", "w-si"], "already has slot 0"),
    (["--freeze", "nope.*"], "matches no parameter"),
    (["--lr-factor", "0"], "--lr-factor: expected a factor > 0"),
])
def test_bad_adaptations_are_refused_at_the_door(pretrained, args, expected, capsys):
    tmp, pre, new = pretrained
    out = tmp / f"bad{abs(hash(expected))}"
    assert main(["adapt", "--from", str(pre), "--data", str(new), "--out", str(out), "--steps", "2",
                 "--device", "cpu", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and "\n" not in err and not (out / "checkpoints").exists()
