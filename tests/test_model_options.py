"""Model options are typed at the door (a misspelt one is one line, exit 2, before any data is read) and the
CaloArt-exact options make caloart-ds2 CaloArt's network (parameter count, layout of norms, RoPE, embedders)."""

from __future__ import annotations

import pytest
import torch

from caloforge.cli.main import main
from caloforge.data.geometry import Geometry
from caloforge.training.build import build_network, network_config
from caloforge.training.data import build_condition_encoder
from caloforge.training.recipe_io import load_recipe


@pytest.mark.parametrize("override, words", [
    ("model.norm=rmsnrm", ["model.norm", "'rmsnrm'", "rmsnorm"]),
    ("model.pos_embed=rope3d", ["model.pos_embed", "'rope3d'"]),
    ("model.rope_layout=half", ["model.rope_layout", "'half'"]),
    ("model.cond_widths=[100,100,100]", ["cond_widths", "dim 64"]),
    ("model.heads=32", ["RoPE", "head_dim"]),  # only the DiTConfig knows: built at the door too
])
def test_a_bad_model_option_exits_2_with_one_line_before_any_data_is_read(tmp_path, capsys, monkeypatch, override,
                                                                          words):
    from caloforge.data import reader

    def no_reading(*a, **k):
        raise AssertionError("the data file was opened before the recipe was checked")

    monkeypatch.setattr(reader.ShowerFile, "__init__", no_reading)
    data = tmp_path / "train.h5"
    data.write_bytes(b"not read")
    rc = main(["train", "--recipe", "tiny-fm", "--data", str(data), "--out", str(tmp_path / "run"), override])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert all(w in err for w in words), err
    assert not (tmp_path / "run").exists()


def _net(recipe_name: str, *overrides: str):
    recipe = load_recipe(recipe_name, list(overrides))
    geo = Geometry.official("2")
    return build_network(network_config(recipe, geo, build_condition_encoder(recipe.data).dim))


def test_caloart_ds2_has_caloarts_parameter_count_and_layout():
    net = _net("caloart-ds2")
    assert net.num_params() == 11_883_012
    assert net.patcher.n_tokens == 180
    assert [p.mlp[2].out_features for p in net.c_embedder.parts] == [192, 96, 96]
    assert net.blocks[0].norm1.weight.shape == (384,) and net.final.norm.weight.shape == (384,)
    assert net.blocks[0].attn.q_norm.weight.shape == (6, 1, 64)  # one weight vector per head
    assert net.t_embedder.t_scale == 1.0
    # RoPE: 3 x 20 channels rotated, the last 4 of 64 not (angle 0)
    assert net.rope.cos.shape == (180, 32)
    assert torch.all(net.rope.cos[:, 30:] == 1) and not torch.all(net.rope.cos[:, :30] == 1)
    # CaloArt's init: modulation tables N(0, 1/D), so the blocks are not identities, but the output starts at 0
    table = net.blocks[0].modulation_table
    assert 0.5 / 384 ** 0.5 < float(table.detach().std()) < 2 / 384 ** 0.5
    out = net(torch.randn(2, 45, 16, 9), torch.rand(2), torch.rand(2, 1))
    assert torch.count_nonzero(out) == 0


def test_caloforge_defaults_remain_available_and_differ_as_documented():
    own = _net("caloart-ds2", "model.cond_widths=null", "model.norm_affine=false", "model.qk_norm_weights=shared",
               "model.t_scale=1000.0", "model.rope_layout=all", "model.init=zero")
    assert own.num_params() == 11_966_244
    assert torch.all(own.blocks[0].modulation_table == 0) and not torch.all(own.rope.cos[:, 30:] == 1)


def test_split_embedders_take_angles_when_the_data_has_them():
    net = _net("caloart-ds2", "data.conditions=[energy,phi,theta]")
    assert net.cfg.cond_dim == 4 and net.num_params() == 11_883_012
    x, t = torch.randn(3, 45, 16, 9), torch.rand(3)
    c = torch.rand(3, 4)
    emb = net.c_embedder(c)
    emb_no_angles = net.c_embedder(c[:, :1])
    assert emb.shape == (3, 384)
    assert torch.equal(emb[:, :192], emb_no_angles[:, :192]) and not torch.equal(emb[:, 192:], emb_no_angles[:, 192:])
    assert net(x, t, c).shape == x.shape
