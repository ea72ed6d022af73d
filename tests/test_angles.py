"""Angle-dependent GFlash showers, and an angle-conditioned model that reproduces the angle dependence it learned.

The generator's angle model: dead material in front (x0_front X0 at normal incidence) is crossed along
x0_front / sin(theta), so the more oblique the particle, the earlier the shower starts and the shallower it sits in
the (particle-aligned) mesh, with less energy reaching the calorimeter.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from caloforge.evaluation.by_condition import breakdown, condition_groups, mean_depth
from caloforge.simulate.detectors import LEMURS_LIKE, PRESETS, DetectorSpec, Mesh
from caloforge.simulate.generate import generate, make_file

#: A small homogeneous PbWO4 block (1 X0 per layer) behind 4 X0 of dead material: a strong, fast angle effect.
FRONT = DetectorSpec("front-test", 99, "test: PbWO4 behind 4 X0", "PbWO4", Mesh(12, 2, 3, 20.0, 8.9),
                     stochastic_term_override=0.05, x0_front=4.0)
GRAZING, NORMAL = 0.6, 1.5


def _depth_and_response(spec, theta, n=300, seed=0, energy=2e4):
    s = generate(spec, np.full(n, energy), seed, theta=theta)
    return float(np.nanmean(mean_depth(s, spec.geometry))), float(s.sum(1).mean() / energy)


def test_upstream_material_makes_oblique_showers_shallower_in_the_mesh_and_lose_energy():
    d_graz, r_graz = _depth_and_response(FRONT, GRAZING)
    d_norm, r_norm = _depth_and_response(FRONT, NORMAL)
    # path 4/sin(0.6) = 7.1 X0 vs 4.0 X0: the shower starts ~3 X0 earlier (less in the mean, the mesh truncates)
    assert d_norm - d_graz > 0.8 and r_graz < r_norm


def test_five_lemurs_like_presets_share_one_grid():
    grids = {PRESETS[name].geometry.grid_shape for name in LEMURS_LIKE}
    assert grids == {(45, 16, 9)} and len(LEMURS_LIKE) == 5
    spec = PRESETS["allegro-like"]  # the largest front material of the five
    assert _depth_and_response(spec, 0.9, n=200)[0] < _depth_and_response(spec, np.pi / 2, n=200)[0]


def test_breakdown_groups_by_detector_and_theta_bin():
    extras = {"detector_id": np.array([0, 1, 1, 0]), "incident_theta": np.array([0.9, 1.3, 1.6, 2.0])}
    groups = condition_groups(4, extras, ["a", "b"], (0.87, 1.5708, 2.27))
    assert groups["detector=b"].tolist() == [False, True, True, False]
    assert groups["theta=[0.87,1.57)"].tolist() == [True, True, False, False]


@pytest.mark.slow
def test_an_angle_conditioned_model_reproduces_the_trained_depth_shift(tmp_path, monkeypatch):
    """A model conditioned on (energy, phi, theta) learns the depth shift of the data. The theta dependence is a small
    part of the loss and comes late: on this data the D 32 model at lr 3e-3 reproduced 0.015 of the 1.04-layer shift
    after 300 steps and 0.36 after 1500; D 64 at lr 1e-2 gives 0.93 after 1500 steps (about 40 s on one thread)."""
    from caloforge.sampling.generator import Generator
    from caloforge.training.recipe_io import load_recipe
    from caloforge.training.trainer import train

    monkeypatch.setenv("CALOFORGE_PROGRESS", "0")
    torch.set_num_threads(1)
    data = make_file(FRONT, 3000, tmp_path / "front.h5", energy_range=(1e4, 5e4), seed=3,
                     theta_range=(0.55, 1.6), phi_range=(-np.pi, np.pi))
    recipe = load_recipe("tiny-fm", [
        "data.conditions=[energy, phi, theta]", "data.energy_range_mev=[1.0e4, 5.0e4]",
        "transforms=[{kind: divide_by_energy, k: 1.0}, {kind: log, eps: 1.0e-6}, {kind: standardise, mode: global}]",
        "model.patch=[2, 2, 3]", "model.dim=64", "train.steps=1500", "train.batch_size=32", "train.lr=1e-2",
        "train.ckpt_every=1500", "train.log_every=500", "sampler.steps=8", "postprocess.threshold_mev=0.0"])
    train(recipe, data, tmp_path / "run", device="cpu")
    gen = Generator.load(tmp_path / "run", device="cpu")
    n, e = 400, np.exp(np.random.default_rng(0).uniform(np.log(1e4), np.log(5e4), 400))
    depth = {}
    for theta in (GRAZING, NORMAL):
        fake, _ = gen.generate(e, phi=np.zeros(n), theta=np.full(n, theta), seed=1)
        real = generate(FRONT, e, seed=7, theta=theta)
        depth[theta] = (np.nanmean(mean_depth(real, FRONT.geometry)), np.nanmean(mean_depth(fake, FRONT.geometry)))
    true_shift = depth[NORMAL][0] - depth[GRAZING][0]
    model_shift = depth[NORMAL][1] - depth[GRAZING][1]
    assert true_shift > 0.8
    assert 0.6 * true_shift < model_shift < 1.4 * true_shift, (true_shift, model_shift)
    # and the per-angle-bin breakdown sees it too
    rows = breakdown((real, e, {"incident_theta": np.full(n, NORMAL)}), (fake, e, {"incident_theta": np.full(n, NORMAL)}),
                     FRONT.geometry, theta_edges=(0.6, 1.0, 1.6), threshold=0.0, min_showers=10**9)
    assert [r["group"] for r in rows] == ["all", "theta=[0.60,1.00)", "theta=[1.00,1.60)"]
    assert rows[2]["n_ref"] == n and abs(rows[2]["depth_gen"] - rows[2]["depth_ref"]) < 0.4 * true_shift
