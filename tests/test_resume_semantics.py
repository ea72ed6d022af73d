"""Resume semantics that hold: a new train.steps is accepted only when it leaves the trained lr history unchanged
(then the resumed run equals an uninterrupted run of the new total), otherwise it is one line and exit 2; a file
streamed batch by batch with a dequantisation-noise step resumes bit-identically."""

from __future__ import annotations

import pytest
import torch
import yaml
from test_trainer import one_thread, small_recipe_file, structured_file  # noqa: F401 - fixture

from caloforge.cli.main import main
from caloforge.errors import ConfigError
from caloforge.training.checkpoint import load_checkpoint
from caloforge.training.recipe_io import load_recipe
from caloforge.training.schedules import first_changed_step
from caloforge.training.trainer import train


def _tensors(ck):
    out = {f"model.{k}": v for k, v in ck["model"].items()} | {f"ema.{k}": v for k, v in ck["ema"].items()}
    for i, st in ck["optimizer"]["state"].items():
        out |= {f"opt.{i}.{k}": v for k, v in st.items() if torch.is_tensor(v)}
    return out


def _assert_identical(run_a, run_b):
    a, b = load_checkpoint(run_a), load_checkpoint(run_b)
    assert a["step"] == b["step"]
    ta, tb = _tensors(a), _tensors(b)
    assert ta.keys() == tb.keys() and len(ta) > 10
    assert [k for k in ta if not torch.equal(ta[k], tb[k])] == []


def test_first_changed_step_per_schedule():
    assert first_changed_step(50, 100, 200, "constant", warmup_steps=10) is None
    assert first_changed_step(50, 100, 200, "wsd", decay_fraction=0.2) is None  # decay starts at 80
    assert first_changed_step(90, 100, 200, "wsd", decay_fraction=0.2) == 81  # step 80 starts the decay at factor 1
    assert first_changed_step(50, 100, 200, "cosine", warmup_steps=10) == 11  # the first step after warm-up
    assert first_changed_step(5, 100, 200, "cosine", warmup_steps=10) is None  # still warming up
    assert first_changed_step(50, 100, 100, "cosine") is None


def test_extending_a_cosine_run_is_refused_with_one_line(tmp_path, capsys):
    data = structured_file(tmp_path / "d.h5", n=32)
    recipe = small_recipe_file(tmp_path, batch_size=16, ckpt_every=4, warmup_steps=2)
    args = ["train", "--recipe", str(recipe), "--data", str(data), "--out", str(tmp_path / "run"), "--device", "cpu"]
    assert main([*args, "--steps", "4"]) == 0
    capsys.readouterr()
    assert main([*args, "--steps", "8"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "train.steps" in err and "--steps 4" in err and "cosine" in err, err
    assert load_checkpoint(tmp_path / "run")["step"] == 4  # nothing trained, nothing written


def test_extending_a_constant_lr_run_equals_an_uninterrupted_run_of_the_new_total(tmp_path):
    data = structured_file(tmp_path / "d.h5", n=32)
    recipe = load_recipe(small_recipe_file(tmp_path, batch_size=16, ckpt_every=3, deterministic=True,
                                           warmup_steps=2, schedule="constant"))
    train(recipe, data, tmp_path / "whole", steps=10, device="cpu")
    assert train(recipe, data, tmp_path / "grown", steps=5, device="cpu").completed
    assert train(recipe, data, tmp_path / "grown", steps=10, device="cpu").step == 10
    _assert_identical(tmp_path / "whole", tmp_path / "grown")


def test_a_finished_wsd_run_has_decayed_so_growing_it_is_refused(tmp_path):
    data = structured_file(tmp_path / "d.h5", n=32)
    recipe = load_recipe(small_recipe_file(tmp_path, batch_size=16, ckpt_every=3, schedule="wsd", warmup_steps=1,
                                           decay_fraction=0.5))
    train(recipe, data, tmp_path / "run", steps=4, device="cpu")  # decays over steps 2..3
    with pytest.raises(ConfigError, match="lr of step 3 already trained"):
        train(recipe, data, tmp_path / "run", steps=8, device="cpu")


def _streamed_noise_recipe(tmp_path):
    path = small_recipe_file(tmp_path, batch_size=16, ckpt_every=3, deterministic=True, schedule="constant",
                             warmup_steps=2)
    d = yaml.safe_load(path.read_text())
    d["data"]["ram_budget_mb"] = 1e-6  # streamed: read and transformed batch by batch
    kinds = [s["kind"] for s in d["transforms"]]
    d["transforms"].insert(kinds.index("log"), {"kind": "noise", "level": 1.0e-3})  # dequantise small voxels
    path.write_text(yaml.safe_dump(d))
    return load_recipe(path)


def test_streamed_file_with_noise_resumes_bit_identically(tmp_path):
    data = structured_file(tmp_path / "d.h5", n=48)
    recipe = _streamed_noise_recipe(tmp_path)
    train(recipe, data, tmp_path / "whole", steps=9, device="cpu")
    train(recipe, data, tmp_path / "resumed", steps=4, device="cpu")  # checkpoint at 3 and 4 (final)
    train(recipe, data, tmp_path / "resumed", steps=9, device="cpu")  # constant lr: the longer total is allowed
    _assert_identical(tmp_path / "whole", tmp_path / "resumed")
