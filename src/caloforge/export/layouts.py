"""The two input/output layouts an exported generator offers, as thin modules around ``GeneratorModule``.

- ``calochallenge``: inputs ``noise`` (B, noise_dim), ``energy`` (B, 1) MeV, then ``phi``/``theta`` (B, 1) rad for an
  angle-conditioned model and ``detector`` (B, K + 1) one-hot for a multi-detector one; output ``showers`` (B, V) MeV
  in the CaloChallenge flat order (layer z outermost, then alpha, then r fastest).
- ``par04``: the call Geant4 11.4 makes for CaloDiT-2 (Par04OnnxInference / Par04TorchInference): ONE input
  (B, 8) = [E GeV, phi rad, theta rad, geometry one-hot of 5]; the noise is drawn inside the graph; ONE output
  (B, R * A * Z) in GeV with r outermost, then phi, then z innermost (flat index iR*A*Z + iPhi*Z + iZ). A 1-D input
  of 8 values (Par04TorchInference) is read as one row. A model without angle (detector) conditions ignores those
  columns; a detector-conditioned model must have exactly 5 one-hot slots.
"""

from __future__ import annotations

import torch
from torch import nn

from caloforge.errors import CaloforgeError

PAR04_INPUT = 8
PAR04_SLOTS = ("Par04SiW", "Par04SciPb", "ODD", "FCCeeCLD", "new detector")
GEV = 1000.0  # MeV per GeV


def calochallenge_to_par04(showers: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
    """(B, Z*A*R) CaloChallenge order -> (B, R*A*Z) Par04 order (z innermost). Works on numpy arrays too."""
    z, a, r = grid
    return showers.reshape(-1, z, a, r).transpose(1, 3).reshape(-1, r * a * z) if isinstance(showers, torch.Tensor) \
        else showers.reshape(-1, z, a, r).transpose(0, 3, 2, 1).reshape(-1, r * a * z)


def par04_to_calochallenge(cells, grid: tuple[int, int, int]):
    """(B, R*A*Z) Par04 order -> (B, Z*A*R) CaloChallenge order (the exact inverse). Torch or numpy."""
    z, a, r = grid
    return cells.reshape(-1, r, a, z).transpose(1, 3).reshape(-1, z * a * r) if isinstance(cells, torch.Tensor) \
        else cells.reshape(-1, r, a, z).transpose(0, 3, 2, 1).reshape(-1, z * a * r)


class CaloChallengeLayout(nn.Module):
    """forward(noise, energy, [phi, theta], [detector]) -> showers (B, V) MeV."""

    def __init__(self, module):
        super().__init__()
        self.gen = module

    def input_names(self) -> list[str]:
        enc = self.gen.encode
        return ["noise", "energy"] + (["phi", "theta"] if enc.angles else []) + (["detector"] if enc.n_onehot else [])

    def example_inputs(self, batch: int) -> tuple[torch.Tensor, ...]:
        enc = self.gen.encode
        g = torch.Generator().manual_seed(0)
        out = [torch.randn(batch, self.gen.noise_dim, generator=g), 10 ** (3 + 3 * torch.rand(batch, 1, generator=g))]
        if enc.angles:
            out += [torch.rand(batch, 1, generator=g) * 6.28 - 3.14, 0.87 + 1.4 * torch.rand(batch, 1, generator=g)]
        if enc.n_onehot:
            out.append(torch.eye(enc.n_onehot)[torch.arange(batch) % enc.n_onehot])
        return tuple(out)

    def forward(self, noise: torch.Tensor, *conditions: torch.Tensor) -> torch.Tensor:
        return self.gen(noise, torch.cat(conditions, dim=1))


class Par04Layout(nn.Module):
    """forward(x (B, 8) or (8,)) -> (B, R*A*Z) GeV in Par04 cell order; noise drawn in the graph."""

    def __init__(self, module, grid: tuple[int, int, int]):
        super().__init__()
        enc = module.encode
        if enc.n_onehot and enc.n_onehot != len(PAR04_SLOTS):
            raise CaloforgeError(f"export --layout par04: the model has {enc.n_onehot} detector slots; the Par04 "
                                 f"input carries a one-hot of exactly {len(PAR04_SLOTS)}")
        self.gen, self.grid = module, tuple(grid)

    def input_names(self) -> list[str]:
        return ["conditions"]

    def example_inputs(self, batch: int) -> tuple[torch.Tensor, ...]:
        x = torch.zeros(batch, PAR04_INPUT)
        x[:, 0] = torch.linspace(1.0, 1000.0, batch)
        x[:, 1], x[:, 2], x[:, 3] = 0.3, 1.57, 1.0
        return (x,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(-1, PAR04_INPUT)
        enc = self.gen.encode
        cols = [x[:, :1] * GEV] + ([x[:, 1:3]] if enc.angles else []) + ([x[:, 3:]] if enc.n_onehot else [])
        noise = torch.randn_like(x[:, :1].expand(-1, self.gen.noise_dim))  # (B, noise_dim), fresh every call
        showers = self.gen(noise, torch.cat(cols, dim=1)) / GEV  # (B, V) GeV, CaloChallenge order
        return calochallenge_to_par04(showers, self.grid)
