"""Layer-group tokenizer for irregular per-layer binnings (CaloChallenge dataset 1): flat showers <-> tokens.

Dataset 1 has a different (alpha, r) binning in every layer (photons: 5 layers, 368 voxels; pions: 7 layers, 533),
so there is no common 3-D grid to cut. Each non-empty layer becomes its own *token group*: its (n_alpha, n_r) grid is
cut into patches of (pa, pr) voxels (clipped to the layer; a layer with a single alpha bin takes radial patches of
up to pa * pr bins instead, so its tokens are as wide as the others), each axis zero-padded at its end, and every
token's features are zero-padded to the common width ``patch_dim`` = the widest patch. A (T, P) ``feature_mask``
marks real voxels; ``token_layer`` says which layer a token belongs to (for per-layer patch embeddings) and
``token_coords`` gives (layer ordinal, alpha patch, r patch) positions for sin-cos / RoPE.

Both directions are one gather / scatter with a precomputed index, and every voxel sits in exactly one token
feature, so ``unpatchify(patchify(x)) == x`` bit for bit and padding is simply dropped.
"""

from __future__ import annotations

import math

import torch

from caloforge.errors import ConfigError


def layer_patch(n_alpha: int, n_r: int, patch: tuple[int, int]) -> tuple[int, int]:
    """(pa, pr) used for one layer: clipped to the layer; a layer without alpha bins takes pa * pr radial bins."""
    pa, pr = patch
    if n_alpha == 1:
        return 1, min(n_r, pa * pr)
    return min(pa, n_alpha), min(pr, n_r)


class LayerPatcher:
    """Patchify (B, V) flat showers of an irregular layer geometry into (B, T, P) tokens and back."""

    def __init__(self, layers: tuple[tuple[int, int], ...], patch: tuple[int, int]):
        """``layers``: (n_alpha, n_r) of each non-empty layer in flat order; ``patch``: (pa, pr) >= 1."""
        if len(patch) != 2 or any(isinstance(p, bool) or int(p) != p or p < 1 for p in patch):
            raise ConfigError(f"tokenizer: patch must be two positive integers (alpha, r), got {patch!r}")
        if not layers or any(int(a) < 1 or int(r) < 1 for a, r in layers):
            raise ConfigError(f"tokenizer: layers must be non-empty (n_alpha, n_r) pairs >= 1, got {layers!r}")
        self.layers = tuple((int(a), int(r)) for a, r in layers)
        self.patch = (int(patch[0]), int(patch[1]))
        self.layer_patches = tuple(layer_patch(a, r, self.patch) for a, r in self.layers)
        self.patch_dim = max(pa * pr for pa, pr in self.layer_patches)
        self.n_voxels = sum(a * r for a, r in self.layers)
        index, layer_of, coords = [], [], []
        offset = 0
        for li, ((n_a, n_r), (pa, pr)) in enumerate(zip(self.layers, self.layer_patches)):
            for ta in range(math.ceil(n_a / pa)):
                for tr in range(math.ceil(n_r / pr)):
                    feats = [offset + a * n_r + r if a < n_a and r < n_r else -1
                             for a in range(ta * pa, (ta + 1) * pa) for r in range(tr * pr, (tr + 1) * pr)]
                    index.append(feats + [-1] * (self.patch_dim - len(feats)))
                    layer_of.append(li)
                    coords.append((li, ta, tr))
            offset += n_a * n_r
        idx = torch.tensor(index, dtype=torch.int64)  # (T, P); -1 = padding
        self.feature_mask = idx >= 0  # (T, P)
        self.gather_index = torch.where(self.feature_mask, idx, torch.full_like(idx, self.n_voxels))  # V = zero slot
        self.token_layer = torch.tensor(layer_of, dtype=torch.int64)  # (T,)
        self.token_coords = torch.tensor(coords, dtype=torch.int64)  # (T, 3)
        self._flat_pos = torch.nonzero(self.feature_mask.reshape(-1)).reshape(-1)  # (V,) positions in T*P
        self._voxel_of_pos = idx.reshape(-1)[self._flat_pos]  # (V,) which voxel each real position holds

    @classmethod
    def for_geometry(cls, geometry, patch: tuple[int, int]) -> LayerPatcher:
        """From a ``caloforge.data.geometry.Geometry`` (empty layers are skipped, as in the flat voxel order)."""
        return cls(tuple((geometry.layers[i].n_alpha, geometry.layers[i].n_r) for i in geometry.relevant_layers),
                   patch)

    @property
    def n_tokens(self) -> int:
        return int(self.gather_index.shape[0])

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    def _check_flat(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], -1) if x.dim() > 2 else x
        if x.dim() != 2 or x.shape[1] != self.n_voxels:
            raise ConfigError(f"tokenizer: input tensor: expected shape (B, {self.n_voxels}), found {tuple(x.shape)}")
        return x

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """(B, V) (or (B, 1, 1, V)) -> (B, T, P); padded features are exactly zero."""
        x = self._check_flat(x)
        padded = torch.cat([x, x.new_zeros(x.shape[0], 1)], dim=1)  # (B, V + 1); slot V is the zero pad
        return padded[:, self.gather_index.to(x.device)]  # (B, T, P)

    def unpatchify(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, T, P) -> (B, V): the exact inverse of ``patchify``; padded features are dropped."""
        if tokens.dim() != 3 or tuple(tokens.shape[1:]) != (self.n_tokens, self.patch_dim):
            raise ConfigError(f"tokenizer: tokens: expected shape (B, {self.n_tokens}, {self.patch_dim}), "
                              f"found {tuple(tokens.shape)}")
        flat = tokens.reshape(tokens.shape[0], -1)[:, self._flat_pos.to(tokens.device)]  # (B, V) in token order
        out = torch.empty_like(flat)
        out[:, self._voxel_of_pos.to(tokens.device)] = flat
        return out  # (B, V)
