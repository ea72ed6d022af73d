"""The torch float32 generation ops equal the numpy float64 reference path, for every shipped recipe's chain.

Tolerance: |torch - numpy| <= 1e-5 |numpy| + 1e-10 E_inc per voxel (float32 cancellation in the logit inverse of
a nearly empty voxel costs ~1e-12 E_inc; the official readout threshold is 1.5e-2 MeV). The one exception a float32 path must have: a voxel
whose value lies within float32 rounding of a threshold may land on the other side of it; such voxels are allowed
only when both values are below 1.001 x the threshold.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from caloforge.data.geometry import Geometry
from caloforge.training.recipe_io import list_recipes, load_recipe
from caloforge.transforms.chain import Chain
from caloforge.transforms.conditions import ConditionEncoder
from caloforge.transforms.layer_coder import LayerEnergyCoder
from caloforge.transforms.torch_ops import ChainInverse, EncodeConditions, LayerJoin

GEO = Geometry.regular(5, 4, 3, 4.65, 3.4)  # a small regular mesh: 60 voxels, 5 layers
RTOL, ATOL_PER_MEV = 1e-5, 1e-10


def fake_showers(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    e = 10 ** rng.uniform(3, 6, n)  # 1 GeV .. 1 TeV in MeV
    x = rng.lognormal(0.0, 2.0, (n, GEO.n_voxels)) * (rng.random((n, GEO.n_voxels)) < 0.6)
    x = x / x.sum(1, keepdims=True) * e[:, None] * rng.uniform(0.3, 1.2, (n, 1))
    return x.astype(np.float32), e


def assert_close_allowing_threshold_flips(got, want, e, thresholds: list[float]):
    bad = np.abs(got - want) > RTOL * np.abs(want) + ATOL_PER_MEV * e[:, None]
    if bad.any():
        near = np.zeros_like(bad)
        for thr in thresholds:
            near |= np.maximum(np.abs(got), np.abs(want)) < 1.001 * thr
        assert not (bad & ~near).any(), f"max abs diff {np.abs(got - want)[bad & ~near].max()}"
        assert bad.mean() < 1e-3


def thresholds_of(chain: Chain) -> list[float]:
    return [float(s.value) for s in chain.steps if s.kind == "threshold"]


@pytest.mark.parametrize("name", [n for n, _ in list_recipes()])
def test_torch_inverse_chain_equals_numpy_for_every_shipped_recipe(name):
    recipe = load_recipe(name)
    chain = Chain.from_config(list(recipe.transforms))
    x, e = fake_showers(400, 0)
    chain.fit(lambda: [(x, e)])
    y = chain.forward(x, e)
    y = y + np.random.default_rng(1).normal(0, 0.3, y.shape).astype(np.float32)  # model outputs are never exact
    want = chain.inverse(y, e)
    with torch.no_grad():
        got = ChainInverse(chain)(torch.from_numpy(y), torch.from_numpy(e[:, None]).float()).numpy()
    assert got.dtype == np.float32
    assert_close_allowing_threshold_flips(got, want, e, thresholds_of(chain))


@pytest.mark.parametrize("normalise", [False, True])
def test_torch_layer_join_equals_numpy(normalise):
    x, e = fake_showers(300, 2)
    coder = LayerEnergyCoder(GEO, threshold_mev=0.5, normalise=normalise).fit(lambda: [(x, e)])
    shapes, codes = coder.split(x, e)
    rng = np.random.default_rng(3)
    shapes = (shapes * rng.uniform(0.5, 1.5, shapes.shape)).astype(np.float32)
    codes = (codes + rng.normal(0, 0.5, codes.shape)).astype(np.float32)
    shapes[:5, GEO.layer_slice(1)] = 0.0  # empty layers exercise the lost-layer repair
    want = coder.join(shapes, codes, e)
    with torch.no_grad():
        got = LayerJoin(coder)(torch.from_numpy(shapes), torch.from_numpy(codes),
                               torch.from_numpy(e[:, None]).float()).numpy()
    assert_close_allowing_threshold_flips(got, want, e, [coder.threshold_mev])
    assert (got[:5, GEO.layer_slice(1)] > 0).any()  # the repair really ran


@pytest.mark.parametrize(("angles", "n_det"), [(False, 0), (True, 0), (True, 4)])
def test_torch_condition_encoding_equals_numpy(angles, n_det):
    enc = ConditionEncoder((1e3, 1e6), angles=angles, n_detectors=n_det)
    rng = np.random.default_rng(4)
    n = 50
    e, phi, theta = 10 ** rng.uniform(3, 6, n), rng.uniform(-np.pi, np.pi, n), rng.uniform(0.87, 2.27, n)
    det = rng.integers(0, n_det + 1, n)
    want = enc.encode(e, phi if angles else None, theta if angles else None, det if n_det else None)
    raw = [e[:, None]] + ([phi[:, None], theta[:, None]] if angles else [])
    if n_det:
        raw.append(np.eye(n_det + 1)[det])
    module = EncodeConditions(enc)
    got = module(torch.from_numpy(np.concatenate(raw, 1)).float()).numpy()
    assert module.raw_dim == sum(r.shape[1] for r in raw)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
