"""Transformer pieces of the DiT: norms, attention, MLPs, adaLN-Zero block and final layer.

Every block is conditioned through adaptive LayerNorm: a conditioning vector c (B, D) gives per-sample shift, scale
and gate. Either each block owns a ``Linear(D -> 6D)`` (DiT), or one global ``Linear(D -> 6D)`` is shared and each
block adds its own learned (6, D) table (PixArt), which saves 5/6 of the modulation weights.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from caloforge.models.embeddings import Rope3D


class RMSNorm(nn.Module):
    """x / rms(x) * gamma, computed in float32 (bf16 sums of squares lose precision), returned in x's dtype."""

    def __init__(self, dim: int, eps: float = 1e-6, affine: bool = True, heads: int = 0):
        super().__init__()
        self.eps = eps
        shape = (heads, 1, dim) if heads else (dim,)  # heads: one weight vector per head of a (B, H, T, hd) input
        self.weight = nn.Parameter(torch.ones(shape)) if affine else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        out = xf * torch.rsqrt(xf.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        if self.weight is not None:
            out = out * self.weight.float()
        return out.to(x.dtype)


def make_norm(kind: str, dim: int, affine: bool = False) -> nn.Module:
    """Pre-norm; by default without its own weights (adaLN supplies shift and scale), ``affine`` adds them."""
    if kind == "rmsnorm":
        return RMSNorm(dim, affine=affine)
    return nn.LayerNorm(dim, elementwise_affine=affine, bias=False, eps=1e-6)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x (B, T, D), shift/scale (B, D) -> x * (1 + scale) + shift (one fused addcmul, no temporaries)."""
    return torch.addcmul(shift[:, None], x, 1 + scale[:, None])  # (B, T, D)


class Attention(nn.Module):
    """Multi-head self-attention with optional QK-RMSNorm and 3-D RoPE, via scaled_dot_product_attention."""

    def __init__(self, dim: int, heads: int, qk_norm: bool, dropout: float = 0.0, qk_norm_weights: str = "shared"):
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.dropout = dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        per_head = heads if qk_norm_weights == "per_head" else 0
        self.q_norm = RMSNorm(self.head_dim, heads=per_head) if qk_norm else nn.Identity()
        self.k_norm = RMSNorm(self.head_dim, heads=per_head) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, rope: Rope3D | None = None) -> torch.Tensor:
        b, t, d = x.shape  # (B, T, D)
        qkv = self.qkv(x).reshape(b, t, 3, self.heads, self.head_dim)  # (B, T, 3, H, hd)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # 3 x (B, H, T, hd)
        q, k = self.q_norm(q), self.k_norm(k)  # (B, H, T, hd)
        if rope is not None:
            q, k = rope(q), rope(k)  # (B, H, T, hd)
        p = self.dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=p)  # (B, H, T, hd)
        out = out.transpose(1, 2).reshape(b, t, d)  # (B, T, D)
        return self.proj(out)  # (B, T, D)


class GeluMlp(nn.Module):
    """Linear -> GELU(tanh) -> Linear (the DiT/ViT MLP)."""

    def __init__(self, dim: int, mlp_ratio: float, dropout: float = 0.0):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.drop(F.gelu(self.fc1(x), approximate="tanh")))  # (B, T, D)


def swiglu_hidden(dim: int, mlp_ratio: float) -> int:
    """int(2/3 * mlp_ratio * dim) rounded up to a multiple of 8: the SwiGLU width with the GELU MLP's parameters."""
    return 8 * math.ceil(int(2 / 3 * mlp_ratio * dim) / 8)


class SwiGLU(nn.Module):
    """(SiLU(x W1) * x W2) W3 with hidden width ``swiglu_hidden``."""

    def __init__(self, dim: int, mlp_ratio: float, dropout: float = 0.0):
        super().__init__()
        hidden = swiglu_hidden(dim, mlp_ratio)
        self.w12 = nn.Linear(dim, 2 * hidden)
        self.w3 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, g = self.w12(x).chunk(2, dim=-1)  # 2 x (B, T, hidden)
        return self.w3(self.drop(F.silu(a) * g))  # (B, T, D)


class DiTBlock(nn.Module):
    """Pre-norm attention + MLP with adaLN-Zero modulation (gates start at zero, so the block starts as identity)."""

    def __init__(
        self,
        dim: int,
        heads: int,
        mlp_ratio: float,
        norm: str,
        qk_norm: bool,
        mlp: str,
        shared_modulation: bool,
        dropout: float = 0.0,
        norm_affine: bool = False,
        qk_norm_weights: str = "shared",
    ):
        super().__init__()
        self.norm1 = make_norm(norm, dim, norm_affine)
        self.attn = Attention(dim, heads, qk_norm, dropout, qk_norm_weights)
        self.norm2 = make_norm(norm, dim, norm_affine)
        self.mlp = SwiGLU(dim, mlp_ratio, dropout) if mlp == "swiglu" else GeluMlp(dim, mlp_ratio, dropout)
        self.shared_modulation = shared_modulation
        if shared_modulation:
            # added to the global (B, 6, D) modulation; zeros keep the block an identity at init
            self.modulation_table = nn.Parameter(torch.zeros(6, dim))
        else:
            self.adaLN = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))

    def modulation(self, c: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """c is (B, D) for a per-block adaLN, or the shared (B, 6, D) modulation; returns 6 x (B, D)."""
        if self.shared_modulation:
            return (c + self.modulation_table[None].to(c.dtype)).unbind(1)  # 6 x (B, D)
        return self.adaLN(c).chunk(6, dim=-1)  # 6 x (B, D)

    def forward(self, x: torch.Tensor, c: torch.Tensor, rope: Rope3D | None = None) -> torch.Tensor:
        sh_a, sc_a, g_a, sh_m, sc_m, g_m = self.modulation(c)  # 6 x (B, D)
        x = torch.addcmul(x, g_a[:, None], self.attn(modulate(self.norm1(x), sh_a, sc_a), rope))  # (B, T, D)
        x = torch.addcmul(x, g_m[:, None], self.mlp(modulate(self.norm2(x), sh_m, sc_m)))  # (B, T, D)
        return x


class FinalLayer(nn.Module):
    """adaLN-modulated norm, then a zero-initialised Linear(D -> patch_dim): the untrained net outputs exactly 0."""

    def __init__(self, dim: int, patch_dim: int, norm: str, shared_modulation: bool, norm_affine: bool = False):
        super().__init__()
        self.norm = make_norm(norm, dim, norm_affine)
        self.linear = nn.Linear(dim, patch_dim)
        self.shared_modulation = shared_modulation
        if shared_modulation:
            self.modulation_table = nn.Parameter(torch.zeros(2, dim))  # PixArt: table + c, no Linear
        else:
            self.adaLN = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        if self.shared_modulation:
            shift, scale = (self.modulation_table[None].to(c.dtype) + c[:, None]).unbind(1)  # 2 x (B, D)
        else:
            shift, scale = self.adaLN(c).chunk(2, dim=-1)  # 2 x (B, D)
        return self.linear(modulate(self.norm(x), shift, scale))  # (B, T, P)
