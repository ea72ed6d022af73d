"""The training loop on small structured data: it learns, logs, checkpoints, refuses foreign run directories,
and the Generator / `caloforge sample` turn a run into official-layout shower files."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch
import yaml

from caloforge.cli.main import main
from caloforge.data.geometry import Geometry
from caloforge.data.reader import ShowerFile
from caloforge.data.writer import write_showers
from caloforge.errors import ConfigError
from caloforge.sampling.generator import Generator
from caloforge.training.checkpoint import latest_checkpoint, load_checkpoint
from caloforge.training.recipe_io import dump_recipe, load_recipe
from caloforge.training.trainer import train

SMALL_GEO = Geometry.regular(10, 4, 3, dr_mm=5.0, dz_mm=3.4, name="mesh-test")


def structured_showers(n: int, seed: int, geometry: Geometry = SMALL_GEO):
    """Showers with a longitudinal peak and a radial fall-off, scaled by the energy; a few zero voxels."""
    rng = np.random.default_rng(seed)
    nz, na, nr = geometry.grid_shape
    e = 10 ** rng.uniform(3, 5, n)  # (n,) MeV
    z = np.arange(nz)[None, :, None, None]
    r = np.arange(nr)[None, None, None, :]
    peak = rng.uniform(0.3, 0.6, (n, 1, 1, 1)) * nz
    shape = np.exp(-0.5 * ((z - peak) / 2.0) ** 2) * np.exp(-r / 1.2)  # (n, Z, 1, R)
    shape = shape * rng.lognormal(0, 0.3, (n, nz, na, nr))
    shape /= shape.sum(axis=(1, 2, 3), keepdims=True)
    s = 0.7 * e[:, None, None, None] * shape
    s[s < 0.02] = 0.0
    return e, s.reshape(n, -1).astype(np.float32)


def structured_file(path, n: int = 64, seed: int = 0):
    e, s = structured_showers(n, seed)
    write_showers(path, e, s, geometry=SMALL_GEO)
    return path


def small_recipe_file(tmp_path, name="small", **train):
    """A tiny-fm variant for the 10x4x3 test mesh, written as a YAML file (as a user would)."""
    r = load_recipe("tiny-fm", ["model.patch=[2,2,3]", "model.dim=32", "model.heads=2", "model.depth=2",
                                "sampler.steps=4", "train.log_every=1", "train.warmup_steps=5",
                                "train.val_every=10", "data.energy_range_mev=[1000.0, 100000.0]"]
                     + [f"train.{k}={v}" for k, v in train.items()])
    d = r.to_dict()
    d["name"] = name
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(d))
    return path


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest single-threaded (and do not fight other jobs for cores)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def read_metrics(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_tiny_model_overfits_16_showers(tmp_path):
    data = structured_file(tmp_path / "d.h5", n=16)
    recipe = load_recipe(small_recipe_file(tmp_path, batch_size=16, lr=3e-3, schedule="constant",
                                           ckpt_every=1000), ["objective.prediction=x", "objective.loss_space=x"])
    res = train(recipe, data, tmp_path / "run", steps=300, device="cpu")
    losses = [m["loss"] for m in read_metrics(tmp_path / "run") if "loss" in m]
    assert res.completed and res.step == 300 and len(losses) == 300
    first, last = np.mean(losses[:5]), np.mean(losses[-20:])
    assert last < first / 10, (first, last)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("trained")
    torch.set_num_threads(1)
    data = structured_file(tmp / "train.h5", n=64)
    val = structured_file(tmp / "val.h5", n=32, seed=1)
    recipe = load_recipe(small_recipe_file(tmp, batch_size=16, ckpt_every=10, keep_checkpoints=2,
                                            quality_showers=24))
    res = train(recipe, data, tmp / "run", val_path=val, steps=30, device="cpu")
    return tmp, res


def test_run_directory_holds_config_metrics_and_last_k_checkpoints(trained_run):
    tmp, res = trained_run
    run = tmp / "run"
    assert res.completed and res.checkpoint == run / "checkpoints" / "step_00000030.pt"
    assert sorted(p.name for p in (run / "checkpoints").glob("*.pt")) == ["step_00000020.pt", "step_00000030.pt"]
    assert latest_checkpoint(run) == res.checkpoint
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["steps"] == 30
    records = read_metrics(run)
    train_rec = [m for m in records if "loss" in m]
    assert [m["step"] for m in train_rec] == list(range(1, 31))
    assert all(set(m) == {"step", "loss", "lr", "grad_norm", "samples_per_s"} for m in train_rec)
    assert [m["step"] for m in records if "val_loss" in m] == [10, 20, 30]
    ck = load_checkpoint(run)
    assert ck["step"] == 30 and ck["data"]["n"] == 64 and ck["data"]["batches_per_epoch"] == 4
    assert ck["data"]["epoch"] == 7 and ck["data"]["index"] == 2  # 30 = 7 epochs of 4 batches + 2
    assert Geometry.from_dict(ck["geometry"]) == SMALL_GEO


def test_in_loop_quality_is_logged_with_the_validation_loss_and_improves(trained_run, tmp_path):
    tmp, _ = trained_run
    quality = [m for m in read_metrics(tmp / "run") if "quality_fd_x1e3" in m]
    assert [m["step"] for m in quality] == [10, 20, 30]
    assert all(m["quality_showers"] == 24 and np.isfinite(m["quality_fd_x1e3"]) and m["quality_fd_x1e3"] > 0
               for m in quality)
    # the number measures something: showers from a much better model (more steps) score better than at step 10
    recipe = load_recipe(tmp / "small.yaml", ["train.lr=3e-3"])
    train(recipe, tmp / "train.h5", tmp_path / "long", val_path=tmp / "val.h5", steps=300, device="cpu")
    long = [m for m in read_metrics(tmp_path / "long") if "quality_fd_x1e3" in m]
    assert long[-1]["quality_fd_x1e3"] < quality[0]["quality_fd_x1e3"]
    assert abs(long[-1]["quality_response_bias"]) < abs(quality[0]["quality_response_bias"]) + 0.05


def test_rerun_of_a_finished_run_does_no_work_and_a_longer_one_continues(trained_run):
    tmp, _ = trained_run
    recipe = load_recipe(tmp / "small.yaml", ["train.ckpt_every=10", "train.keep_checkpoints=2"])
    again = train(recipe, tmp / "train.h5", tmp / "run", steps=30, device="cpu")
    assert again.completed and again.step == 30


def test_run_directory_with_a_different_recipe_is_refused(trained_run):
    tmp, _ = trained_run
    recipe = load_recipe(tmp / "small.yaml", ["train.lr=0.1"])
    with pytest.raises(ConfigError, match=r"config.yaml: this run directory holds a run with a different recipe: "
                                          r"train.lr \(0.002 vs 0.1\)"):
        train(recipe, tmp / "train.h5", tmp / "run", steps=30, device="cpu")


def test_generator_is_seeded_and_returns_thresholded_showers_in_mev(trained_run):
    tmp, _ = trained_run
    gen = Generator.load(tmp / "run", device="cpu")
    assert gen.geometry == SMALL_GEO and gen.step == 30 and gen.nfe() == 7  # Heun 4 steps, Euler last
    lo, hi = gen.model_range  # training-data range in model space, used to clamp samples
    assert lo.shape == hi.shape == (SMALL_GEO.n_voxels,) and np.all(lo <= hi)
    y = gen.model_space(gen.conditions(np.full(3, 1e4)), seed=0)
    assert np.all((y >= lo) & (y <= hi))
    e = np.array([2e3, 5e3, 2e4, 5e4, 8e4])
    a, stats = gen.generate(e, seed=3, batch_size=2)
    b, _ = gen.generate(e, seed=3, batch_size=2)
    c, _ = gen.generate(e, seed=4, batch_size=2)
    assert a.shape == (5, SMALL_GEO.n_voxels) and a.dtype == np.float32
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.all((a == 0) | (a >= SMALL_GEO.threshold_mev))
    assert stats["n"] == 5 and stats["ms_per_shower"] > 0 and len(stats["rejected_per_round"]) >= 1
    with pytest.raises(ConfigError, match="solver"):
        gen.generate(e, solver="leapfrog")


def test_sample_cli_writes_the_official_layout(trained_run, capsys):
    tmp, _ = trained_run
    out = tmp / "gen.h5"
    code = main(["sample", "--checkpoint", str(tmp / "run"), "--n", "7", "--energies-from", str(tmp / "val.h5"),
                 "--steps", "2", "--seed", "1", "--batch-size", "4", "--device", "cpu", "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0 and "wrote 7 showers" in printed and "ms/shower" in printed and "redrawn" in printed
    with ShowerFile(out) as f, ShowerFile(tmp / "val.h5") as ref:
        assert f.n == 7 and f.n_voxels == SMALL_GEO.n_voxels and f.geometry == SMALL_GEO
        np.testing.assert_allclose(f.energies(), ref.energies()[:7], rtol=1e-6)
    code = main(["sample", "--checkpoint", str(tmp / "run"), "--n", "3", "--energy-range", "1:100",
                 "--steps", "2", "--device", "cpu", "--out", str(tmp / "gen2.h5")])
    assert code == 0
    with ShowerFile(tmp / "gen2.h5") as f:
        assert f.n == 3 and np.all((f.energies() >= 1e3) & (f.energies() <= 1e5))
    assert main(["sample", "--checkpoint", str(tmp / "nope"), "--n", "3", "--energy-range", "1:100",
                 "--out", str(tmp / "x.h5")]) == 2
    assert "no such checkpoint file or run directory" in capsys.readouterr().err


def test_batch_size_must_split_over_accumulation_shards(tmp_path):
    data = structured_file(tmp_path / "d.h5", n=16)
    recipe = load_recipe(small_recipe_file(tmp_path, batch_size=10, grad_accum=4))
    with pytest.raises(ConfigError, match="train.batch_size: expected a multiple of world size x grad_accum = 4"):
        train(recipe, data, tmp_path / "run", steps=2, device="cpu")


def test_checkpoint_loads_with_weights_only_and_holds_everything_to_rebuild(trained_run):
    tmp, _ = trained_run
    ck = torch.load(tmp / "run" / "checkpoints" / "step_00000030.pt", weights_only=True)
    for key in ("model", "ema", "optimizer", "rng", "config", "chain", "encoder", "geometry", "model_config",
                "objective", "data"):
        assert key in ck
    assert ck["config"]["name"] == "small" and ck["objective"]["kind"] == "flow"
    assert dump_recipe(load_recipe(tmp / "small.yaml"))  # the stored recipe file is still valid


def test_batches_are_a_pure_function_of_seed_and_step_and_ranks_split_the_global_batch(tmp_path):
    from caloforge.training.data import TrainBatches, build_condition_encoder, fit_batches
    from caloforge.transforms.chain import Chain

    data = structured_file(tmp_path / "d.h5", n=40)
    r = load_recipe(small_recipe_file(tmp_path))
    chain = Chain.from_config(list(r.transforms)).fit(fit_batches(data, 1000))
    enc = build_condition_encoder(r.data)
    mem = TrainBatches(data, chain, enc, r.data, 8, seed=3)
    stream_cfg = r.data.model_copy(update={"ram_budget_mb": 1e-6})
    stream = TrainBatches(data, chain, enc, stream_cfg, 8, seed=3)
    ranks = [TrainBatches(data, chain, enc, r.data, 8, seed=3, rank=k, world=2) for k in range(2)]
    assert mem.in_memory and not stream.in_memory and mem.batches_per_epoch == 5
    for step in (0, 4, 5, 23):
        x, c = mem.batch(step)
        xs, cs = stream.batch(step)
        np.testing.assert_array_equal(x, xs)
        np.testing.assert_array_equal(c, cs)
        np.testing.assert_array_equal(np.concatenate([rk.batch(step)[0] for rk in ranks]), x)
    epoch0 = np.concatenate([mem.global_rows(s) for s in range(5)])
    assert sorted(epoch0) == list(range(40))  # every shower once per epoch
    assert not np.array_equal(mem.global_rows(0), mem.global_rows(5))  # a new permutation each epoch
    other = TrainBatches(data, chain, enc, r.data, 8, seed=4)
    assert not np.array_equal(other.global_rows(0), mem.global_rows(0))
    for b in (mem, stream, other, *ranks):
        b.close()


def test_logged_samples_per_second_leave_out_validation_time(tmp_path, monkeypatch):
    """A validation that takes 1000 s (on the trainer's clock) must not show up as a slow training rate."""
    import types

    import caloforge.training.trainer as trainer_module

    skipped = [0.0]  # seconds the fake clock has jumped
    clock = types.SimpleNamespace(perf_counter=lambda: time.perf_counter() + skipped[0])
    real = trainer_module._ema_val_loss

    def slow_val_loss(*args, **kwargs):
        skipped[0] += 1000.0
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer_module, "time", clock)
    monkeypatch.setattr(trainer_module, "_ema_val_loss", slow_val_loss)
    data, val = structured_file(tmp_path / "d.h5"), structured_file(tmp_path / "v.h5", n=32, seed=1)
    recipe = load_recipe(small_recipe_file(tmp_path, batch_size=16, log_every=5, val_every=5))
    train(recipe, data, tmp_path / "run", val_path=val, steps=15, device="cpu")
    rates = [m["samples_per_s"] for m in read_metrics(tmp_path / "run") if "samples_per_s" in m]
    assert len(rates) == 3
    # counting the 1000 s, 5 steps of 16 showers would log at most 0.08 samples/s
    assert min(rates[1:]) > 5 * 16 / 1000.0, rates
