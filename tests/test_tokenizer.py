"""Patch tokenizer: exact round trip, zero padding at the end of each axis, token layout equal to a Conv3d's."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from caloforge.errors import CaloforgeError
from caloforge.models.tokenizer import Patcher

triples = st.tuples(st.integers(1, 11), st.integers(1, 11), st.integers(1, 11))
patches = st.tuples(st.integers(1, 5), st.integers(1, 5), st.integers(1, 5))


def _grid_tensor(batch: int, channels: int, grid, seed: int = 0) -> torch.Tensor:
    shape = (batch, *grid) if channels == 1 else (batch, channels, *grid)
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


@settings(max_examples=60, deadline=None)
@given(grid=triples, patch=patches, batch=st.integers(1, 3), channels=st.integers(1, 2))
def test_unpatchify_inverts_patchify_for_any_grid_and_patch(grid, patch, batch, channels):
    p = Patcher(grid, patch, channels)
    x = _grid_tensor(batch, channels, grid)
    tokens = p.patchify(x)
    assert tokens.shape == (
        batch,
        math.prod(math.ceil(g / s) for g, s in zip(grid, patch)),
        channels * math.prod(patch),
    )
    assert torch.equal(p.unpatchify(tokens), x)


@settings(max_examples=40, deadline=None)
@given(grid=triples, patch=patches)
def test_token_features_follow_an_independent_index_formula_with_zero_padding(grid, patch):
    """Token (tz, ta, tr) feature (iz, ia, ir) holds voxel (tz*pz+iz, ta*pa+ia, tr*pr+ir), or 0 beyond the grid."""
    p = Patcher(grid, patch)
    x = _grid_tensor(1, 1, grid, seed=1)
    tokens = p.patchify(x)[0].numpy()  # (T, P)
    xs = x[0].numpy()
    tz, ta, tr = p.token_grid
    pz, pa, pr = patch
    expected = np.zeros((tz * ta * tr, pz * pa * pr), dtype=np.float32)
    for t in range(expected.shape[0]):
        cz, ca, cr = t // (ta * tr), (t // tr) % ta, t % tr
        for f in range(expected.shape[1]):
            iz, ia, ir = f // (pa * pr), (f // pr) % pa, f % pr
            z, a, r = cz * pz + iz, ca * pa + ia, cr * pr + ir
            if z < grid[0] and a < grid[1] and r < grid[2]:
                expected[t, f] = xs[z, a, r]
    np.testing.assert_array_equal(tokens, expected)


@settings(max_examples=40, deadline=None)
@given(grid=triples, patch=patches)
def test_valid_mask_marks_exactly_the_original_voxels(grid, patch):
    p = Patcher(grid, patch)
    valid = p.valid
    assert tuple(valid.shape) == p.padded_grid
    assert all(pg % s == 0 and pg - g < s for pg, g, s in zip(p.padded_grid, grid, patch))
    assert int(valid.sum()) == math.prod(grid)
    assert bool(valid[: grid[0], : grid[1], : grid[2]].all())
    ones_tokens = p.patchify(torch.ones(1, *grid))  # padded voxels patchify to 0, real ones to 1
    assert float(ones_tokens.sum()) == math.prod(grid)


def test_token_coords_enumerate_the_token_grid_in_token_order():
    p = Patcher((45, 16, 9), (5, 4, 3))
    coords = p.token_coords()
    assert p.token_grid == (9, 4, 3) and coords.shape == (108, 3) and coords.dtype == torch.int64
    assert coords[:4].tolist() == [[0, 0, 0], [0, 0, 1], [0, 0, 2], [0, 1, 0]]
    assert coords.max(dim=0).values.tolist() == [8, 3, 2]
    assert len({tuple(c) for c in coords.tolist()}) == 108


def test_linear_on_patches_equals_conv3d_with_kernel_equal_stride_equal_patch():
    torch.manual_seed(0)
    grid, patch, channels, dim = (7, 6, 5), (3, 4, 2), 2, 8
    p = Patcher(grid, patch, channels)
    conv = torch.nn.Conv3d(channels, dim, kernel_size=patch, stride=patch)
    x = torch.randn(2, channels, *grid)
    padded = torch.nn.functional.pad(
        x, (0, p.padded_grid[2] - 5, 0, p.padded_grid[1] - 6, 0, p.padded_grid[0] - 7)
    )
    via_conv = conv(padded).flatten(2).transpose(1, 2)  # (B, T, D)
    via_linear = p.patchify(x) @ conv.weight.reshape(dim, -1).T + conv.bias
    torch.testing.assert_close(via_linear, via_conv, rtol=1e-5, atol=1e-5)


def test_patchify_rejects_a_tensor_of_the_wrong_grid_with_one_line():
    p = Patcher((45, 16, 9), (3, 4, 3))
    with pytest.raises(CaloforgeError, match=r"expected shape \(B, 45, 16, 9\), found \(2, 45, 16, 8\)"):
        p.patchify(torch.zeros(2, 45, 16, 8))
    with pytest.raises(CaloforgeError, match="tokens"):
        p.unpatchify(torch.zeros(2, 179, 36))


@pytest.mark.parametrize("bad", [(0, 4, 3), (3, 4), (3, 4.5, 3), "343"])
def test_patch_sizes_must_be_three_positive_integers(bad):
    with pytest.raises(CaloforgeError, match="patch"):
        Patcher((45, 16, 9), bad)
