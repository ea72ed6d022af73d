"""DiT backbone: shapes under every option, adaLN-Zero start, gradient flow, RoPE algebra, presets, bf16, config."""

from __future__ import annotations

import itertools
import json
from dataclasses import asdict, replace

import pytest
import torch

from caloforge.data.geometry import Geometry
from caloforge.errors import ConfigError
from caloforge.models import DiT, DiTConfig, Patcher
from caloforge.models.blocks import RMSNorm, swiglu_hidden
from caloforge.models.embeddings import Rope3D, axis_split, sincos_3d
from caloforge.training.build import recipe_dit_config

SMALL = DiTConfig(grid=(7, 6, 5), patch=(3, 4, 2), dim=24, depth=2, heads=2, cond_dim=3)


def _perturb_zero_parameters(model: torch.nn.Module, seed: int = 0) -> None:
    """Give the zero-initialised (adaLN-Zero, output) parameters random values so every path carries signal."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():
                p.add_(0.1 * torch.randn(p.shape, generator=g))


def _inputs(cfg: DiTConfig, batch: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    shape = (batch, *cfg.grid) if cfg.in_channels == 1 else (batch, cfg.in_channels, *cfg.grid)
    z = torch.randn(shape, generator=g)
    t = torch.rand(batch, generator=g)
    cond = torch.randn(batch, cfg.cond_dim, generator=g) if cfg.cond_dim else None
    return z, t, cond


OPTIONS = list(
    itertools.product(
        ["sincos", "rope", "sincos+rope", "none"], ["layernorm", "rmsnorm"], ["gelu", "swiglu"], [False, True]
    )
)


@pytest.mark.parametrize("pos_embed,norm,mlp,shared", OPTIONS)
@pytest.mark.parametrize("patch", [(3, 4, 2), (7, 3, 5)], ids=["padded", "dividing"])
def test_output_has_the_input_shape_and_is_exactly_zero_at_init(pos_embed, norm, mlp, shared, patch):
    cfg = replace(
        SMALL, patch=patch, pos_embed=pos_embed, norm=norm, mlp=mlp, shared_modulation=shared, qk_norm=shared
    )
    model = DiT(cfg)
    z, t, cond = _inputs(cfg)
    out = model(z, t, cond)
    assert out.shape == z.shape and out.dtype == z.dtype
    assert torch.equal(out, torch.zeros_like(z))
    _perturb_zero_parameters(model)
    out = model(z, t, cond)
    assert out.shape == z.shape and torch.isfinite(out).all() and out.abs().min() > 0


def test_multichannel_input_keeps_its_channel_axis():
    cfg = replace(SMALL, in_channels=2)
    model = DiT(cfg)
    _perturb_zero_parameters(model)
    z, t, cond = _inputs(cfg)
    assert z.shape == (3, 2, 7, 6, 5) and model(z, t, cond).shape == z.shape


@pytest.mark.parametrize("shared", [False, True])
def test_gradients_reach_every_parameter_once_zero_init_layers_are_perturbed(shared):
    model = DiT(replace(SMALL, shared_modulation=shared))
    _perturb_zero_parameters(model)
    z, t, cond = _inputs(SMALL)
    model(z, t, cond).pow(2).mean().backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert dead == []


@pytest.mark.parametrize("shared", [False, True])
def test_adamw_training_from_init_moves_every_parameter_within_three_steps(shared):
    """adaLN-Zero is not a dead start: the output layer moves first, then gates, then everything behind them."""
    torch.manual_seed(0)
    model = DiT(replace(SMALL, shared_modulation=shared))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    z, t, cond = _inputs(SMALL)
    target = torch.randn_like(z)
    for _ in range(3):
        opt.zero_grad()
        (model(z, t, cond) - target).pow(2).mean().backward()
        opt.step()
    unchanged = [n for n, p in model.named_parameters() if torch.equal(p, before[n])]
    assert unchanged == []


def test_condition_and_time_change_the_output_and_none_condition_is_accepted():
    model = DiT(SMALL)
    _perturb_zero_parameters(model)
    z, t, cond = _inputs(SMALL)
    base = model(z, t, cond)
    assert not torch.allclose(base, model(z, t, cond + 1.0))
    assert not torch.allclose(base, model(z, t + 0.01, cond))
    assert model(z, t, None).shape == z.shape
    scalar_t = model(z, torch.tensor(0.3), cond)
    torch.testing.assert_close(scalar_t, model(z, torch.full((3,), 0.3), cond))


def test_wrong_condition_width_is_a_one_line_config_error():
    model = DiT(SMALL)
    z, t, _ = _inputs(SMALL)
    with pytest.raises(ConfigError, match="expected 3 condition features, found 2"):
        model(z, t, torch.zeros(3, 2))


def test_same_seed_gives_identical_weights_and_outputs():
    outs = []
    for _ in range(2):
        torch.manual_seed(123)
        model = DiT(SMALL)
        _perturb_zero_parameters(model, seed=7)
        outs.append(model(*_inputs(SMALL)))
    assert torch.equal(outs[0], outs[1])
    torch.manual_seed(124)
    other = DiT(SMALL)
    assert not torch.equal(other.x_embedder.weight, model.x_embedder.weight)


def _rope_for_coords(coords: torch.Tensor, head_dim: int = 12) -> Rope3D:
    return Rope3D(coords, head_dim)


def test_rope_preserves_the_norm_of_every_head_vector():
    coords = Patcher((45, 16, 9), (3, 4, 3)).token_coords()
    rope = _rope_for_coords(coords)
    x = torch.randn(2, 3, len(coords), 12)
    torch.testing.assert_close(rope(x).norm(dim=-1), x.norm(dim=-1), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(rope(x), x)  # it does rotate
    torch.testing.assert_close(rope(x)[:, :, 0], x[:, :, 0])  # coordinate (0, 0, 0) is the identity


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_rope_dot_product_depends_only_on_the_coordinate_difference_along_each_axis(axis):
    n = 9
    coords = torch.zeros(n, 3, dtype=torch.int64)
    coords[:, axis] = torch.arange(n)
    rope = _rope_for_coords(coords)
    g = torch.Generator().manual_seed(axis)
    same_q, same_k = torch.randn(2, 1, 1, 1, 12, generator=g).expand(
        2, 1, 1, n, 12
    )  # one vector at every position
    q, k = rope(same_q)[0, 0], rope(same_k)[0, 0]  # (n, hd) each
    dots = q @ k.T  # (n, n): dots[m, j] = q_m . k_j
    for shift in range(-n + 1, n):
        diagonal = torch.diagonal(dots, offset=shift)
        torch.testing.assert_close(diagonal, diagonal[:1].expand_as(diagonal), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(torch.diagonal(dots, 0)[:1], torch.diagonal(dots, 1)[:1])


def test_axis_split_and_sincos_positions_distinguish_every_token():
    assert (
        axis_split(384) == (128, 128, 128) and axis_split(64) == (24, 20, 20) and axis_split(8) == (4, 2, 2)
    )
    coords = Patcher((45, 16, 9), (3, 4, 3)).token_coords()
    emb = sincos_3d(coords, 48)
    assert emb.shape == (180, 48) and emb.abs().max() <= 1.0
    assert torch.cdist(emb, emb).add(torch.eye(180)).min() > 1e-3


def test_rmsnorm_gives_unit_rms_and_keeps_bf16_dtype():
    x = 5 * torch.randn(4, 10, 32)
    y = RMSNorm(32)(x)
    torch.testing.assert_close(y.pow(2).mean(-1), torch.ones(4, 10), rtol=1e-4, atol=1e-4)
    assert RMSNorm(32)(x.bfloat16()).dtype == torch.bfloat16


def test_swiglu_hidden_width_is_two_thirds_of_the_mlp_rounded_to_eight():
    assert (
        swiglu_hidden(384, 4.0) == 1024 and swiglu_hidden(480, 4.0) == 1280 and swiglu_hidden(100, 4.0) == 272
    )


def test_caloart_ds2_recipe_has_the_reference_token_count_and_parameters():
    """CaloArt's DS2 model counts 11,883,012 parameters (computed from its config, docs/anchors.md)."""
    model = DiT(recipe_dit_config("caloart-ds2", cond_dim=4))
    assert model.patcher.n_tokens == 180 and model.patcher.patch_dim == 36
    assert model.num_params() == 11_883_012


def test_recipe_token_counts_and_tiny_size():
    expected = {("caloart-ds3", "3"): 135, ("calodit2-edm-ds2", "2"): 360, ("tiny-fm", "2"): 108}
    for (name, ds), tokens in expected.items():
        cfg = recipe_dit_config(name, Geometry.official(ds))
        assert Patcher(cfg.grid, cfg.patch).n_tokens == tokens
    assert DiT(recipe_dit_config("tiny-fm")).num_params() < 500_000
    with pytest.raises(ConfigError, match="no such recipe"):
        recipe_dit_config("caloart-ds9")


def test_bf16_autocast_runs_and_stays_close_to_float32():
    torch.manual_seed(0)
    model = DiT(SMALL)
    _perturb_zero_parameters(model)
    z, t, cond = _inputs(SMALL)
    ref = model(z, t, cond)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        out = model(z, t, cond)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    assert (out - ref).norm() / ref.norm() < 0.05


def test_model_compiles_without_graph_breaks():
    model = DiT(replace(SMALL, depth=1))
    _perturb_zero_parameters(model)
    z, t, cond = _inputs(SMALL)
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(compiled(z, t, cond), model(z, t, cond), rtol=1e-4, atol=1e-5)


def test_config_round_trips_through_json():
    cfg = recipe_dit_config("caloart-ds3", Geometry.official("3"), cond_dim=4)
    back = DiTConfig.from_dict(json.loads(json.dumps(asdict(cfg))))
    assert back == cfg and DiTConfig(**asdict(cfg)) == cfg
    with pytest.raises(ConfigError, match="unknown field"):
        DiTConfig.from_dict({**asdict(cfg), "width": 3})


@pytest.mark.parametrize(
    "change,message",
    [
        ({"dim": 25}, "dim: expected a multiple of heads"),
        ({"dim": 20, "heads": 4}, "3-D RoPE needs an even head_dim >= 6"),
        ({"pos_embed": "learned"}, "pos_embed: expected one of"),
        ({"norm": "batchnorm"}, "norm: expected one of"),
        ({"patch": (3, 0, 2)}, "patch: expected three positive integers"),
        ({"depth": 0}, "depth: expected an integer >= 1"),
        ({"dropout": 1.5}, "dropout"),
    ],
)
def test_invalid_configs_raise_one_line_config_errors(change, message):
    with pytest.raises(ConfigError, match=message) as info:
        replace(SMALL, **change)
    assert "\n" not in str(info.value)


def test_dropout_is_active_in_training_and_off_in_eval():
    torch.manual_seed(0)
    model = DiT(replace(SMALL, dropout=0.5))
    _perturb_zero_parameters(model)
    z, t, cond = _inputs(SMALL)
    model.train()
    assert not torch.equal(model(z, t, cond), model(z, t, cond))
    model.eval()
    assert torch.equal(model(z, t, cond), model(z, t, cond))
