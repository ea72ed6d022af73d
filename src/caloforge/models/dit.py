"""DiT backbone for showers on a (z, alpha, r) grid: patch tokens, adaLN-Zero transformer blocks, patch decoder.

Network call (docs/architecture.md): ``net(z (B, n_z, n_alpha, n_r), t_in (B,), cond (B, C) | None)`` returns a
tensor shaped like ``z``. ``t_in`` is whatever float the objective uses (flow time in [0, 1], EDM c_noise, ...); it is
embedded as sinusoids of ``t_in * t_scale`` (1000 by default) followed by an MLP. The options that make it CaloArt's
model exactly are described in ``caloforge.models.options``. Padded voxels are zeros in the input and are dropped
by the tokenizer's inverse, so no attention mask is needed. At initialisation the output is exactly zero.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
from torch import nn

from caloforge.errors import ConfigError
from caloforge.models.blocks import DiTBlock, FinalLayer
from caloforge.models.embeddings import (
    SPLIT_COLUMNS,
    ConditionEmbedder,
    Rope3D,
    SplitConditionEmbedder,
    TimestepEmbedder,
    sincos_3d,
)
from caloforge.models.options import INITS, MLPS, NORMS, POS_EMBEDS, QK_NORM_WEIGHTS, ROPE_LAYOUTS
from caloforge.models.tokenizer import Patcher


@dataclass(frozen=True)
class DiTConfig:
    """Everything that fixes the network's shape; JSON-able via ``dataclasses.asdict`` and ``DiTConfig(**d)``."""

    grid: tuple[int, int, int]
    patch: tuple[int, int, int]
    dim: int = 384
    depth: int = 6
    heads: int = 6
    mlp_ratio: float = 4.0
    cond_dim: int = 1
    pos_embed: str = "sincos+rope"
    norm: str = "rmsnorm"
    qk_norm: bool = True
    mlp: str = "swiglu"
    shared_modulation: bool = False
    in_channels: int = 1
    dropout: float = 0.0
    rope_theta: float = 10000.0
    cond_widths: tuple[int, int, int] | None = None  # None: one MLP over the whole condition vector
    norm_affine: bool = False
    qk_norm_weights: str = "shared"
    t_scale: float = 1000.0
    rope_layout: str = "all"
    init: str = "zero"

    def __post_init__(self):
        for name in ("grid", "patch"):
            value = getattr(self, name)
            if (
                not isinstance(value, (tuple, list))
                or len(value) != 3
                or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in value)
            ):
                raise ConfigError(
                    f"model: {name}: expected three positive integers (z, alpha, r), found {value!r}"
                )
            object.__setattr__(self, name, tuple(int(v) for v in value))
        for name, low in (("dim", 1), ("depth", 1), ("heads", 1), ("in_channels", 1), ("cond_dim", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"model: {name}: expected an integer >= {low}, found {value!r}")
        for name, allowed in (("pos_embed", POS_EMBEDS), ("norm", NORMS), ("mlp", MLPS),
                              ("qk_norm_weights", QK_NORM_WEIGHTS), ("rope_layout", ROPE_LAYOUTS), ("init", INITS)):
            if getattr(self, name) not in allowed:
                raise ConfigError(
                    f"model: {name}: expected one of {list(allowed)}, found {getattr(self, name)!r}"
                )
        if not self.mlp_ratio > 0:
            raise ConfigError(f"model: mlp_ratio: expected a number > 0, found {self.mlp_ratio!r}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"model: dropout: expected a number in [0, 1), found {self.dropout!r}")
        if not self.t_scale > 0:
            raise ConfigError(f"model: t_scale: expected a number > 0, found {self.t_scale!r}")
        if self.cond_widths is not None:
            self._check_cond_widths()
        if not self.rope_theta > 1:
            raise ConfigError(f"model: rope_theta: expected a number > 1, found {self.rope_theta!r}")
        if self.dim % self.heads:
            raise ConfigError(f"model: dim: expected a multiple of heads ({self.heads}), found {self.dim}")
        hd = self.dim // self.heads
        if "rope" in self.pos_embed and (hd % 2 or hd < 6):
            raise ConfigError(
                f"model: heads: 3-D RoPE needs an even head_dim >= 6 (two channels per axis at least), "
                f"found head_dim = dim / heads = {self.dim} / {self.heads} = {hd}"
            )
        if "sincos" in self.pos_embed and (self.dim % 2 or self.dim < 6):
            raise ConfigError(f"model: dim: 3-D sin-cos positions need an even dim >= 6, found {self.dim}")

    def _check_cond_widths(self) -> None:
        w = self.cond_widths
        if not isinstance(w, (tuple, list)) or len(w) != 3 or any(isinstance(v, bool) or not isinstance(v, int)
                                                                   or v < 1 for v in w):
            raise ConfigError(f"model: cond_widths: expected three positive integers (energy, phi, theta), found {w!r}")
        object.__setattr__(self, "cond_widths", tuple(int(v) for v in w))
        if sum(w) != self.dim:
            raise ConfigError(f"model: cond_widths: expected widths adding up to dim {self.dim}, found {list(w)}")
        if self.cond_dim not in (1, SPLIT_COLUMNS[-1][1]):
            raise ConfigError(f"model: cond_widths: separate energy/phi/theta embedders need the conditions [energy] "
                              f"or [energy, phi, theta], found {self.cond_dim} condition features")

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> DiTConfig:
        """Build from a plain dict (e.g. a checkpoint); lists become tuples, unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"model: unknown field(s) {unknown}; expected some of {sorted(known)}")
        d = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(**d)


class DiT(nn.Module):
    """Diffusion / flow-matching transformer over 3-D shower patches (see the module docstring)."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.cfg = cfg
        self.patcher = Patcher(cfg.grid, cfg.patch, cfg.in_channels)
        p = self.patcher.patch_dim
        self.x_embedder = nn.Linear(p, cfg.dim)  # == Conv3d(C, D, kernel=stride=patch) on the padded grid
        self._build_trunk(self.patcher.token_coords(), p)
        self.initialize_weights()

    def _build_trunk(self, coords: torch.Tensor, out_dim: int) -> None:
        """Everything after the patch embedding: positions for ``coords`` (T, 3), time / condition embedders,
        blocks and a final layer to ``out_dim`` features per token (shared with the layer-group DiT)."""
        cfg, d = self.cfg, self.cfg.dim
        if "sincos" in cfg.pos_embed:
            self.register_buffer("pos_embed", sincos_3d(coords, d)[None], persistent=False)  # (1, T, D)
        else:
            self.pos_embed = None
        self.rope = Rope3D(coords, cfg.head_dim, cfg.rope_theta, cfg.rope_layout) if "rope" in cfg.pos_embed else None
        self.t_embedder = TimestepEmbedder(d, t_scale=cfg.t_scale)
        if cfg.cond_dim == 0:
            self.c_embedder = None
        elif cfg.cond_widths is not None:
            self.c_embedder = SplitConditionEmbedder(cfg.cond_widths)
        else:
            self.c_embedder = ConditionEmbedder(cfg.cond_dim, d)
        self.shared_adaLN = nn.Sequential(nn.SiLU(), nn.Linear(d, 6 * d)) if cfg.shared_modulation else None
        block_args = (
            cfg.heads,
            cfg.mlp_ratio,
            cfg.norm,
            cfg.qk_norm,
            cfg.mlp,
            cfg.shared_modulation,
            cfg.dropout,
            cfg.norm_affine,
            cfg.qk_norm_weights,
        )
        self.blocks = nn.ModuleList(DiTBlock(d, *block_args) for _ in range(cfg.depth))
        self.final = FinalLayer(d, out_dim, cfg.norm, cfg.shared_modulation, cfg.norm_affine)

    def initialize_weights(self) -> None:
        """Xavier for linears; N(0, 0.02) for the embedder MLPs; the output layer at zero (the net starts at 0).
        ``init="zero"``: adaLN modulation at zero too (every block starts as the identity); ``"caloart"``: tables
        N(0, 1/D), the shared modulation N(0, 0.02), every condition-embedder linear N(0, 0.02)."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        cond = [] if self.c_embedder is None else (
            [e.mlp for e in self.c_embedder.parts] if isinstance(self.c_embedder, SplitConditionEmbedder)
            else [self.c_embedder.mlp])
        for mlp in [self.t_embedder.mlp] + cond:
            nn.init.normal_(mlp[0].weight, std=0.02)
            nn.init.normal_(mlp[2].weight, std=0.02)
        zero = [self.final.linear] + [m.adaLN[-1] for m in [*self.blocks, self.final] if hasattr(m, "adaLN")]
        if self.cfg.init == "caloart":
            for m in [*self.blocks, self.final]:
                if hasattr(m, "modulation_table"):
                    nn.init.normal_(m.modulation_table, std=self.cfg.dim ** -0.5)
            if self.shared_adaLN is not None:
                nn.init.normal_(self.shared_adaLN[-1].weight, std=0.02)
        elif self.shared_adaLN is not None:
            zero.append(self.shared_adaLN[-1])
        for layer in zero:
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def num_params(self, trainable_only: bool = True) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def forward(self, z: torch.Tensor, t_in: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        x = self.x_embedder(self.patcher.patchify(z).to(self.x_embedder.weight.dtype))  # (B, T, D)
        x = self._trunk(x, t_in, cond)  # (B, T, P)
        return self.patcher.unpatchify(x).to(z.dtype)  # (B, [C,] Z, A, R)

    def _trunk(self, x: torch.Tensor, t_in: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        """Embedded tokens (B, T, D) -> output tokens (B, T, out_dim): positions, conditioning, blocks, final."""
        b = x.shape[0]
        if self.pos_embed is not None:
            x = x + self.pos_embed.to(x.dtype)  # (B, T, D)
        c = self.t_embedder(t_in.reshape(-1).expand(b) if t_in.numel() == 1 else t_in.reshape(b))  # (B, D)
        if cond is not None:
            if self.c_embedder is None:
                raise ConfigError(
                    "model: cond_dim: the network has cond_dim = 0 but a condition tensor was passed"
                )
            if cond.shape[-1] != self.cfg.cond_dim:
                raise ConfigError(
                    f"model: cond: expected {self.cfg.cond_dim} condition features, found {cond.shape[-1]}"
                )
            c = c + self.c_embedder(cond.reshape(b, -1))  # (B, D)
        mod = c if self.shared_adaLN is None else self.shared_adaLN(c).reshape(b, 6, -1)  # (B, D) | (B, 6, D)
        for block in self.blocks:
            x = block(x, mod, self.rope)  # (B, T, D)
        return self.final(x, c)  # (B, T, out_dim)
