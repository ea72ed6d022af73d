"""A compact 3-D ResNet-18-like classifier for regular meshes (the CaloChallenge 'cls-resnet' idea).

Input rows are ``[log10 E_inc, voxels...]``; voxels are reshaped to ``(1, n_z, n_alpha, n_r)``. BasicBlocks
[2, 2, 2, 2] with planes [32, 64, 64, 128], a 7x7x7 stride-2 stem and a max-pool, adaptive average pooling, then a
linear head that also sees BatchNorm1d(log10 E_inc): the energy condition is what makes the test conditional.
Our own implementation of the published architecture description (spec section 4.4).
"""

from __future__ import annotations

import torch
from torch import nn


class BasicBlock3d(nn.Module):
    """Two 3x3x3 convolutions with a residual connection (1x1x1 projection when the shape changes)."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv3d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm3d(c_out)
        self.conv2 = nn.Conv3d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm3d(c_out)
        self.skip = (
            nn.Sequential(nn.Conv3d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm3d(c_out))
            if stride != 1 or c_in != c_out
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(h)) + self.skip(x))


class ShowerResNet(nn.Module):
    """ResNet-18-like 3-D classifier returning one logit per shower."""

    def __init__(self, grid_shape: tuple[int, int, int], planes=(32, 64, 64, 128), blocks=(2, 2, 2, 2)):
        super().__init__()
        self.grid_shape = tuple(int(v) for v in grid_shape)
        self.stem = nn.Sequential(
            nn.Conv3d(1, planes[0], 7, stride=2, padding=3, bias=False),
            nn.BatchNorm3d(planes[0]),
            nn.ReLU(),
            nn.MaxPool3d(3, stride=2, padding=1),
        )
        stages, c_in = [], planes[0]
        for i, (c, n) in enumerate(zip(planes, blocks)):
            for j in range(n):
                # Padded convolutions keep size-1 axes valid, so small grids (n_r = 9) need no special case.
                stages.append(BasicBlock3d(c_in, c, stride=2 if (j == 0 and i > 0) else 1))
                c_in = c
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.energy_norm = nn.BatchNorm1d(1)
        self.head = nn.Linear(c_in + 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        log_e = x[:, :1]  # (B, 1)
        vox = x[:, 1:].reshape(-1, 1, *self.grid_shape)  # (B, 1, n_z, n_alpha, n_r)
        h = self.pool(self.stages(self.stem(vox))).flatten(1)  # (B, C)
        return self.head(torch.cat([h, self.energy_norm(log_e)], dim=1))  # (B, 1)
