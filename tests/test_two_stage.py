"""Two-stage (CaloDREAM-style) models: the layer-energy coder's exact round trip and its checks, the layer MLP, and a
small two-stage run that trains, resumes exactly, and samples showers whose layers carry the stage-1 energies."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_trainer import SMALL_GEO, structured_file, structured_showers

from caloforge.errors import ConfigError
from caloforge.models.dit import DiTConfig
from caloforge.models.two_stage import LayerMLP, LayerMLPConfig, TwoStageNet
from caloforge.sampling.generator import Generator
from caloforge.training.checkpoint import load_checkpoint
from caloforge.training.recipe_io import load_recipe
from caloforge.training.trainer import train
from caloforge.transforms.layer_coder import LayerEnergyCoder

THR = 0.0151515


def fitted_coder(e, s, **kw) -> LayerEnergyCoder:
    return LayerEnergyCoder(SMALL_GEO, THR, **kw).fit(lambda: iter([(s, e)]))


def per_layer(showers: np.ndarray) -> np.ndarray:
    return showers.reshape(len(showers), SMALL_GEO.n_layers, -1).sum(-1)  # (n, L)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 12), normalise=st.booleans())
def test_split_then_join_gives_back_the_thresholded_showers(seed, n, normalise):
    e, s = structured_showers(n, seed)
    s[:, :12] = 0.0  # an empty first layer (u share 0) and, for small n, layers empty in every shower
    coder = fitted_coder(e, s, normalise=normalise)
    shapes, codes = coder.split(s, e)
    assert shapes.shape == s.shape and codes.shape == (n, SMALL_GEO.n_layers)
    sums = per_layer(shapes)
    if normalise:
        assert np.allclose(sums[per_layer(s) > 0], 1.0, atol=1e-5) and np.all(sums[per_layer(s) == 0] == 0)
    else:
        np.testing.assert_array_equal(shapes, np.where(s < THR, 0.0, s).astype(np.float32))
    back = coder.join(shapes, codes, e)
    expected = np.where(s < THR, 0.0, s)
    np.testing.assert_allclose(back, expected, rtol=1e-4, atol=1e-4)


def test_codes_are_standardised_and_the_state_round_trips():
    e, s = structured_showers(200, 3)
    coder = fitted_coder(e, s)
    _, codes = coder.split(s, e)
    varying = coder.std > 1e-3
    assert np.allclose(codes[:, varying].mean(0), 0.0, atol=1e-4)
    assert np.allclose(codes[:, varying].std(0), 1.0, atol=1e-3)
    again = LayerEnergyCoder.from_state(coder.state(), SMALL_GEO)
    np.testing.assert_array_equal(again.split(s, e)[1], codes)
    assert LayerEnergyCoder.from_state({**coder.state(), "normalise": False}, SMALL_GEO).normalise is False


def test_generated_codes_outside_the_training_range_are_clipped_not_extrapolated():
    e, s = structured_showers(50, 4)
    coder = fitted_coder(e, s)
    wild = np.full((3, SMALL_GEO.n_layers), 50.0, dtype=np.float32)  # far above every training code
    edge = np.tile(coder.hi, (3, 1))
    np.testing.assert_allclose(coder.layer_energies(wild, e[:3]), coder.layer_energies(edge, e[:3]))
    assert np.all(coder.layer_energies(wild, e[:3]).sum(1) <= coder.max_dep * e[:3] * (1 + 1e-9))


def test_join_thresholds_before_imposing_layer_energies_so_noise_is_not_lifted_into_hits():
    e, s = structured_showers(50, 6)
    coder = fitted_coder(e, s)
    _, codes = coder.split(s[:1], e[:1])
    target = coder.layer_energies(codes, e[:1])[0]  # (L,) MeV
    deep = int(np.argmax(target > 1.0))  # a layer that must carry > 1 MeV
    sl = SMALL_GEO.layer_slice(deep)
    shapes = np.where(s[:1] < THR, 0.0, s[:1]).astype(np.float32)
    shapes[0, sl] = 0.005  # only sub-threshold noise in that layer (5 keV per voxel) ...
    shapes[0, sl.start + 3] = 0.009  # ... with one voxel a little stronger
    out = coder.join(shapes, codes, e[:1])[0]
    assert np.count_nonzero(out[sl]) == 1 and out[sl.start + 3] == pytest.approx(target[deep], rel=1e-5)
    shapes[0, sl.start + 5] = 0.5  # one voxel above threshold among the noise: it alone carries the layer
    out = coder.join(shapes, codes, e[:1])[0]
    assert np.count_nonzero(out[sl]) == 1 and out[sl.start + 5] == pytest.approx(target[deep], rel=1e-5)


def test_a_max_dep_below_the_data_response_is_a_clear_error():
    e, s = structured_showers(20, 5)  # E_dep / E_inc ~ 0.7
    with pytest.raises(ConfigError, match=r"layer_model.max_dep: 0.5 is below the largest E_dep/E_inc in the "
                                          r"training data \(0.7"):
        fitted_coder(e, s, max_dep=0.5)
    with pytest.raises(ConfigError, match="not fitted"):
        LayerEnergyCoder(SMALL_GEO, THR).split(s, e)


def test_a_threshold_step_in_a_two_stage_recipe_is_refused():
    with pytest.raises(ConfigError, match=r"recipe tiny-fm-2s: .*postprocess.threshold_mev"):
        load_recipe("tiny-fm-2s", ["transforms=[{kind: threshold, value: 0.01}]"])


def test_layer_mlp_starts_at_zero_and_checks_its_conditions():
    net = LayerMLP(LayerMLPConfig(n_layers=7, cond_dim=2, width=16, depth=2))
    z, t, c = torch.randn(5, 7), torch.rand(5), torch.randn(5, 2)
    assert torch.equal(net(z, t, c), torch.zeros(5, 7))
    with pytest.raises(ConfigError, match="expected 2 condition features, found 3"):
        net(z, t, torch.randn(5, 3))
    voxel = DiTConfig(grid=(10, 4, 3), patch=(2, 2, 3), dim=16, depth=1, heads=2, cond_dim=5)
    with pytest.raises(ConfigError, match="cond_dim 5 must equal the conditions 2 \\+ layer codes 7"):
        TwoStageNet(voxel, LayerMLPConfig(n_layers=7, cond_dim=2))


SMALL_2S = ["model.patch=[2,2,3]", "model.dim=32", "model.heads=2", "model.depth=1", "layer_model.width=32",
            "layer_model.depth=2", "sampler.steps=4", "layer_model.steps=4", "train.log_every=1",
            "train.warmup_steps=5", "train.batch_size=16", "train.val_every=10", "train.ckpt_every=10",
            "train.deterministic=true"]


@pytest.fixture(scope="module")
def two_stage_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("two_stage")
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        data = structured_file(tmp / "train.h5", n=64)
        val = structured_file(tmp / "val.h5", n=32, seed=1)
        res = train(load_recipe("tiny-fm-2s", SMALL_2S), data, tmp / "run", val_path=val, steps=40, device="cpu")
    finally:
        torch.set_num_threads(old)
    return tmp, res


def test_two_stage_run_learns_and_its_checkpoint_holds_both_stages(two_stage_run):
    tmp, res = two_stage_run
    assert res.completed and res.step == 40
    ck = load_checkpoint(tmp / "run")  # weights_only load
    assert ck["model_config"]["kind"] == "two_stage" and ck["layer_objective"]["kind"] == "flow"
    assert any(k.startswith("layer.") for k in ck["model"]) and any(k.startswith("voxel.") for k in ck["model"])
    assert len(ck["layer_coder"]["mean"]) == SMALL_GEO.n_layers


def test_two_stage_resume_continues_exactly(two_stage_run, tmp_path):
    tmp, _ = two_stage_run
    torch.set_num_threads(1)
    recipe = load_recipe("tiny-fm-2s", [*SMALL_2S, "train.schedule=constant"])  # lr independent of train.steps
    train(recipe, tmp / "train.h5", tmp_path / "whole", steps=40, device="cpu")
    train(recipe, tmp / "train.h5", tmp_path / "split", steps=20, device="cpu")
    train(recipe, tmp / "train.h5", tmp_path / "split", steps=40, device="cpu")  # resumes from step 20
    whole = load_checkpoint(tmp_path / "whole")["model"]
    split = load_checkpoint(tmp_path / "split")["model"]
    assert all(torch.equal(whole[k], split[k]) for k in whole)


def test_two_stage_samples_carry_the_layer_energies_of_the_first_stage(two_stage_run):
    tmp, _ = two_stage_run
    gen = Generator.load(tmp / "run", device="cpu")
    assert gen.two_stage and gen.layer_nfe() == 7  # Heun 4 steps, Euler last
    e = np.array([2e3, 1e4, 5e4, 9e4])
    y = gen.model_space(gen.conditions(e), seed=3)  # (n, V + L): voxels then layer codes
    v = SMALL_GEO.n_voxels
    assert y.shape == (4, v + SMALL_GEO.n_layers)
    target = gen.coder.layer_energies(y[:, v:], e)  # (n, L) MeV from stage 1
    showers = gen.coder.join(gen.chain.inverse(y[:, :v], e), y[:, v:], e)
    kept = per_layer(showers) > 0
    np.testing.assert_allclose(per_layer(showers)[kept], target[kept], rtol=1e-3)
    out, stats = gen.generate(e, seed=3)
    again, _ = gen.generate(e, seed=3)
    np.testing.assert_array_equal(out, again)
    assert out.shape == (4, v) and np.all(np.isfinite(out)) and np.all((out == 0) | (out >= THR))
    assert stats["layer_nfe"] == 7 and stats["nfe"] == 7


# ---- the layer model's own batch (layer_model.batch_size) -------------------------------------------------------------
def _batches(path, ram_mb: float, world: int = 1, rank: int = 0):
    from caloforge.data.reader import ShowerFile
    from caloforge.training.data import TrainBatches, build_condition_encoder, fit_batches
    from caloforge.transforms.chain import Chain

    recipe = load_recipe("tiny-fm-2s", [*SMALL_2S, f"data.ram_budget_mb={ram_mb}"])
    coder = LayerEnergyCoder(SMALL_GEO, THR).fit(fit_batches(path, 10_000, SMALL_GEO))
    chain = Chain.from_config(list(recipe.transforms))
    chain.fit(fit_batches(path, 10_000, SMALL_GEO, coder))
    return TrainBatches(path, chain, build_condition_encoder(recipe.data), recipe.data, 16, 7, rank, world,
                        SMALL_GEO, coder), coder, ShowerFile(path)


def test_layer_batches_are_rows_of_the_training_file_keyed_by_step_and_the_same_streamed(tmp_path):
    path = structured_file(tmp_path / "t.h5", n=40)
    mem, coder, f = _batches(path, ram_mb=1000)
    streamed, _, _ = _batches(path, ram_mb=1e-6)
    assert mem.in_memory and not streamed.in_memory
    with f:
        table = coder.codes(f.read(np.arange(f.n)).showers, f.energies())  # (n, L) codes of every row
    for step in (0, 1, 5):
        a, b = mem.layer_batch(step, 96), streamed.layer_batch(step, 96)
        assert a.shape == (96, 1 + SMALL_GEO.n_layers) and np.array_equal(a, b)
        # every drawn row's codes are the codes of some training shower (more rows than showers: with replacement)
        hit = (np.abs(a[:, None, 1:] - table[None]) < 1e-6).all(-1).any(-1)
        assert hit.all()
    assert not np.array_equal(mem.layer_batch(0, 96), mem.layer_batch(1, 96))
    assert np.array_equal(mem.layer_batch(3, 96), mem.layer_batch(3, 96))  # a function of the step: exact resume


def test_ddp_ranks_share_the_layer_batch_of_a_single_process(tmp_path):
    path = structured_file(tmp_path / "t.h5", n=40)
    whole = _batches(path, 1000)[0].layer_batch(4, 64)
    parts = [_batches(path, 1000, world=2, rank=r)[0].layer_batch(4, 64) for r in (0, 1)]
    assert np.array_equal(np.concatenate(parts), whole)


def test_a_layer_batch_that_does_not_split_over_accumulation_is_refused_before_any_file(tmp_path):
    path = structured_file(tmp_path / "t.h5", n=40)
    recipe = load_recipe("tiny-fm-2s", [*SMALL_2S, "train.grad_accum=2", "layer_model.batch_size=33"])
    with pytest.raises(ConfigError, match="layer_model.batch_size: expected a multiple of world size x grad_accum = 2"):
        train(recipe, path, tmp_path / "run", steps=2, device="cpu")
    assert not (tmp_path / "run").exists()


def test_the_layer_loss_is_taken_on_the_layer_batch_when_given():
    torch.manual_seed(0)
    from caloforge.training.build import build_objective

    obj = build_objective({"kind": "flow"})
    voxel = DiTConfig(grid=(3, 2, 2), cond_dim=1 + 3, patch=(1, 1, 1), dim=16, depth=1, heads=2)
    net = TwoStageNet(voxel, LayerMLPConfig(n_layers=3, cond_dim=1, width=16, depth=1), (obj, obj))
    for p in net.layer.out.parameters():  # a non-zero output, so that the layer loss depends on its inputs
        torch.nn.init.normal_(p)
    x, c = torch.randn(4, 3, 2, 2), torch.randn(4, 4)
    own = net(x, c, torch.Generator().manual_seed(1))[1]
    same = net(x, c, torch.Generator().manual_seed(1), c)[1]
    other = net(x, c, torch.Generator().manual_seed(1), torch.randn(8, 4))[1]
    assert torch.equal(own, same) and not torch.equal(own, other)
