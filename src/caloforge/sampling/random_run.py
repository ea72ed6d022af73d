"""A checkpoint with random weights for any recipe, written through the normal checkpoint path.

For what does not need a trained model: export round trips, the Par04 consumer test, CPU speed at a recipe's real
size. The transform chain (and two-stage layer coder) are fitted on synthetic sparse showers, every network weight is
drawn at random (adaLN-Zero gates included, so the output is not identically zero), and the payload has exactly the
keys the trainer writes, so ``Generator.load`` reads it like any run. Not a physics model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from caloforge.data.geometry import Geometry


def synthetic_showers(geometry: Geometry, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n sparse showers (n, V) MeV depositing 30-120 % of log-uniform 1 GeV - 1 TeV incident energies."""
    rng = np.random.default_rng(seed)
    e = 10 ** rng.uniform(3, 6, n)
    x = rng.lognormal(0.0, 2.0, (n, geometry.n_voxels)) * (rng.random((n, geometry.n_voxels)) < 0.3)
    x = x / np.maximum(x.sum(1, keepdims=True), 1e-30) * e[:, None] * rng.uniform(0.3, 1.2, (n, 1))
    return x.astype(np.float32), e


def random_checkpoint(recipe, run_dir: str | Path, geometry: Geometry | None = None, seed: int = 0,
                      weight_std: float = 0.02, n_fit: int = 256) -> Path:
    """Write ``run_dir/checkpoints/step_00000000.pt`` for ``recipe`` (a Recipe) with random weights; returns it."""
    from caloforge.training.build import build_network, network_config
    from caloforge.training.checkpoint import save_checkpoint
    from caloforge.training.data import build_condition_encoder
    from caloforge.transforms.chain import Chain

    geometry = geometry or Geometry.official("2")
    encoder = build_condition_encoder(recipe.data)
    x, e = synthetic_showers(geometry, n_fit, seed)
    coder, extra = None, {}
    if recipe.layer_model is not None:
        from caloforge.generative.objectives import build_objective
        from caloforge.transforms.layer_coder import LayerEnergyCoder

        lm = recipe.layer_model
        thr = geometry.threshold_mev if lm.threshold_mev is None else lm.threshold_mev
        coder = LayerEnergyCoder(geometry, thr, lm.max_dep, lm.alpha, normalise=lm.normalise_layers)
        coder.fit(lambda: [(x, e)])
        extra = {"layer_coder": coder.state(), "layer_objective": build_objective(dict(lm.objective)).config()}
    shapes = x if coder is None else coder.shapes(x)
    chain = Chain.from_config(list(recipe.transforms)).fit(lambda: [(shapes, e)])
    y = chain.forward(shapes, e)
    torch.manual_seed(seed)
    model_cfg = network_config(recipe, geometry, encoder.dim)
    net = build_network(model_cfg)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(weight_std * torch.randn_like(p))
    from caloforge.generative.objectives import build_objective

    payload = {"model_range": (y.min(0), y.max(0)), "config": recipe.to_dict(), "chain": chain.state(),
               "encoder": encoder.state(), "geometry": geometry.to_dict(), "model_config": model_cfg,
               "objective": build_objective(dict(recipe.objective)).config(), **extra,
               "model": net.state_dict(), "ema": net.state_dict()}
    return save_checkpoint(run_dir, 0, payload, keep=1)
