"""Patch tokenizer: cut a (z, alpha, r) shower grid into non-overlapping 3-D patches and back.

A transformer sees a shower as a sequence of patches. Patch sizes need not divide the grid: each axis is zero-padded
*at the end* up to a multiple of its patch size. Alpha is padded with zeros too, not circularly: circular padding
would copy real energy into the padding, so the inverse would have two candidate values for the copied voxels;
zero padding keeps ``unpatchify`` an exact inverse that simply drops the padded positions (``valid`` marks them).

Token order is the CaloChallenge voxel order at patch level: r fastest, then alpha, then z. Inside a token the
features are ordered (channel, z, alpha, r), the layout of a ``Conv3d`` weight, so a ``Linear`` on flattened patches
equals a ``Conv3d`` with kernel = stride = patch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from caloforge.errors import ConfigError


def _positive_triple(name: str, value) -> tuple[int, int, int]:
    try:
        out = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"tokenizer: {name} must be three positive integers (z, alpha, r), got {value!r}"
        ) from None
    if len(out) != 3 or any(v < 1 for v in out) or any(int(v) != v for v in value):
        raise ConfigError(f"tokenizer: {name} must be three positive integers (z, alpha, r), got {value!r}")
    return out  # type: ignore[return-value]


@dataclass(frozen=True)
class Patcher:
    """Patchify / unpatchify a (B, [C,] Z, A, R) grid with patches of (pz, pa, pr) voxels; see the module docstring."""

    grid: tuple[int, int, int]
    patch: tuple[int, int, int]
    channels: int = 1
    token_grid: tuple[int, int, int] = field(init=False)
    padded_grid: tuple[int, int, int] = field(init=False)

    def __post_init__(self):
        grid = _positive_triple("grid", self.grid)
        patch = _positive_triple("patch", self.patch)
        if int(self.channels) < 1:
            raise ConfigError(f"tokenizer: channels must be >= 1, got {self.channels!r}")
        tokens = tuple(math.ceil(g / p) for g, p in zip(grid, patch))
        object.__setattr__(self, "grid", grid)
        object.__setattr__(self, "patch", patch)
        object.__setattr__(self, "channels", int(self.channels))
        object.__setattr__(self, "token_grid", tokens)
        object.__setattr__(self, "padded_grid", tuple(t * p for t, p in zip(tokens, patch)))

    @property
    def n_tokens(self) -> int:
        return math.prod(self.token_grid)

    @property
    def patch_dim(self) -> int:
        """Features per token: channels * pz * pa * pr."""
        return self.channels * math.prod(self.patch)

    @property
    def needs_padding(self) -> bool:
        return self.padded_grid != self.grid

    @property
    def valid(self) -> torch.Tensor:
        """(Zp, Ap, Rp) bool: True on voxels of the original grid, False on padding."""
        mask = torch.zeros(self.padded_grid, dtype=torch.bool)
        mask[: self.grid[0], : self.grid[1], : self.grid[2]] = True
        return mask

    def token_coords(self) -> torch.Tensor:
        """(T, 3) int64 patch-grid coordinates (z, alpha, r) of each token, in token order."""
        tz, ta, tr = self.token_grid
        zz, aa, rr = torch.meshgrid(torch.arange(tz), torch.arange(ta), torch.arange(tr), indexing="ij")
        return torch.stack([zz, aa, rr], dim=-1).reshape(-1, 3)  # (T, 3)

    def _with_channels(self, x: torch.Tensor) -> torch.Tensor:
        """Accept (B, Z, A, R) when channels == 1, else (B, C, Z, A, R); return (B, C, Z, A, R)."""
        given = tuple(x.shape)
        if self.channels == 1 and x.dim() == 4:
            x = x.unsqueeze(1)
        if x.dim() != 5 or tuple(x.shape[1:]) != (self.channels, *self.grid):
            expected = self.grid if self.channels == 1 else (self.channels, *self.grid)
            raise ConfigError(
                f"tokenizer: input tensor: expected shape (B, {', '.join(map(str, expected))}), found {given}"
            )
        return x

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """(B, [C,] Z, A, R) -> (B, T, P): zero-pad each axis at its end, then flatten each patch."""
        x = self._with_channels(x)  # (B, C, Z, A, R)
        (z, a, r), (zp, ap, rp) = self.grid, self.padded_grid
        if self.needs_padding:
            x = F.pad(x, (0, rp - r, 0, ap - a, 0, zp - z))  # (B, C, Zp, Ap, Rp)
        b, c = x.shape[:2]
        (tz, ta, tr), (pz, pa, pr) = self.token_grid, self.patch
        x = x.reshape(b, c, tz, pz, ta, pa, tr, pr)  # (B, C, tz, pz, ta, pa, tr, pr)
        x = x.permute(0, 2, 4, 6, 1, 3, 5, 7)  # (B, tz, ta, tr, C, pz, pa, pr)
        return x.reshape(b, self.n_tokens, self.patch_dim)  # (B, T, P)

    def unpatchify(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, T, P) -> (B, [C,] Z, A, R): exact inverse of ``patchify`` on the original grid (padding dropped)."""
        if tokens.dim() != 3 or tuple(tokens.shape[1:]) != (self.n_tokens, self.patch_dim):
            raise ConfigError(
                f"tokenizer: tokens: expected shape (B, {self.n_tokens}, {self.patch_dim}), found {tuple(tokens.shape)}"
            )
        b = tokens.shape[0]
        (tz, ta, tr), (pz, pa, pr) = self.token_grid, self.patch
        x = tokens.reshape(b, tz, ta, tr, self.channels, pz, pa, pr)  # (B, tz, ta, tr, C, pz, pa, pr)
        x = x.permute(0, 4, 1, 5, 2, 6, 3, 7)  # (B, C, tz, pz, ta, pa, tr, pr)
        x = x.reshape(b, self.channels, *self.padded_grid)  # (B, C, Zp, Ap, Rp)
        z, a, r = self.grid
        x = x[:, :, :z, :a, :r]  # (B, C, Z, A, R)
        return x[:, 0] if self.channels == 1 else x  # (B, [C,] Z, A, R)
