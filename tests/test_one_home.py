"""Settings that used to be ignored are refused or honoured, and each concept has one home (docs/architecture.md)."""

from __future__ import annotations

import numpy as np
import pytest
from test_trainer import SMALL_GEO, structured_file

from caloforge.errors import ConfigError
from caloforge.training.recipe_io import load_recipe, stored_recipe


@pytest.mark.parametrize("override, words", [
    ("train.num_workers=4", ["train.num_workers", "expected 0"]),
    ("layer_model.threshold_mev=0.1", ["postprocess.threshold_mev"]),
    ("transforms=[{kind: threshold, value: 0.01}]", ["postprocess.threshold_mev", "threshold step"]),
])
def test_ignored_or_duplicated_settings_are_refused_at_the_door(override, words):
    with pytest.raises(ConfigError) as exc:
        load_recipe("tiny-fm-2s", [override])
    assert all(w in str(exc.value) for w in words) and "\n" not in str(exc.value)


def test_postprocess_threshold_is_the_two_stage_threshold(tmp_path):
    from caloforge.training.trainer import _layer_coder

    data = structured_file(tmp_path / "d.h5", n=16)
    own = _layer_coder(load_recipe("tiny-fm-2s"), SMALL_GEO, data, None)
    set_ = _layer_coder(load_recipe("tiny-fm-2s", ["postprocess.threshold_mev=0.5"]), SMALL_GEO, data, None)
    assert own.threshold_mev == SMALL_GEO.threshold_mev and set_.threshold_mev == 0.5


def test_stored_recipes_from_before_the_one_threshold_rule_still_load():
    raw = load_recipe("tiny-fm").to_dict()
    raw["transforms"] = [{"kind": "threshold", "value": 0.0151515}, *raw["transforms"]]
    assert [s["kind"] for s in stored_recipe(raw, "ckpt").transforms] == [s["kind"] for s in
                                                                           load_recipe("tiny-fm").transforms]


def test_one_readout_cut_compares_in_the_data_type_and_keeps_it_unless_asked():
    from caloforge.evaluation import features
    from caloforge.transforms import postprocess

    assert features.apply_threshold is postprocess.apply_threshold
    thr = 0.5e-3 / 0.033
    x = np.array([[np.float32(thr), np.nextafter(np.float32(thr), np.float32(0))]], dtype=np.float32)
    assert postprocess.apply_threshold(x, thr).dtype == np.float32
    out = postprocess.apply_threshold(x, thr, np.float64)
    assert out.dtype == np.float64 and out[0, 0] == np.float32(thr) and out[0, 1] == 0


def test_one_device_resolver_and_one_energy_sampler():
    from caloforge.data.energies import log_uniform
    from caloforge.devices import resolve_device
    from caloforge.evaluation import classifier
    from caloforge.training import build

    assert classifier.resolve_device is resolve_device is build.resolve_device
    with pytest.raises(ConfigError, match="--device"):
        resolve_device("tpu")
    e = log_uniform(20000, (1e3, 1e5), np.random.default_rng(0))
    assert e.min() >= 1e3 and e.max() <= 1e5
    assert abs(np.mean(np.log10(e)) - 4.0) < 0.02  # uniform in log E


def test_presets_module_is_gone_the_recipes_are_the_model_sizes():
    import importlib.util

    assert importlib.util.find_spec("caloforge.models.presets") is None


def test_two_stage_net_takes_its_objectives_in_the_constructor():
    import torch

    from caloforge.data.geometry import Geometry
    from caloforge.training.build import build_network, build_objective, network_config

    r = load_recipe("tiny-fm-2s", ["model.dim=16", "model.heads=2", "model.depth=1", "layer_model.width=8"])
    cfg = network_config(r, Geometry.official("2"), 1)
    objs = (build_objective(r.objective), build_objective(r.layer_model.objective))
    net = build_network(cfg, objs)
    assert net.objectives == objs and "objectives" not in str(list(net.state_dict()))
    x, c = torch.randn(2, 45, 16, 9), torch.randn(2, 1 + 45)
    voxel_loss, layer_loss = net(x, c, torch.Generator().manual_seed(0))
    assert torch.isfinite(voxel_loss) and torch.isfinite(layer_loss)
    with pytest.raises(ConfigError, match="objectives"):
        build_network(cfg)(x, c)


def test_one_geometry_grammar_for_data_evaluate_and_recipes(tmp_path):
    from caloforge.cli.evaluate_cmd import parse_geometry
    from caloforge.data.geometry import Geometry
    from caloforge.data.reader import resolve_geometry as reader_geometry
    from caloforge.errors import DataError

    for spec in ("2", "official:2"):
        assert Geometry.parse(spec).n_voxels == 6480
    reg = Geometry.parse("regular:10x4x3:5.0")
    assert reg.grid_shape == (10, 4, 3)
    assert reader_geometry("regular:10x4x3:5.0").grid_shape == parse_geometry("regular:10x4x3:5.0").grid_shape
    with pytest.raises(DataError, match="official key"):
        Geometry.parse("ds2")
    with pytest.raises(ConfigError, match="--geometry: geometry 'regular:10x4:5'"):
        parse_geometry("regular:10x4:5")
    # a recipe may name a regular mesh too: training reads the file with it
    from caloforge.data.reader import ShowerFile
    from caloforge.training.data import resolve_geometry as recipe_geometry

    data = structured_file(tmp_path / "d.h5", n=4)
    with ShowerFile(data) as f:
        cfg = load_recipe("tiny-fm", ["data.geometry=regular:10x4x3:5.0"]).data
        assert recipe_geometry(cfg, f).grid_shape == (10, 4, 3)
