"""Embeddings for the DiT: time and condition embedders, 3-D sin-cos absolute positions and 3-D rotary positions.

Both position schemes split their width into three parts, one per patch-grid axis (z, alpha, r): the alpha and r
parts get ``2 * (width // 6)`` channels each and z (the longest axis of a calorimeter shower) takes the rest.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def axis_split(width: int) -> tuple[int, int, int]:
    """Channels given to (z, alpha, r) out of ``width``; each part is even (needed for sin/cos pairs)."""
    side = 2 * (width // 6)
    return (width - 2 * side, side, side)


def sinusoidal_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """(N,) float -> (N, dim): [cos(t f_i), sin(t f_i)] with f_i geometric from 1 to 1/max_period (DiT convention)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]  # (N, half)
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)  # (N, 2 * half)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)  # (N, dim)
    return emb


class TimestepEmbedder(nn.Module):
    """t_in (B,) -> (B, D). t_in is multiplied by ``t_scale`` (1000) first, so flow times in [0, 1] and EDM c_noise
    values both spread over the range the 10000-period sinusoids resolve (the DiT/DDPM convention of integer steps)."""

    def __init__(self, dim: int, freq_dim: int = 256, t_scale: float = 1000.0):
        super().__init__()
        self.freq_dim = freq_dim
        self.t_scale = t_scale
        self.mlp = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t_in: torch.Tensor) -> torch.Tensor:
        freq = sinusoidal_embedding(t_in * self.t_scale, self.freq_dim)  # (B, F) float32
        return self.mlp(freq.to(self.mlp[0].weight.dtype))  # (B, D)


class ConditionEmbedder(nn.Module):
    """Condition vector (B, C) -> (B, D), added to the time embedding to form the conditioning vector c."""

    def __init__(self, cond_dim: int, dim: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(cond_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, cond: torch.Tensor) -> torch.Tensor:
        return self.mlp(cond.to(self.mlp[0].weight.dtype))  # (B, D)


#: Columns of the ConditionEncoder layout [energy, sin phi, cos phi, theta / pi] each split embedder reads.
SPLIT_COLUMNS = ((0, 1), (1, 3), (3, 4))


class SplitConditionEmbedder(nn.Module):
    """Separate MLPs for energy (1 column), phi (sin, cos) and theta, outputs concatenated to (B, sum(widths)).

    A condition vector with the energy column only (data without angles) gets zeros for the angles, so the
    network is the same whether or not a data set records them (CaloArt feeds zeros on CaloChallenge data)."""

    def __init__(self, widths: tuple[int, int, int]):
        super().__init__()
        self.parts = nn.ModuleList(ConditionEmbedder(hi - lo, w) for (lo, hi), w in zip(SPLIT_COLUMNS, widths))

    def forward(self, cond: torch.Tensor) -> torch.Tensor:
        if cond.shape[-1] < SPLIT_COLUMNS[-1][1]:  # energy only: the angle columns are zeros
            cond = torch.cat([cond, cond.new_zeros(cond.shape[0], SPLIT_COLUMNS[-1][1] - cond.shape[-1])], dim=-1)
        return torch.cat([emb(cond[:, lo:hi]) for emb, (lo, hi) in zip(self.parts, SPLIT_COLUMNS)], dim=-1)


def sincos_1d(pos: torch.Tensor, dim: int, base: float = 10000.0) -> torch.Tensor:
    """(T,) positions -> (T, dim) with dim even: [sin(p w_i), cos(p w_i)], w_i = base^(-2i/dim)."""
    omega = base ** (-torch.arange(dim // 2, dtype=torch.float64) * 2.0 / dim)  # (dim/2,)
    args = pos.double()[:, None] * omega[None]  # (T, dim/2)
    return torch.cat([torch.sin(args), torch.cos(args)], dim=-1)  # (T, dim)


def sincos_3d(coords: torch.Tensor, dim: int) -> torch.Tensor:
    """(T, 3) integer (z, alpha, r) coordinates -> (T, dim) float32 fixed absolute position embedding."""
    parts = axis_split(dim)
    emb = [sincos_1d(coords[:, i], d) for i, d in enumerate(parts) if d > 0]  # 3 x (T, d_i)
    return torch.cat(emb, dim=-1).float()  # (T, dim)


class Rope3D(nn.Module):
    """Rotary position embedding over three axes: head_dim is split in (z, alpha, r) parts, and each pair of
    channels in an axis part is rotated by ``coord * theta^(-2i/d)`` so that q_m . k_n depends on m - n only.
    ``layout="all"`` rotates every channel (``axis_split``); ``"equal"`` gives each axis 2 * (head_dim // 6)
    channels and leaves the remaining pairs unrotated (CaloArt's layout)."""

    def __init__(self, coords: torch.Tensor, head_dim: int, theta: float = 10000.0, layout: str = "all"):
        super().__init__()
        angles = []
        split = axis_split(head_dim) if layout == "all" else (2 * (head_dim // 6),) * 3
        for axis, d in enumerate(split):
            if d == 0:
                continue
            freqs = theta ** (-torch.arange(d // 2, dtype=torch.float64) * 2.0 / d)  # (d/2,)
            angles.append(coords[:, axis].double()[:, None] * freqs[None])  # (T, d/2)
        angle = torch.cat(angles, dim=-1)  # (T, rotated/2)
        pad = head_dim // 2 - angle.shape[1]  # layout "equal": the last channel pairs are not rotated (angle 0)
        angle = torch.cat([angle, angle.new_zeros(angle.shape[0], pad)], dim=-1)  # (T, head_dim/2)
        self.register_buffer("cos", angle.cos().float(), persistent=False)  # (T, head_dim/2)
        self.register_buffer("sin", angle.sin().float(), persistent=False)  # (T, head_dim/2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, H, T, hd) -> same shape; rotation in float32, result in x's dtype."""
        half = x.shape[-1] // 2
        xf = x.float()
        x1, x2 = xf[..., :half], xf[..., half:]  # (B, H, T, hd/2) each
        cos, sin = self.cos, self.sin  # (T, hd/2)
        out = torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)  # (B, H, T, hd)
        return out.to(x.dtype)
