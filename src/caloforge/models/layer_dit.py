"""DiT over layer-group tokens, for irregular geometries (CaloChallenge dataset 1); see ``layer_tokenizer``.

Network call as for the grid DiT, but on flat showers: ``net(z (B, V), t_in (B,), cond (B, C) | None) -> (B, V)``
(``cfg.grid`` is ``(V,)``, so the trainer's and generator's ``view(-1, *grid)`` give flat tensors). Each layer has
its own patch embedding (a ``(P, D)`` matrix and bias per layer, padded features meet zero inputs) and its own
output projection; positions are (layer ordinal, alpha patch, r patch) for sin-cos and RoPE. The transformer blocks,
timestep / condition embedders and adaLN-Zero initialisation are the grid DiT's, so the untrained net outputs 0.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
from torch import nn

from caloforge.errors import ConfigError
from caloforge.models.blocks import DiTBlock, FinalLayer
from caloforge.models.dit import DiTConfig
from caloforge.models.embeddings import ConditionEmbedder, Rope3D, TimestepEmbedder, sincos_3d
from caloforge.models.layer_tokenizer import LayerPatcher

KIND = "layer_dit"


@dataclass(frozen=True)
class LayerDiTConfig:
    """Shape of a layer-group DiT; ``layers`` are (n_alpha, n_r) of the non-empty layers, ``patch`` (1, pa, pr)."""

    layers: tuple[tuple[int, int], ...]
    patch: tuple[int, int, int]
    dim: int = 64
    depth: int = 2
    heads: int = 4
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

    def __post_init__(self):
        layers = tuple(tuple(int(v) for v in ly) for ly in self.layers)
        object.__setattr__(self, "layers", layers)
        if not layers or any(len(ly) != 2 or min(ly) < 1 for ly in layers):
            raise ConfigError(f"model: layers: expected (n_alpha, n_r) pairs >= 1, found {self.layers!r}")
        if tuple(self.patch)[:1] != (1,):
            raise ConfigError(f"model: patch: an irregular geometry is tokenised layer by layer, so the z patch must "
                              f"be 1; expected [1, alpha, r], found {list(self.patch)}")
        if self.in_channels != 1:
            raise ConfigError(f"model: in_channels: the layer-group DiT takes one channel, found {self.in_channels}")
        common = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "layers"}
        bounding = (len(layers), max(a for a, _ in layers), max(r for _, r in layers))
        checked = DiTConfig(grid=bounding, **common)  # the shared field checks (dims, heads, RoPE, norms)
        object.__setattr__(self, "patch", checked.patch)

    @property
    def grid(self) -> tuple[int]:
        """The flat shape one shower has for this network: (V,)."""
        return (sum(a * r for a, r in self.layers),)

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads

    def to_dict(self) -> dict:
        return {"kind": KIND, **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict) -> LayerDiTConfig:
        d = {k: v for k, v in d.items() if k != "kind"}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"model: unknown field(s) {unknown}; expected some of {sorted(known)}")
        d = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(**d)


class LayerDiT(nn.Module):
    """Layer-group DiT (see the module docstring)."""

    def __init__(self, cfg: LayerDiTConfig):
        super().__init__()
        self.cfg = cfg
        self.patcher = LayerPatcher(cfg.layers, cfg.patch[1:])
        d, p, n_layers = cfg.dim, self.patcher.patch_dim, self.patcher.n_layers
        self.register_buffer("token_layer", self.patcher.token_layer.clone(), persistent=False)  # (T,)
        self.embed_weight = nn.Parameter(torch.empty(n_layers, p, d))  # per-layer patch embedding
        self.embed_bias = nn.Parameter(torch.zeros(n_layers, d))
        coords = self.patcher.token_coords  # (T, 3)
        if "sincos" in cfg.pos_embed:
            self.register_buffer("pos_embed", sincos_3d(coords, d)[None], persistent=False)  # (1, T, D)
        else:
            self.pos_embed = None
        self.rope = Rope3D(coords, cfg.head_dim, cfg.rope_theta) if "rope" in cfg.pos_embed else None
        self.t_embedder = TimestepEmbedder(d)
        self.c_embedder = ConditionEmbedder(cfg.cond_dim, d) if cfg.cond_dim > 0 else None
        self.shared_adaLN = nn.Sequential(nn.SiLU(), nn.Linear(d, 6 * d)) if cfg.shared_modulation else None
        args = (cfg.heads, cfg.mlp_ratio, cfg.norm, cfg.qk_norm, cfg.mlp, cfg.shared_modulation, cfg.dropout)
        self.blocks = nn.ModuleList(DiTBlock(d, *args) for _ in range(cfg.depth))
        self.final = FinalLayer(d, n_layers * p, cfg.norm, cfg.shared_modulation)  # one output head per layer
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """As the grid DiT: Xavier linears, N(0, 0.02) embedder MLPs, adaLN modulation and output at zero."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        real = self.patcher.feature_mask.float()  # (T, P)
        for layer in range(self.patcher.n_layers):  # Xavier over the real fan-in of each layer's patches
            fan_in = int(real[self.patcher.token_layer == layer][0].sum())
            bound = (6.0 / (fan_in + self.cfg.dim)) ** 0.5
            nn.init.uniform_(self.embed_weight.data[layer], -bound, bound)
        for mlp in [self.t_embedder.mlp] + ([self.c_embedder.mlp] if self.c_embedder is not None else []):
            nn.init.normal_(mlp[0].weight, std=0.02)
            nn.init.normal_(mlp[2].weight, std=0.02)
        zero = [self.final.linear] + [m.adaLN[-1] for m in [*self.blocks, self.final] if hasattr(m, "adaLN")]
        if self.shared_adaLN is not None:
            zero.append(self.shared_adaLN[-1])
        for layer in zero:
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def num_params(self, trainable_only: bool = True) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def forward(self, z: torch.Tensor, t_in: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        b = z.shape[0]
        tokens = self.patcher.patchify(z).to(self.embed_weight.dtype)  # (B, T, P)
        w, bias = self.embed_weight[self.token_layer], self.embed_bias[self.token_layer]  # (T, P, D), (T, D)
        x = torch.einsum("btp,tpd->btd", tokens, w) + bias  # (B, T, D)
        if self.pos_embed is not None:
            x = x + self.pos_embed.to(x.dtype)
        c = self.t_embedder(t_in.reshape(-1).expand(b) if t_in.numel() == 1 else t_in.reshape(b))  # (B, D)
        if cond is not None:
            if self.c_embedder is None or cond.shape[-1] != self.cfg.cond_dim:
                raise ConfigError(f"model: cond: expected {self.cfg.cond_dim} condition features, "
                                  f"found {cond.shape[-1]}")
            c = c + self.c_embedder(cond.reshape(b, -1))
        mod = c if self.shared_adaLN is None else self.shared_adaLN(c).reshape(b, 6, -1)
        for block in self.blocks:
            x = block(x, mod, self.rope)  # (B, T, D)
        out = self.final(x, c).reshape(b, x.shape[1], self.patcher.n_layers, -1)  # (B, T, L, P)
        idx = self.token_layer.view(1, -1, 1, 1).expand(b, -1, 1, out.shape[-1])  # (B, T, 1, P)
        out = out.gather(2, idx).squeeze(2)  # (B, T, P): each token's own layer head
        return self.patcher.unpatchify(out).to(z.dtype).reshape(z.shape)  # like z


def voxel_config(d: dict | object):
    """A voxel-network config from its dict: ``LayerDiTConfig`` when ``kind`` is layer_dit, else ``DiTConfig``."""
    if isinstance(d, (DiTConfig, LayerDiTConfig)):
        return d
    return LayerDiTConfig.from_dict(d) if d.get("kind") == KIND else DiTConfig.from_dict(d)


def voxel_network(cfg: dict | object) -> nn.Module:
    """The voxel network a config (or its dict) describes: a grid ``DiT`` or a ``LayerDiT``."""
    from caloforge.models.dit import DiT

    cfg = voxel_config(cfg)
    return LayerDiT(cfg) if isinstance(cfg, LayerDiTConfig) else DiT(cfg)
