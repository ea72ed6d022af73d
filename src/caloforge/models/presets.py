"""Named DiT sizes that mirror the reference systems, stated in our (z, alpha, r) axis order.

CaloArt stores showers as (R, Phi, Z); its DS2 patch (3, 4, 3) is symmetric, its DS3 patch (R 6, Phi 10, Z 5) is
(5, 10, 6) here. Parameter counts of the anchors were computed from their configs (docs: /work/shared/docs/anchors.md):
CaloArt DS2 11.88M, DS3 27.06M. Our counts differ slightly because the condition embedder is one MLP.
"""

from __future__ import annotations

from dataclasses import replace

from caloforge.errors import ConfigError
from caloforge.models.dit import DiTConfig

DS2_GRID = (45, 16, 9)
DS3_GRID = (45, 50, 18)


def caloart_ds2(cond_dim: int = 1) -> DiTConfig:
    """CaloArt's paper DS2 model: 180 tokens, D 384, 6 blocks, APE+RoPE, RMSNorm, QK-norm, SwiGLU, PixArt sharing."""
    return DiTConfig(
        DS2_GRID,
        (3, 4, 3),
        dim=384,
        depth=6,
        heads=6,
        cond_dim=cond_dim,
        pos_embed="sincos+rope",
        norm="rmsnorm",
        qk_norm=True,
        mlp="swiglu",
        shared_modulation=True,
    )


def caloart_ds3(cond_dim: int = 1) -> DiTConfig:
    """CaloArt's DS3 candidate: 135 tokens, D 480, 6 blocks, 8 heads, per-block adaLN."""
    return DiTConfig(
        DS3_GRID,
        (5, 10, 6),
        dim=480,
        depth=6,
        heads=8,
        cond_dim=cond_dim,
        pos_embed="sincos+rope",
        norm="rmsnorm",
        qk_norm=True,
        mlp="swiglu",
        shared_modulation=False,
    )


def calodit2_ds2(cond_dim: int = 1) -> DiTConfig:
    """CaloDiT-2-like DS2 width/depth on 360 small patches (3, 2, 3); plain per-block adaLN here."""
    return DiTConfig(
        DS2_GRID,
        (3, 2, 3),
        dim=384,
        depth=6,
        heads=6,
        cond_dim=cond_dim,
        pos_embed="sincos",
        norm="rmsnorm",
        qk_norm=False,
        mlp="swiglu",
        shared_modulation=False,
    )


def calodream_ds2(cond_dim: int = 1) -> DiTConfig:
    """CaloDREAM DS2 shape model: whole-ring patches (3, 16, 1) -> 135 tokens, D 480, GELU MLP, LayerNorm."""
    return DiTConfig(
        DS2_GRID,
        (3, 16, 1),
        dim=480,
        depth=6,
        heads=6,
        cond_dim=cond_dim,
        pos_embed="sincos",
        norm="layernorm",
        qk_norm=False,
        mlp="gelu",
        shared_modulation=False,
    )


def tiny(cond_dim: int = 1) -> DiTConfig:
    """A 0.45M-parameter model on the DS2 grid (108 tokens of 5x4x3, shared modulation): minutes on 2 CPU cores."""
    return DiTConfig(
        DS2_GRID,
        (5, 4, 3),
        dim=96,
        depth=3,
        heads=4,
        cond_dim=cond_dim,
        pos_embed="sincos+rope",
        norm="rmsnorm",
        qk_norm=True,
        mlp="swiglu",
        shared_modulation=True,
    )


PRESETS = {
    "caloart-ds2": caloart_ds2,
    "caloart-ds3": caloart_ds3,
    "calodit2-ds2": calodit2_ds2,
    "calodream-ds2": calodream_ds2,
    "tiny": tiny,
}


def preset(name: str, cond_dim: int = 1, **overrides) -> DiTConfig:
    """The named preset, with any DiTConfig field overridden (e.g. ``grid=(45, 50, 18), patch=(9, 10, 6)``)."""
    if name not in PRESETS:
        raise ConfigError(f"model: preset: expected one of {sorted(PRESETS)}, found {name!r}")
    cfg = PRESETS[name](cond_dim)
    try:
        return replace(cfg, **overrides)
    except TypeError as exc:
        raise ConfigError(f"model: preset {name!r}: bad override ({exc})") from None
