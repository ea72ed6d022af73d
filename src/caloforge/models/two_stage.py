"""Two-stage networks (CaloDREAM): a small MLP for the layer-energy codes and a DiT for layer-normalised showers.

``LayerMLP`` is a residual MLP with adaLN-style conditioning on (time, incident conditions): the 45 codes of a DS2
shower are too few for attention to pay. ``TwoStageNet`` holds both networks and computes both losses in one
``forward`` so that DDP sees a single forward per backward; at sampling the generator calls ``layer`` and ``voxel``
directly. The voxel DiT is conditioned on ``[incident conditions, layer codes]``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
from torch import nn

from caloforge.errors import ConfigError
from caloforge.models.embeddings import ConditionEmbedder, TimestepEmbedder


@dataclass(frozen=True)
class LayerMLPConfig:
    n_layers: int  # width of the data vector (codes per shower)
    cond_dim: int  # incident conditions only
    width: int = 256
    depth: int = 4

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> LayerMLPConfig:
        known = {f.name for f in fields(cls)}
        if set(d) - known:
            raise ConfigError(f"layer model: unknown field(s) {sorted(set(d) - known)}; expected {sorted(known)}")
        return cls(**d)


class _ResBlock(nn.Module):
    """x + MLP(LayerNorm(x) * (1 + scale) + shift), with scale/shift/gate from the conditioning vector."""

    def __init__(self, width: int):
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False)
        self.mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.SiLU(), nn.Linear(2 * width, width))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(width, 3 * width))
        nn.init.zeros_(self.ada[-1].weight)
        nn.init.zeros_(self.ada[-1].bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale, gate = self.ada(c).chunk(3, dim=-1)  # (B, W) each
        return x + gate * self.mlp(self.norm(x) * (1 + scale) + shift)


class LayerMLP(nn.Module):
    """net(z (B, L), t_in (B,), cond (B, C)) -> (B, L); starts at output 0 like the DiT (adaLN-Zero gates)."""

    def __init__(self, cfg: LayerMLPConfig):
        super().__init__()
        self.cfg = cfg
        w = cfg.width
        self.inp = nn.Linear(cfg.n_layers, w)
        self.t_embedder = TimestepEmbedder(w)
        self.c_embedder = ConditionEmbedder(cfg.cond_dim, w) if cfg.cond_dim > 0 else None
        self.blocks = nn.ModuleList(_ResBlock(w) for _ in range(cfg.depth))
        self.out_norm = nn.LayerNorm(w)
        self.out = nn.Linear(w, cfg.n_layers)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, z: torch.Tensor, t_in: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        b = z.shape[0]
        c = self.t_embedder(t_in.reshape(-1).expand(b) if t_in.numel() == 1 else t_in.reshape(b))  # (B, W)
        if self.c_embedder is not None:
            if cond is None or cond.shape[-1] != self.cfg.cond_dim:
                found = None if cond is None else cond.shape[-1]
                raise ConfigError(f"layer model: cond: expected {self.cfg.cond_dim} condition features, found {found}")
            c = c + self.c_embedder(cond)
        x = self.inp(z.to(self.inp.weight.dtype))  # (B, W)
        for block in self.blocks:
            x = block(x, c)
        return self.out(self.out_norm(x)).to(z.dtype)  # (B, L)


class TwoStageNet(nn.Module):
    """Both stages; ``forward(x, cond, generator)`` returns (voxel loss, layer loss) for one training batch.

    ``cond`` is ``[incident conditions (C), layer codes (L)]``: the codes are the layer model's data and, with the
    conditions, the voxel model's condition (teacher forcing; at sampling they come from the layer model).
    """

    def __init__(self, voxel_cfg, layer_cfg: LayerMLPConfig, objectives: tuple | None = None):
        """``voxel_cfg``: a ``DiTConfig`` (regular mesh) or a ``LayerDiTConfig`` (irregular layers, dataset 1)."""
        from caloforge.models.layer_dit import voxel_network

        super().__init__()
        if voxel_cfg.cond_dim != layer_cfg.cond_dim + layer_cfg.n_layers:
            raise ConfigError(f"two-stage model: the voxel model's cond_dim {voxel_cfg.cond_dim} must equal the "
                              f"conditions {layer_cfg.cond_dim} + layer codes {layer_cfg.n_layers}")
        self.voxel = voxel_network(voxel_cfg)
        self.layer = LayerMLP(layer_cfg)
        # (voxel objective, layer objective): needed by forward (training) only; a tuple, so not part of the state
        self.objectives = tuple(objectives) if objectives is not None else None

    @property
    def cfg(self) -> dict:
        return {"kind": "two_stage", "voxel": self.voxel.cfg.to_dict(), "layer": self.layer.cfg.to_dict()}

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def forward(self, x: torch.Tensor, cond: torch.Tensor, generator: torch.Generator | None = None,
                layer_batch: torch.Tensor | None = None):
        """``layer_batch`` (b', C + L): the layer model's own batch (``layer_model.batch_size``); default ``cond``."""
        if self.objectives is None:
            raise ConfigError("two-stage model: built without objectives; pass objectives=(voxel, layer) to train it")
        voxel_obj, layer_obj = self.objectives
        n_cond = self.layer.cfg.cond_dim
        lc = cond if layer_batch is None else layer_batch
        layer_loss = layer_obj.loss(self.layer, lc[:, n_cond:], lc[:, :n_cond], generator=generator)
        voxel_loss = voxel_obj.loss(self.voxel, x, cond, generator=generator)
        return voxel_loss, layer_loss
