"""`caloforge bench` and evaluation.timing: ms per shower per (threads, batch size), with honest skips."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from caloforge.cli.main import main
from caloforge.data.geometry import Geometry
from caloforge.errors import CaloforgeError
from caloforge.evaluation import timing


class StandIn:
    """A generator-shaped object: records calls, sleeps nothing, returns zeros."""

    def __init__(self):
        self.geometry = Geometry.official("2")
        self.device = "cpu"
        self.net = torch.nn.Linear(3, 2)  # 8 parameters
        self.calls = []

    def generate(self, energies, solver=None, steps=None, seed=0, batch_size=1000):
        self.calls.append((len(energies), solver, steps, seed))
        return np.zeros((len(energies), self.geometry.n_voxels), np.float32), {}

    def nfe(self, solver=None, steps=None):
        return 2 * (steps or 10)


def test_every_configuration_gets_warmup_and_timed_repeats():
    gen = StandIn()
    res = timing.bench_generator(gen, batch_sizes=(1, 100), threads=(1, 2), solver="heun", steps=5, repeats=3,
                                 warmup=2, energy_range_mev=(1e3, 1e5))
    assert [(r["threads"], r["batch_size"]) for r in res["rows"]] == [(1, 1), (1, 100), (2, 1), (2, 100)]
    assert len(gen.calls) == 4 * (2 + 3) and all(c[1:3] == ("heun", 5) for c in gen.calls)
    for r in res["rows"]:
        assert r["p16"] <= r["ms_per_shower"] <= r["p84"] and len(r["runs_ms"]) == 3
    assert res["nfe"] == 10 and res["parameters"] == 8 and res["machine"]["nproc"] >= 1


def test_batch_sizes_that_do_not_fit_in_memory_are_skipped_with_the_reason(monkeypatch):
    monkeypatch.setattr(timing, "available_memory_bytes", lambda: 2 * 6480 * 4 * 16 * 50)  # room for 100 showers
    res = timing.bench_generator(StandIn(), batch_sizes=(1, 10_000), repeats=1)
    fits, too_big = res["rows"]
    assert "ms_per_shower" in fits and "does not fit in memory" in too_big["skipped"]


def test_batch_sizes_over_the_time_budget_are_skipped():
    res = timing.bench_generator(StandIn(), batch_sizes=(1, 1000), repeats=1, max_seconds=0.0)
    assert "exceeds" in res["rows"][1]["skipped"] and "skipped" not in res["rows"][0]
    assert "skipped" in timing.format_table(res)


def test_thread_and_batch_specs_are_parsed_or_refused():
    import os

    assert timing.parse_threads("1,all") == list(dict.fromkeys([1, os.cpu_count()]))
    assert timing.parse_batch_sizes("1,100,10000") == [1, 100, 10000]
    for bad in ("0", "two", ""):
        with pytest.raises(CaloforgeError):
            timing.parse_threads(bad)
    with pytest.raises(CaloforgeError):
        timing.parse_batch_sizes("1,-5")


def test_bench_cli_times_a_tiny_trained_checkpoint(tiny_ds2_file, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CALOFORGE_PROGRESS", "0")
    old = torch.get_num_threads()
    try:
        run = tmp_path / "run"
        assert main(["train", "--recipe", "tiny-fm", "--data", str(tiny_ds2_file), "--out", str(run), "--steps", "2",
                     "--device", "cpu", "model.dim=32", "model.depth=1", "train.batch_size=8",
                     "train.warmup_steps=1", "train.ckpt_every=2"]) == 0
        out = tmp_path / "bench.json"
        assert main(["bench", "--checkpoint", str(run), "--batch-sizes", "1,4", "--threads", "1", "--steps", "2",
                     "--repeats", "2", "--no-gpu", "--out", str(out)]) == 0
    finally:
        torch.set_num_threads(old)
    assert "ms/shower" in capsys.readouterr().out
    doc = json.loads(out.read_text())
    (res,) = doc["results"]
    assert [r["batch_size"] for r in res["rows"]] == [1, 4]
    assert all(r["ms_per_shower"] > 0 for r in res["rows"])
    from caloforge.sampling.generator import Generator

    assert res["nfe"] == Generator.load(run, device="cpu").nfe(None, 2)  # what the sampler really evaluates
    assert res["parameters"] > 0
