"""Trainer seams shared by distillation and adaptation: init_from, freezing, the loss context with an EMA target
and a frozen teacher, and loop callbacks; all on a tiny recipe and a few steps."""

from __future__ import annotations

import dataclasses
import shutil
from typing import ClassVar

import numpy as np
import pytest
import torch
from test_trainer import one_thread, small_recipe_file, structured_file  # noqa: F401 - fixture

from caloforge.errors import ConfigError
from caloforge.generative.objectives import OBJECTIVES, FlowMatching
from caloforge.models.dit import DiT, DiTConfig
from caloforge.sampling.generator import Generator
from caloforge.training.callbacks import Callback, StopAtStep
from caloforge.training.checkpoint import latest_checkpoint, load_checkpoint
from caloforge.training.init_from import load_weights
from caloforge.training.recipe_io import load_recipe
from caloforge.training.trainer import train

STD_KEYS = {"model", "ema", "optimizer", "rng", "step", "config", "chain", "encoder", "geometry", "model_config",
            "objective", "model_range", "data", "last_loss", "format"}


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A trained tiny source run (its EMA differs from its raw weights) and its training file."""
    tmp = tmp_path_factory.mktemp("source")
    data = structured_file(tmp / "d.h5", n=32)
    recipe = small_recipe_file(tmp, batch_size=16, ckpt_every=1000, deterministic=True, lr=3e-3)
    train(load_recipe(recipe), data, tmp / "src", steps=8, device="cpu")
    return tmp, data, recipe, tmp / "src"


class Snapshot(Callback):
    """Records the raw and EMA weights the loop starts from, and the steps at which on_val ran."""

    def __init__(self):
        self.start, self.start_ema, self.vals = None, None, []

    def on_train_start(self, state):
        self.start = {k: v.clone() for k, v in state.model.state_dict().items()}
        self.start_ema = state.ema.state_dict()
        self.params = [n for n, _ in state.model.named_parameters()]
        self.trainable = [n for n, p in state.model.named_parameters() if p.requires_grad]

    def on_val(self, state):
        self.vals.append(state.step)
        return {"probe": float(state.step)}


def _equal(a: dict, b: dict) -> list[str]:
    assert a.keys() == b.keys()
    return [k for k in a if not torch.equal(a[k], b[k])]


@pytest.mark.parametrize("weights", ["ema", "raw"])
def test_init_from_starts_exactly_from_the_source_weights(source, tmp_path, weights):
    _, data, recipe, src = source
    ck = load_checkpoint(src)
    assert _equal(ck["ema"], ck["model"]), "source EMA equals its raw weights; the test could not tell them apart"
    snap = Snapshot()
    res = train(load_recipe(recipe, [f"train.init_from={src}", f"train.init_weights={weights}"]), data,
                tmp_path / "b", steps=2, device="cpu", callbacks=[snap])
    expected = ck["ema"] if weights == "ema" else ck["model"]
    assert _equal(snap.start, expected) == [] and _equal(snap.start_ema, expected) == []
    new = load_checkpoint(tmp_path / "b")
    assert res.completed and STD_KEYS <= set(new)  # a normal run directory
    assert new["init"]["source"].endswith(latest_checkpoint(src).name) and new["init"]["weights"] == weights
    assert new["init"]["not_loaded"] == []


def test_init_from_a_different_network_is_one_line_naming_the_parameter(source, tmp_path):
    _, data, recipe, src = source
    with pytest.raises(ConfigError, match=r"train.init_from: .*x_embedder.weight has shape \[32, 12\] in the "
                                          r"source, \[48, 12\] here"):
        train(load_recipe(recipe, [f"train.init_from={src}", "model.dim=48"]), data, tmp_path / "b", steps=2,
              device="cpu")
    assert not (tmp_path / "b").exists()  # refused before any file
    with pytest.raises(ConfigError, match="train.init_from: .*no such checkpoint"):
        train(load_recipe(recipe, [f"train.init_from={tmp_path / 'nowhere'}"]), data, tmp_path / "c", device="cpu")
    with pytest.raises(ConfigError, match="init_weights is set but init_from is not"):
        load_recipe(recipe, ["train.init_weights=raw"])


def test_partial_init_keeps_the_overlap_of_a_bigger_condition_embedder():
    torch.manual_seed(0)
    small = DiT(DiTConfig(grid=(10, 4, 3), cond_dim=3, patch=(2, 2, 3), dim=32, heads=2, depth=2))
    big = DiT(DiTConfig(grid=(10, 4, 3), cond_dim=5, patch=(2, 2, 3), dim=32, heads=2, depth=2))
    fresh = {k: v.clone() for k, v in big.state_dict().items()}
    with pytest.raises(ConfigError, match="c_embedder.mlp.0.weight has shape"):
        load_weights(big, small.state_dict())
    untouched = load_weights(big, small.state_dict(), strict=False)
    assert untouched == ["c_embedder.mlp.0.weight"]
    w = big.state_dict()["c_embedder.mlp.0.weight"]  # (32, 5)
    assert torch.equal(w[:, :3], small.state_dict()["c_embedder.mlp.0.weight"])
    assert torch.equal(w[:, 3:], fresh["c_embedder.mlp.0.weight"][:, 3:])
    same = [k for k in fresh if k != "c_embedder.mlp.0.weight"]
    assert all(torch.equal(big.state_dict()[k], small.state_dict()[k]) for k in same)


def test_init_map_renames_source_prefixes():
    torch.manual_seed(0)
    a = DiT(DiTConfig(grid=(10, 4, 3), cond_dim=1, patch=(2, 2, 3), dim=32, heads=2, depth=2))
    wrapped = torch.nn.Module()
    wrapped.voxel = DiT(a.cfg)
    from caloforge.training.init_from import map_names

    load_weights(wrapped, map_names(a.state_dict(), {"": "voxel."}))
    assert all(torch.equal(wrapped.voxel.state_dict()[k], v) for k, v in a.state_dict().items())


def test_init_chain_from_source_reuses_the_fitted_preprocessing(source, tmp_path):
    _, _, recipe, src = source
    other = structured_file(tmp_path / "other.h5", n=24, seed=3)  # a different file: a re-fit would differ
    train(load_recipe(recipe, [f"train.init_from={src}", "train.init_chain_from_source=true"]), other,
          tmp_path / "b", steps=1, device="cpu")
    train(load_recipe(recipe, [f"train.init_from={src}"]), other, tmp_path / "c", steps=1, device="cpu")
    a, b, c = (load_checkpoint(p)["chain"] for p in (src, tmp_path / "b", tmp_path / "c"))
    assert _same(a, b) and not _same(a, c)
    with pytest.raises(ConfigError, match="init_chain_from_source: the source's transforms differ"):
        train(load_recipe(recipe, [f"train.init_from={src}", "train.init_chain_from_source=true",
                                   "transforms=[{kind: log, eps: 1.0e-3}]"]), other, tmp_path / "d", device="cpu")


def _same(a, b) -> bool:
    """Equality of nested plain states (dicts, lists, numbers, tensors)."""
    if torch.is_tensor(a) or torch.is_tensor(b):
        return torch.is_tensor(a) and torch.is_tensor(b) and torch.equal(a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def test_frozen_parameters_stay_bit_identical_and_the_rest_train(source, tmp_path):
    _, data, recipe, _ = source
    snap = Snapshot()
    train(load_recipe(recipe, ["train.freeze=['blocks.0.*', 'x_embedder.*']"]), data, tmp_path / "f", steps=8,
          device="cpu", callbacks=[snap])
    ck = load_checkpoint(tmp_path / "f")
    frozen = [k for k in snap.params if k.startswith(("blocks.0.", "x_embedder."))]
    assert len(frozen) >= 8 and set(snap.params) - set(snap.trainable) == set(frozen)
    for part in ("model", "ema"):
        assert [k for k in frozen if not torch.equal(ck[part][k], snap.start[k])] == []
        moved = [k for k in snap.trainable if not torch.equal(ck[part][k], snap.start[k])]
        assert len(moved) >= 0.8 * len(snap.trainable), part
    assert len(ck["optimizer"]["param_groups"][0]["params"]) == len(snap.trainable)


def test_a_freeze_pattern_that_matches_nothing_is_refused_before_any_file(source, tmp_path):
    _, data, recipe, _ = source
    with pytest.raises(ConfigError, match=r"train.freeze: pattern 'block.0.\*' matches no parameter"):
        train(load_recipe(recipe, ["train.freeze=['block.0.*']"]), data, tmp_path / "f", device="cpu")
    assert not (tmp_path / "f").exists()


def test_a_callback_stops_the_loop_with_a_checkpoint_and_on_val_logs(source, tmp_path):
    _, data, recipe, _ = source
    snap = Snapshot()
    res = train(load_recipe(recipe, ["train.val_every=2"]), data, tmp_path / "s", steps=20, device="cpu",
                callbacks=[StopAtStep(5), snap])
    assert (res.step, res.completed, res.stopped_by, res.signal) == (5, False, "StopAtStep", None)
    assert res.checkpoint == latest_checkpoint(tmp_path / "s") and load_checkpoint(res.checkpoint)["step"] == 5
    assert snap.vals == [2, 4]
    from test_trainer import read_metrics

    assert [m["step"] for m in read_metrics(tmp_path / "s") if "probe" in m] == [2, 4]


SEEN: list = []


@dataclasses.dataclass
class ProbeDistill(FlowMatching):
    """Flow loss plus a pull towards the teacher's velocity; records what the context held."""

    kind: ClassVar[str] = "probe-distill"
    uses_context: ClassVar[bool] = True

    def loss(self, net, x, cond, generator=None, ctx=None):
        t = torch.full((x.shape[0],), 0.5)
        z = torch.randn(x.shape, generator=generator)
        v_teacher = ctx.teacher.objective.velocity(ctx.teacher, z, t, cond)
        SEEN.append({"step": ctx.step, "ema": {k: v.clone() for k, v in ctx.ema.state_dict().items()},
                     "ema_training": ctx.ema.training, "teacher_grad": v_teacher.requires_grad,
                     "teacher_params_grad": any(p.requires_grad for p in ctx.teacher.net.parameters())})
        return super().loss(net, x, cond, generator) + (self.velocity(net, z, t, cond) - v_teacher).pow(2).mean()


class EmaAfterStep(Callback):
    def __init__(self):
        self.ema = {}

    def on_step_end(self, state):
        self.ema[state.step] = state.ema.state_dict()
        return False


@pytest.fixture
def probe_objective(monkeypatch):
    monkeypatch.setitem(OBJECTIVES, "probe-distill", ProbeDistill)
    SEEN.clear()
    yield
    SEEN.clear()


def _distill_recipe(recipe, src):
    return load_recipe(recipe, ["objective.kind=probe-distill", f"train.teacher={src}",
                                f"train.init_from={src}", "train.init_chain_from_source=true"])


def test_the_loss_context_gives_the_ema_network_and_a_frozen_teacher(source, tmp_path, probe_objective):
    _, data, recipe, src = source
    after = EmaAfterStep()
    train(_distill_recipe(recipe, src), data, tmp_path / "d", steps=3, device="cpu", callbacks=[after])
    assert [s["step"] for s in SEEN] == [0, 1, 2]
    assert _equal(SEEN[0]["ema"], load_checkpoint(src)["ema"]) == []  # step 0: EMA = init = source EMA
    for s in SEEN[1:]:  # the EMA network seen at step s is the EMA after step s - 1's update
        assert _equal(s["ema"], after.ema[s["step"]]) == []
    assert not any(s["ema_training"] or s["teacher_grad"] or s["teacher_params_grad"] for s in SEEN)
    ck = load_checkpoint(tmp_path / "d")
    assert STD_KEYS <= set(ck) and _equal(ck["teacher"]["state"], load_checkpoint(src)["ema"]) == []
    gen = Generator.load(tmp_path / "d", device="cpu")  # samples like any run
    showers, _ = gen.generate(np.array([2e3, 5e4]), steps=2)
    assert showers.shape == (2, 120) and np.isfinite(showers).all()
    with pytest.raises(ConfigError, match="train.teacher: objective 'flow' does not use a teacher"):
        train(load_recipe(recipe, [f"train.teacher={src}"]), data, tmp_path / "e", device="cpu")


def test_resume_after_init_from_with_a_teacher_and_freezing_is_exact(source, tmp_path, probe_objective):
    _, data, recipe, src = source
    moved = tmp_path / "teacher"
    shutil.copytree(src, moved)
    r = load_recipe(recipe, ["objective.kind=probe-distill", f"train.teacher={moved}", f"train.init_from={moved}",
                             "train.init_chain_from_source=true", "train.freeze=['t_embedder.*']", "train.ckpt_every=2"])
    train(r, data, tmp_path / "whole", steps=6, device="cpu")
    res = train(r, data, tmp_path / "cut", steps=6, device="cpu", callbacks=[StopAtStep(3)])
    assert res.step == 3 and not res.completed
    shutil.rmtree(moved)  # resume takes the weights and the teacher from the run's own checkpoint
    res = train(r, data, tmp_path / "cut", steps=6, device="cpu")
    assert res.completed
    a, b = load_checkpoint(tmp_path / "whole"), load_checkpoint(tmp_path / "cut")
    assert a["step"] == b["step"] == 6
    for part in ("model", "ema"):
        assert _equal(a[part], b[part]) == []
    assert _equal(a["teacher"]["state"], b["teacher"]["state"]) == []
