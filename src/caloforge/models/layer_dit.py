"""DiT over layer-group tokens, for irregular geometries (CaloChallenge dataset 1); see ``layer_tokenizer``.

Network call as for the grid DiT, but on flat showers: ``net(z (B, [1, 1,] V), t_in (B,), cond (B, C) | None)``
returns a tensor like ``z`` (``cfg.grid`` is ``(1, 1, V)``, so the trainer's and generator's ``view(-1, *grid)``
stay as they are). Each layer has
its own patch embedding (a ``(P, D)`` matrix and bias per layer, padded features meet zero inputs) and its own
output projection; positions are (layer ordinal, alpha patch, r patch) for sin-cos and RoPE. The transformer blocks,
timestep / condition embedders and adaLN-Zero initialisation are the grid DiT's, so the untrained net outputs 0.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from caloforge.errors import ConfigError
from caloforge.models.dit import DiT, DiTConfig
from caloforge.models.layer_tokenizer import LayerPatcher

KIND = "layer_dit"


@dataclass(frozen=True)
class LayerDiTConfig(DiTConfig):
    """A ``DiTConfig`` plus ``layers``, the (n_alpha, n_r) of the non-empty layers; ``patch`` is (1, pa, pr) and
    ``grid`` the flat shape (1, 1, V) a shower has for this network (use ``LayerDiTConfig.for_layers``)."""

    layers: tuple[tuple[int, int], ...] = ()

    @classmethod
    def for_layers(cls, layers, **kwargs) -> LayerDiTConfig:
        layers = tuple(tuple(int(v) for v in ly) for ly in layers)
        return cls(grid=(1, 1, sum(a * r for a, r in layers)), layers=layers, **kwargs)

    def __post_init__(self):
        super().__post_init__()
        layers = tuple(tuple(int(v) for v in ly) for ly in self.layers)
        object.__setattr__(self, "layers", layers)
        if not layers or any(len(ly) != 2 or min(ly) < 1 for ly in layers):
            raise ConfigError(f"model: layers: expected (n_alpha, n_r) pairs >= 1, found {self.layers!r}")
        if self.grid != (1, 1, sum(a * r for a, r in layers)):
            raise ConfigError(f"model: grid: a layer-group DiT sees flat showers (1, 1, V), found {list(self.grid)}")
        if self.patch[0] != 1:
            raise ConfigError(f"model: patch: an irregular geometry is tokenised layer by layer, so the z patch must "
                              f"be 1; expected [1, alpha, r], found {list(self.patch)}")
        if self.in_channels != 1:
            raise ConfigError(f"model: in_channels: the layer-group DiT takes one channel, found {self.in_channels}")

    def to_dict(self) -> dict:
        return {"kind": KIND, **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict) -> LayerDiTConfig:
        d = {k: tuple(tuple(ly) for ly in v) if k == "layers" else v for k, v in d.items() if k != "kind"}
        return super().from_dict(d)


class LayerDiT(DiT):
    """Layer-group DiT (see the module docstring): the grid DiT's trunk behind per-layer embeddings and heads."""

    def __init__(self, cfg: LayerDiTConfig):
        nn.Module.__init__(self)  # not DiT.__init__: the tokenizer and the patch embedding differ
        self.cfg = cfg
        self.patcher = LayerPatcher(cfg.layers, cfg.patch[1:])
        p, n_layers = self.patcher.patch_dim, self.patcher.n_layers
        self.register_buffer("token_layer", self.patcher.token_layer.clone(), persistent=False)  # (T,)
        self.embed_weight = nn.Parameter(torch.empty(n_layers, p, cfg.dim))  # per-layer patch embedding
        self.embed_bias = nn.Parameter(torch.zeros(n_layers, cfg.dim))
        self._build_trunk(self.patcher.token_coords, n_layers * p)  # one output head per layer
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """The grid DiT's initialisation, plus Xavier per layer over the real fan-in of its patches."""
        super().initialize_weights()
        real = self.patcher.feature_mask.float()  # (T, P)
        for layer in range(self.patcher.n_layers):
            fan_in = int(real[self.patcher.token_layer == layer][0].sum())
            bound = (6.0 / (fan_in + self.cfg.dim)) ** 0.5
            nn.init.uniform_(self.embed_weight.data[layer], -bound, bound)
        nn.init.zeros_(self.embed_bias)

    def forward(self, z: torch.Tensor, t_in: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        b = z.shape[0]
        tokens = self.patcher.patchify(z).to(self.embed_weight.dtype)  # (B, T, P)
        w, bias = self.embed_weight[self.token_layer], self.embed_bias[self.token_layer]  # (T, P, D), (T, D)
        x = torch.einsum("btp,tpd->btd", tokens, w) + bias  # (B, T, D)
        out = self._trunk(x, t_in, cond).reshape(b, x.shape[1], self.patcher.n_layers, -1)  # (B, T, L, P)
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
    cfg = voxel_config(cfg)
    return LayerDiT(cfg) if isinstance(cfg, LayerDiTConfig) else DiT(cfg)
