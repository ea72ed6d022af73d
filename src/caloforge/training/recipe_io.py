"""Recipe files: load a shipped or user recipe (YAML, ``yaml.safe_load``, never eval'ed), apply ``dotted.key=value``
overrides, validate into one ``Recipe`` (``training.config``) with one-line errors, and dump it back for run
directories."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from caloforge.errors import ConfigError
from caloforge.training.config import Recipe


# ---- loading -----------------------------------------------------------------------------------------------------
def _recipe_dir():
    return resources.files("caloforge.training") / "recipes"


def list_recipes() -> list[tuple[str, str]]:
    """(name, description) of every shipped recipe, sorted by name."""
    out = []
    for entry in sorted(_recipe_dir().iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".yaml"):
            raw = yaml.safe_load(entry.read_text()) or {}
            out.append((entry.name[: -len(".yaml")], str(raw.get("description", ""))))
    return out


def _format_error(label: str, exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
    if err["type"] == "extra_forbidden":
        return f"{label}: {loc}: unknown key"
    if err["type"] == "missing":
        return f"{label}: {loc}: required key is missing"
    msg = err["msg"].removeprefix("Value error, ")
    found = err.get("input")
    more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    if err["type"].endswith("_type") or err["type"].endswith("_parsing") or "literal" in err["type"]:
        return f"{label}: {loc}: {msg.lower()}, found {found!r}{more}"
    if err["type"] in _BOUND_ERRORS:  # "train.lr: Input should be a finite number, found inf"
        return f"{label}: {loc}: {msg}, found {found!r}{more}"
    return f"{label}: {loc}: {msg}{more}"


_BOUND_ERRORS = {"finite_number", "greater_than", "greater_than_equal", "less_than", "less_than_equal"}


def parse_override(text: str) -> tuple[list[str], Any]:
    """'train.lr=1e-3' -> (['train', 'lr'], 0.001); the value is typed by yaml.safe_load, never eval'ed."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected key=value, e.g. train.lr=1e-3")
    key, value = text.split("=", 1)
    parts = [p for p in key.strip().split(".")]
    if not all(parts):
        raise ConfigError(f"override {text!r}: expected a dotted key like train.lr, found {key!r}")
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        parsed = value
    return parts, parsed


def apply_overrides(raw: dict, overrides: list[str] | tuple[str, ...] = ()) -> dict:
    """A copy of raw with each dotted override set (missing intermediate sections are created)."""
    import copy

    out = copy.deepcopy(raw)
    for text in overrides:
        parts, value = parse_override(text)
        node = out
        for i, part in enumerate(parts[:-1]):
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
            if not isinstance(nxt, dict):
                raise ConfigError(f"override {text!r}: {'.'.join(parts[: i + 1])} is not a section")
            node = nxt
        node[parts[-1]] = value
    return out


def stored_recipe(raw: dict, label: str) -> Recipe:
    """The recipe stored in a checkpoint. Runs from before the one-threshold rule held a ``threshold`` transform
    step; it is dropped here (the checkpoint's own chain still applies it, so the run samples as it was trained)."""
    raw = dict(raw)
    raw["transforms"] = [s for s in raw.get("transforms", ()) if not (isinstance(s, dict) and s.get("kind") ==
                                                                        "threshold")]
    return recipe_from_dict(raw, label)


def recipe_from_dict(raw: Any, label: str) -> Recipe:
    if not isinstance(raw, dict):
        raise ConfigError(f"{label}: expected a mapping of sections, found {type(raw).__name__}")
    try:
        recipe = Recipe.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_error(label, exc)) from None
    check_parts(recipe, label)
    return recipe


def check_parts(recipe: Recipe, label: str) -> None:
    """Build the objective, the transform chain and the network config once, so their errors surface when the
    recipe is loaded (before any data is read)."""
    from caloforge.generative.objectives import build_objective
    from caloforge.transforms.chain import Chain

    try:
        build_objective(dict(recipe.objective))
        if recipe.layer_model is not None:
            build_objective(dict(recipe.layer_model.objective))
        Chain.from_config(list(recipe.transforms), where="transforms")
        _check_model(recipe)
    except ConfigError as exc:
        raise ConfigError(f"{label}: {exc}") from None


def _check_model(recipe: Recipe) -> None:
    """The DiTConfig of this recipe on any grid the patch fits (the real grid comes with the data)."""
    from caloforge.models.dit import DiTConfig
    from caloforge.training.data import build_condition_encoder

    cond_dim = build_condition_encoder(recipe.data).dim
    if recipe.layer_model is not None:
        cond_dim += 1  # plus the layer codes (their number comes with the geometry)
    grid = recipe.model.grid or recipe.model.patch
    DiTConfig(grid=tuple(grid), cond_dim=cond_dim, **recipe.model.dit_kwargs())


def load_recipe(name_or_path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """A shipped recipe by name (``caloforge recipes``) or a YAML file path, with dotted key=value overrides."""
    text = str(name_or_path)
    path = Path(text)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError(f"{path}: recipe file not found")
        source, default_name = path.read_text(), path.stem
    else:
        entry = _recipe_dir() / f"{text}.yaml"
        if not entry.is_file():
            names = ", ".join(n for n, _ in list_recipes())
            raise ConfigError(f"recipe {text!r}: no such recipe (expected one of: {names}, or a .yaml path)")
        source, default_name = entry.read_text(), text
    try:
        raw = yaml.safe_load(source) or {}
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0]
        raise ConfigError(f"{path if path.suffix else 'recipe ' + text}: invalid YAML ({first})") from None
    if isinstance(raw, dict):
        raw.setdefault("name", default_name)
    raw = apply_overrides(raw, overrides) if isinstance(raw, dict) else raw
    return recipe_from_dict(raw, f"recipe {raw.get('name', default_name) if isinstance(raw, dict) else text}")


def dump_recipe(recipe: Recipe) -> str:
    return yaml.safe_dump(recipe.to_dict(), sort_keys=False)
