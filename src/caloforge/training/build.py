"""Assembling a run's parts (device, network, objective, preprocessing) from a recipe or from a checkpoint.

Shared by the trainer and the generator so that a checkpoint always rebuilds exactly the network that was trained.
"""

from __future__ import annotations

import torch

from caloforge.data.geometry import Geometry
from caloforge.devices import resolve_device  # noqa: F401 - re-exported for the trainer and the generator
from caloforge.errors import CaloforgeError, ConfigError
from caloforge.training.config import Recipe


def autocast_context(device: torch.device, precision: str):
    """bf16 autocast on GPUs that support it (precision auto/bf16), fp32 on CPU unless bf16 is asked for."""
    import contextlib

    if precision == "fp32":
        return contextlib.nullcontext()
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    if device.type == "cpu" and precision == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def grid_of(geometry: Geometry, recipe: Recipe) -> tuple[int, int, int]:
    """(n_z, n_alpha, n_r) the network sees; the geometry must be a regular mesh matching model.grid if set."""
    if not geometry.is_regular:
        raise ConfigError(f"geometry {geometry.name}: the DiT needs a regular (z, alpha, r) mesh; "
                          f"this geometry has {len(geometry.relevant_layers)} irregular layers")
    grid = geometry.grid_shape
    if recipe.model.grid is not None and tuple(recipe.model.grid) != tuple(grid):
        raise ConfigError(f"recipe {recipe.name}: model.grid: expected the data grid {list(grid)}, "
                          f"found {list(recipe.model.grid)}")
    for axis, (g, p) in enumerate(zip(grid, recipe.model.patch)):
        if p > g:
            raise ConfigError(f"recipe {recipe.name}: model.patch: {list(recipe.model.patch)} is larger than the "
                              f"data grid {list(grid)} on axis {axis}")
    return grid


def dit_config(recipe: Recipe, geometry: Geometry, cond_dim: int):
    """A grid DiT for a regular mesh; a layer-group DiT (``models.layer_dit``) for an irregular one (dataset 1)."""
    if not geometry.is_regular:
        from caloforge.models.layer_dit import LayerDiTConfig

        layers = tuple((geometry.layers[i].n_alpha, geometry.layers[i].n_r) for i in geometry.relevant_layers)
        if recipe.model.grid is not None:
            raise ConfigError(f"recipe {recipe.name}: model.grid: geometry {geometry.name} is irregular (tokenised "
                              f"layer by layer); leave model.grid unset")
        return LayerDiTConfig.for_layers(layers, cond_dim=int(cond_dim), **recipe.model.dit_kwargs())
    from caloforge.models.dit import DiTConfig

    return DiTConfig(grid=grid_of(geometry, recipe), cond_dim=int(cond_dim), **recipe.model.dit_kwargs())


def recipe_dit_config(recipe: Recipe | str, geometry: Geometry | None = None, cond_dim: int | None = None):
    """The DiTConfig a (one-stage) recipe trains on ``geometry`` (default: the official DS2 mesh), with the recipe's
    own condition width unless ``cond_dim`` is given. The recipes are the one home of the named model sizes."""
    from caloforge.training.data import build_condition_encoder
    from caloforge.training.recipe_io import load_recipe

    recipe = recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
    geometry = geometry if geometry is not None else Geometry.official("2")
    return dit_config(recipe, geometry, build_condition_encoder(recipe.data).dim if cond_dim is None else cond_dim)


def network_config(recipe: Recipe, geometry: Geometry, cond_dim: int) -> dict:
    """The checkpointed network description: a DiT config dict, or ``{"kind": "two_stage", "voxel", "layer"}``."""
    if recipe.layer_model is None:
        return dit_config(recipe, geometry, cond_dim).to_dict()
    lm = recipe.layer_model
    voxel = dit_config(recipe, geometry, cond_dim + geometry.n_layers)
    layer = {"n_layers": geometry.n_layers, "cond_dim": int(cond_dim), "width": lm.width, "depth": lm.depth}
    return {"kind": "two_stage", "voxel": voxel.to_dict(), "layer": layer}


def build_network(model_config: dict | object, objectives: tuple | None = None):
    """A (layer-group) DiT from its config or dict, or a TwoStageNet from ``network_config``'s two-stage dict (with
    its (voxel, layer) ``objectives`` when it is to be trained)."""
    from caloforge.models.layer_dit import voxel_config, voxel_network

    if isinstance(model_config, dict) and model_config.get("kind") == "two_stage":
        from caloforge.models.two_stage import LayerMLPConfig, TwoStageNet

        return TwoStageNet(voxel_config(dict(model_config["voxel"])),
                           LayerMLPConfig.from_dict(dict(model_config["layer"])), objectives)
    return voxel_network(model_config)


def voxel_grid(model_config: dict) -> tuple[int, int, int]:
    """(Z, A, R) of the voxel network described by a ``network_config`` dict ((1, 1, V) for a layer-group DiT)."""
    from caloforge.models.layer_dit import voxel_config

    cfg = model_config["voxel"] if model_config.get("kind") == "two_stage" else model_config
    return tuple(voxel_config(dict(cfg)).grid)


def build_objective(cfg: dict):
    try:
        from caloforge.generative.objectives import build_objective as build
    except ImportError as exc:  # pragma: no cover - only while the package is being assembled
        raise CaloforgeError(f"objective: caloforge.generative.objectives.build_objective unavailable ({exc})") from None
    return build(dict(cfg))


def noise_seed(seed: int, step: int, shard: int) -> int:
    """Seed of the training noise of one shard at one step: a pure function, so resume and DDP need no RNG state."""
    import numpy as np

    return int(np.random.SeedSequence([seed % 2**32, step, shard]).generate_state(1, np.uint64)[0] >> 1)
