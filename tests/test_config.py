"""Recipes: every shipped recipe validates and builds; config errors are one clear line (library and CLI)."""

from __future__ import annotations

import pytest
import yaml

from caloforge.cli.main import main
from caloforge.errors import ConfigError
from caloforge.training.config import recipe_differences
from caloforge.training.recipe_io import (
    apply_overrides,
    dump_recipe,
    list_recipes,
    load_recipe,
    recipe_from_dict,
)

TINY = ("tiny-fm", "tiny-edm", "tiny-ddpm", "tiny-vp")


def test_every_shipped_recipe_validates_and_builds_its_parts():
    from caloforge.data.geometry import Geometry
    from caloforge.generative.objectives import build_objective
    from caloforge.training.build import dit_config
    from caloforge.transforms.chain import Chain

    names = [n for n, _ in list_recipes()]
    assert set(TINY) | {"caloart-ds2", "caloart-ds3", "calodit2-edm-ds2", "calodit1-ddpm-ds2",
                        "caloscore2-vp-ds2"} <= set(names)
    for name in names:
        r = load_recipe(name)
        assert r.name == name and r.description and "\n" not in r.description
        build_objective(dict(r.objective))
        Chain.from_config(list(r.transforms))
        geo = Geometry.official("3" if "ds3" in name else "2")
        cfg = dit_config(r, geo, 1)
        assert cfg.grid == geo.grid_shape


def test_caloart_ds2_recipe_matches_the_paper_setup():
    r = load_recipe("caloart-ds2")
    assert r.model.patch == (3, 4, 3) and (r.model.dim, r.model.depth, r.model.heads) == (384, 6, 6)
    assert r.objective["prediction"] == "v" and r.objective["loss_space"] == "v"
    assert (r.train.lr, r.train.betas, r.train.batch_size, r.train.steps) == (5e-4, (0.9, 0.95), 256, 400_000)
    assert (r.train.warmup_steps, r.train.schedule, r.train.ema.power) == (10_000, "cosine", 0.7)
    assert (r.sampler.solver, r.sampler.steps) == ("heun", 32)


def test_overrides_are_typed_by_yaml_and_never_evaluated():
    r = load_recipe("tiny-fm", ["train.lr=1e-3", "model.qk_norm=false", "train.betas=[0.8, 0.9]",
                                "description=__import__('os').system('false')"])
    assert r.train.lr == 1e-3 and isinstance(r.train.lr, float)
    assert r.model.qk_norm is False and r.train.betas == (0.8, 0.9)
    assert r.description == "__import__('os').system('false')"


def test_override_creates_missing_sections_and_rejects_non_sections():
    assert apply_overrides({}, ["a.b=1"]) == {"a": {"b": 1}}
    with pytest.raises(ConfigError, match="'train.lr.x=1': train.lr is not a section"):
        load_recipe("tiny-fm", ["train.lr.x=1"])
    with pytest.raises(ConfigError, match="expected key=value"):
        load_recipe("tiny-fm", ["train.lr"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.lrr=1", "recipe tiny-fm: train.lrr: unknown key"),
        ("train.lr=fast", "recipe tiny-fm: train.lr: input should be a valid number"),
        ("train.schedule=linear", "recipe tiny-fm: train.schedule: input should be 'cosine', 'wsd' or 'constant'"),
        ("model.heads=5", "recipe tiny-fm: model: dim 64 is not divisible by heads 5"),
        ("train.batch_size=0", "recipe tiny-fm: train.batch_size: Input should be greater than or equal to 1"),
    ],
)
def test_config_errors_are_one_line_naming_recipe_and_field(override, message):
    with pytest.raises(ConfigError) as err:
        load_recipe("tiny-fm", [override])
    text = str(err.value)
    assert "\n" not in text
    assert text.startswith(message), text


def test_unknown_objective_field_and_transform_kind_are_config_errors():
    with pytest.raises(ConfigError, match="recipe tiny-fm: objective 'flow': unknown field 'predicton'"):
        load_recipe("tiny-fm", ["objective.predicton=x"])
    raw = yaml.safe_load(dump_recipe(load_recipe("tiny-fm")))
    raw["transforms"] = [{"kind": "sqrt"}]
    with pytest.raises(ConfigError, match=r"recipe x: transforms\[0\]: key 'kind'"):
        recipe_from_dict({**raw, "name": "x"}, "recipe x")


def test_unknown_recipe_lists_the_available_ones():
    with pytest.raises(ConfigError, match="no such recipe.*tiny-fm"):
        load_recipe("nope")


def test_recipe_file_path_loads_and_round_trips(tmp_path):
    r = load_recipe("tiny-edm")
    path = tmp_path / "mine.yaml"
    path.write_text(dump_recipe(r))
    assert load_recipe(path) == r
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {lr: [1, 2]\n")
    with pytest.raises(ConfigError, match="bad.yaml: invalid YAML"):
        load_recipe(bad)


def test_resume_free_settings_do_not_count_as_a_different_recipe():
    a = load_recipe("tiny-fm").to_dict()
    b = load_recipe("tiny-fm", ["train.steps=5", "train.log_every=1", "sampler.steps=4"]).to_dict()
    c = load_recipe("tiny-fm", ["train.lr=1e-2"]).to_dict()
    assert recipe_differences(a, b) == []
    assert recipe_differences(a, c) == [f"train.lr ({a['train']['lr']!r} vs 0.01)"]


def test_cli_prints_config_error_as_one_line_and_exits_2(tmp_path, capsys, tiny_ds2_file):
    code = main(["train", "--recipe", "tiny-fm", "--data", str(tiny_ds2_file), "--out", str(tmp_path / "r"),
                 "train.lrr=1"])
    err = capsys.readouterr().err
    assert code == 2
    assert err == "caloforge: error: recipe tiny-fm: train.lrr: unknown key\n"
    code = main(["train", "--recipe", "tiny-fm", "--data", str(tiny_ds2_file), "--out", str(tmp_path / "r"),
                 "train.steps=many"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "train.steps: input should be a valid integer" in err
    assert not (tmp_path / "r").exists()


def test_cli_recipes_lists_one_line_per_recipe(capsys):
    assert main(["recipes"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == len(list_recipes())
    assert any(line.startswith("caloart-ds2") and " — " in line for line in lines)
