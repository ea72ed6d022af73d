"""The model's detector slot table (K + 1 one-hot, reserved last slot) and multi-detector training batches."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from caloforge.data.geometry import Geometry
from caloforge.data.writer import write_showers
from caloforge.errors import CaloforgeError, ConfigError
from caloforge.training.config import DataConfig
from caloforge.training.data import TrainBatches, build_condition_encoder
from caloforge.training.recipe_io import load_recipe
from caloforge.training.sources import DataSource
from caloforge.transforms.chain import Chain
from caloforge.transforms.conditions import ConditionEncoder

GEO = Geometry.regular(5, 2, 3, 5.0, 5.0, name="mini")


def _roundtrip(state: dict) -> dict:
    buf = io.BytesIO()
    torch.save({"encoder": state}, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)["encoder"]


def test_slot_table_and_reserved_slot_survive_a_weights_only_checkpoint():
    enc = ConditionEncoder((1e3, 1e5), angles=True, n_detectors=3, detector_names=["siw", "scipb", "odd"])
    assert enc.detector_names == ["siw", "scipb", "odd", None] and enc.dim == 1 + 3 + 4
    back = ConditionEncoder.from_state(_roundtrip(enc.state()))
    assert back.detector_names == enc.detector_names and back.new_detector_id == 3
    adapted = ConditionEncoder.from_state(_roundtrip(back.with_new_detector("cld").state()))
    assert adapted.detector_names == ["siw", "scipb", "odd", "cld"] and adapted.dim == enc.dim
    out = adapted.encode([1e4, 1e4], [0.0, 0.0], [1.0, 1.0], [adapted.slot("cld"), adapted.slot("scipb")])
    np.testing.assert_array_equal(out[:, 4:], [[0, 0, 0, 1], [0, 1, 0, 0]])  # the reserved slot is the last column


def test_slot_table_refuses_unknown_names_and_double_adaptation():
    enc = ConditionEncoder(n_detectors=2, detector_names=["a", "b"])
    with pytest.raises(CaloforgeError, match="'zz': not in this model's slot table"):
        enc.slot("zz")
    with pytest.raises(ConfigError, match="already has slot 0"):
        enc.with_new_detector("a")
    with pytest.raises(ConfigError, match="reserved slot already holds 'c'"):
        enc.with_new_detector("c").with_new_detector("d")
    with pytest.raises(ConfigError, match="expected 2 names"):
        ConditionEncoder(n_detectors=2, detector_names=["a"])
    legacy = ConditionEncoder.from_state({"energy_range_mev": [1e3, 1e6], "angles": False, "n_detectors": 2})
    assert legacy.detector_names == [None, None, None] and not legacy.named


def test_recipe_slot_table_and_weights_are_validated_at_the_door():
    cfg = DataConfig(conditions=("energy", "detector"), detectors=("a", "b"), detector_weights={"a": 1, "b": 3})
    assert cfg.slots == 2 and build_condition_encoder(cfg).detector_names == ["a", "b", None]
    with pytest.raises(ConfigError, match="detector_weights: 'c' is not in detectors"):
        load_recipe("tiny-fm", ["data.detectors=[a, b]", "data.detector_weights={c: 1.0}"])
    with pytest.raises(ConfigError, match="n_detectors 3 disagrees"):
        load_recipe("tiny-fm", ["data.detectors=[a, b]", "data.n_detectors=3"])


def _detector_file(path, names, ids, n, seed, energy_scale=1.0):
    rng = np.random.default_rng(seed)
    e = np.exp(rng.uniform(np.log(1e3), np.log(1e5), n))
    showers = (rng.gamma(2.0, 1.0, (n, GEO.n_voxels)) * e[:, None] * 1e-3 * energy_scale).astype(np.float32)
    extras = {"detector_id": np.full(n, ids, dtype=np.int32)} if ids is not None else None
    attrs = {"detector_names": names} if isinstance(names, list) else {"detector": names}
    write_showers(path, e, showers, extras=extras, attrs=attrs, geometry=GEO)
    return path


@pytest.fixture
def three_files(tmp_path):
    # file-level ids differ from the model slots on purpose: mapping is by name
    a = _detector_file(tmp_path / "a.h5", ["zz", "b", "a"], 2, 40, 0)
    b = _detector_file(tmp_path / "b.h5", ["b"], None, 60, 1)
    c = _detector_file(tmp_path / "c.h5", "c", None, 100, 2)
    return [a, b, c]


def _batches(files, cfg, world=1, rank=0, batch=24):
    enc = build_condition_encoder(cfg)
    chain = Chain.from_config([{"kind": "log", "eps": 1e-3}])
    return TrainBatches(files, chain, enc, cfg, batch, seed=3, rank=rank, world=world, geometry=GEO)


def test_several_files_map_to_model_slots_by_name(three_files):
    cfg = DataConfig(conditions=("energy", "detector"), detectors=("c", "a", "b"), energy_range_mev=(1e3, 1e5))
    tb = _batches(three_files, cfg)
    assert tb.n == 200 and tb.in_memory
    np.testing.assert_array_equal(np.bincount(tb.slots), [100, 40, 60])  # c -> 0, a -> 1, b -> 2
    cond = tb._c  # (n, C) in row order
    np.testing.assert_array_equal(cond[:, 1:].argmax(1), tb.slots)  # one-hot column = slot of the row's detector
    assert cond[:, -1].sum() == 0  # nothing in the reserved slot


def test_unknown_detector_in_a_file_is_one_line(three_files):
    cfg = DataConfig(conditions=("energy", "detector"), detectors=("a", "b"))
    with pytest.raises(CaloforgeError, match="detector 'c' has no slot"):
        _batches(three_files, cfg)


def test_weighted_sampling_follows_the_recipe_weights_and_ddp_ranks_split_the_same_batch(three_files):
    cfg = DataConfig(conditions=("energy", "detector"), detectors=("a", "b", "c"), energy_range_mev=(1e3, 1e5),
                     detector_weights={"a": 2.0, "b": 1.0, "c": 1.0})
    one = _batches(three_files, cfg, batch=24)
    counts = np.bincount(np.concatenate([one.slots[one.global_rows(s)] for s in range(200)]), minlength=3)
    np.testing.assert_allclose(counts / counts.sum(), [0.5, 0.25, 0.25], atol=0.03)
    np.testing.assert_array_equal(one.global_rows(7), one.global_rows(7))  # a pure function of the step
    ranks = [_batches(three_files, cfg, world=2, rank=r, batch=24) for r in range(2)]
    for step in range(5):
        x1, c1 = one.batch(step)
        parts = [r.batch(step) for r in ranks]
        np.testing.assert_array_equal(np.concatenate([p[0] for p in parts]), x1)
        np.testing.assert_array_equal(np.concatenate([p[1] for p in parts]), c1)
    for r in ranks:  # every rank sees every detector within a few steps
        seen = {int(s) for step in range(5) for s in r.batch(step)[1][:, 1:].argmax(1)}
        assert seen == {0, 1, 2}


def test_the_layer_models_own_batch_follows_the_detector_weights_on_its_own_rows(three_files):
    from caloforge.training.data import fit_batches
    from caloforge.transforms.layer_coder import LayerEnergyCoder

    cfg = DataConfig(conditions=("energy", "detector"), detectors=("a", "b", "c"), energy_range_mev=(1e3, 1e5),
                     detector_weights={"a": 2.0, "b": 1.0, "c": 1.0})
    coder = LayerEnergyCoder(GEO, 0.0, max_dep=1e4).fit(fit_batches(three_files, 10_000, GEO))
    enc = build_condition_encoder(cfg)
    tb = TrainBatches(three_files, Chain.from_config([{"kind": "log", "eps": 1e-3}]), enc, cfg, 24, seed=3,
                      geometry=GEO, coder=coder)
    rows = [tb.layer_batch(s, 256) for s in range(40)]  # (256, C + L) each: energy, 4 slot columns, L codes
    slots = np.concatenate([r[:, 1:enc.dim].argmax(1) for r in rows])
    np.testing.assert_allclose(np.bincount(slots, minlength=3) / len(slots), [0.5, 0.25, 0.25], atol=0.03)
    assert rows[0].shape == (256, enc.dim + GEO.n_layers)
    assert not np.array_equal(tb.layer_batch(0, 24), tb.batch(0)[1])  # not the voxel batch's rows again


def test_weights_must_cover_every_detector_in_the_files(three_files):
    cfg = DataConfig(conditions=("energy", "detector"), detectors=("a", "b", "c"), detector_weights={"a": 1.0})
    with pytest.raises(ConfigError, match="expected a weight for detector 'b'"):
        _batches(three_files, cfg)


def test_streamed_batches_equal_in_memory_batches(three_files):
    base = {"conditions": ("energy", "detector"), "detectors": ("a", "b", "c"), "energy_range_mev": (1e3, 1e5)}
    mem = _batches(three_files, DataConfig(**base))
    streamed = _batches(three_files, DataConfig(**base, ram_budget_mb=1e-6))
    assert not streamed.in_memory
    for step in range(3):
        for u, v in zip(mem.batch(step), streamed.batch(step)):
            np.testing.assert_allclose(u, v, rtol=1e-6)


def test_a_named_source_overrides_the_files_own_detector(three_files):
    cfg = DataConfig(conditions=("energy", "detector"), detectors=("a", "b"), new_detector="new")
    tb = _batches([DataSource(three_files[2], "new")], cfg)
    assert set(tb.slots.tolist()) == {2}  # the reserved slot


def test_sampling_conditions_from_a_file_map_its_detectors_to_the_model_slots_by_name(three_files, tmp_path):
    from caloforge.cli.main import main
    from caloforge.data.reader import ShowerFile
    from caloforge.sampling.conditions import file_detector_slots
    from caloforge.sampling.random_run import random_checkpoint

    enc = ConditionEncoder((1e3, 1e5), n_detectors=3, detector_names=["c", "a", "b"])
    np.testing.assert_array_equal(file_detector_slots(three_files[0], enc, 5), [1] * 5)  # file id 2 = 'a' -> slot 1
    np.testing.assert_array_equal(file_detector_slots(three_files[1], enc), [2] * 60)  # whole-file names ['b']
    assert file_detector_slots(three_files[0], ConditionEncoder(n_detectors=3)) is None  # unnamed: ids are slots
    recipe = load_recipe("tiny-fm", ["model.patch=[5,2,3]", "model.dim=16", "model.heads=2", "model.depth=1",
                                     "data.conditions=[energy,detector]", "data.detectors=[c, a, b]",
                                     "data.energy_range_mev=[1000.0, 100000.0]"])
    run = random_checkpoint(recipe, tmp_path / "run", GEO, seed=1)
    out = tmp_path / "s.h5"
    assert main(["sample", "--checkpoint", str(run), "--conditions-from", str(three_files[0]), "--n", "6",
                 "--steps", "1", "--device", "cpu", "--out", str(out)]) == 0
    with ShowerFile(out) as f:  # the model's slot of 'a' (1), not the file's id 2, and the model's names
        np.testing.assert_array_equal(np.asarray(f.extra("detector_id")).reshape(-1), [1] * 6)
        assert f.attrs["detector_names"][:3] == ["c", "a", "b"]
