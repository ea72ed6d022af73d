"""Torch float32 versions of everything generation applies around the network, so a whole generator is one module.

Mirrors of the numpy reference code (which stays the definition and is tested against these): the condition
encoding (``conditions.ConditionEncoder.encode``), every step's inverse (``steps``), the model-space clamp, the
readout threshold (``postprocess.apply_threshold``) and the two-stage layer-energy join
(``layer_coder.LayerEnergyCoder.join``). Every module is traceable (no data-dependent Python control flow), so it
exports to TorchScript and ONNX. Incident energies ``e`` are (B, 1) in MeV.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from caloforge.errors import ConfigError
from caloforge.transforms import steps as np_steps


def _buffer(values) -> torch.Tensor:
    return torch.as_tensor(np.asarray(values, dtype=np.float32))


# ---- conditions -----------------------------------------------------------------------------------------------------
class EncodeConditions(nn.Module):
    """Raw conditions (B, R) = [E MeV, (phi, theta rad), (detector one-hot K + 1)] -> the encoder's (B, C)."""

    def __init__(self, encoder):
        super().__init__()
        lo, hi = encoder.energy_range_mev
        self.log_lo, self.log_span = math.log10(lo), math.log10(hi / lo)
        self.angles, self.n_onehot = encoder.angles, (encoder.n_detectors + 1 if encoder.n_detectors else 0)

    @property
    def raw_dim(self) -> int:
        return 1 + (2 if self.angles else 0) + self.n_onehot

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        cols = [(torch.log10(raw[:, :1]) - self.log_lo) / self.log_span]
        if self.angles:
            phi, theta = raw[:, 1:2], raw[:, 2:3]
            cols += [torch.sin(phi), torch.cos(phi), theta / math.pi]
        if self.n_onehot:
            cols.append(raw[:, self.raw_dim - self.n_onehot:])
        return torch.cat(cols, dim=1)


# ---- inverse steps --------------------------------------------------------------------------------------------------
class _Inverse(nn.Module):
    def __init__(self, fn, **buffers):
        super().__init__()
        self.fn = fn
        for name, value in buffers.items():
            self.register_buffer(name, value, persistent=False)

    def forward(self, y: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        return self.fn(self, y, e)


def below_to_zero(x: torch.Tensor, value: float) -> torch.Tensor:
    """Voxels strictly below ``value`` become 0 (the official evaluation's threshold)."""
    return torch.where(x < value, torch.zeros_like(x), x)


def inverse_module(step: np_steps.Step) -> nn.Module:
    """The torch inverse of one numpy step (same parameters, float32)."""
    kind = step.kind
    if kind == "scale":
        factor = float(step.factor)
        return _Inverse(lambda m, y, e: y / factor)
    if kind == "divide_by_energy":
        k = float(step.k)
        return _Inverse(lambda m, y, e: y * (k * e))
    if kind == "log":
        eps = float(step.eps)
        return _Inverse(lambda m, y, e: torch.clamp_min(torch.exp(y) - eps, 0.0))
    if kind == "power":
        inv = 1.0 / float(step.p)
        return _Inverse(lambda m, y, e: torch.pow(torch.clamp_min(y, 0.0), inv))
    if kind == "logit":
        a = float(step.alpha)
        return _Inverse(lambda m, y, e: torch.clamp((torch.sigmoid(y) - a) / (1 - 2 * a), 0.0, 1.0))
    if kind == "standardise":
        if step.mean is None:
            raise ConfigError("step 'standardise': not fitted; the checkpoint holds no statistics")
        return _Inverse(lambda m, y, e: y * m.std + m.mean, mean=_buffer(step.mean), std=_buffer(step.std))
    if kind == "noise":
        level = float(step.level)
        return _Inverse(lambda m, y, e: below_to_zero(y, level))
    if kind == "threshold":
        value = float(step.value)
        return _Inverse(lambda m, y, e: below_to_zero(y, value))
    if kind == "":  # the identity base step
        return _Inverse(lambda m, y, e: y)
    raise ConfigError(f"step {kind!r}: no torch inverse is defined for this step kind")


class ChainInverse(nn.Module):
    """Model space (B, V) -> showers (B, V) in MeV: the chain's steps inverted in reverse order."""

    def __init__(self, chain):
        super().__init__()
        self.steps = nn.ModuleList(inverse_module(step) for step in reversed(chain.steps))

    def forward(self, y: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        for step in self.steps:
            y = step(y, e)
        return y


class Clamp(nn.Module):
    """Per-column clamp to [lo, hi] (model-space range of the training data; an ODE step can overshoot)."""

    def __init__(self, lo, hi):
        super().__init__()
        self.register_buffer("lo", _buffer(lo), persistent=False)
        self.register_buffer("hi", _buffer(hi), persistent=False)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return torch.minimum(torch.maximum(y, self.lo), self.hi)


# ---- two-stage join -------------------------------------------------------------------------------------------------
class LayerJoin(nn.Module):
    """Stage-2 shapes (B, V) and stage-1 codes (B, L) -> showers (B, V) MeV, as ``LayerEnergyCoder.join``.

    Layer sums are a matmul with a (V, L) one-hot matrix, so the module is a fixed graph for any regular mesh.
    """

    def __init__(self, coder):
        super().__init__()
        geo = coder.geometry
        if not geo.is_regular:
            raise ConfigError(f"geometry {geo.name}: the torch layer join needs a regular mesh")
        onehot = np.zeros((geo.n_voxels, geo.n_layers), dtype=np.float32)
        onehot[np.arange(geo.n_voxels), geo.voxel_layer] = 1.0
        self.register_buffer("onehot", torch.from_numpy(onehot), persistent=False)  # (V, L)
        for name in ("mean", "std", "lo", "hi"):
            self.register_buffer(name, _buffer(getattr(coder, name)), persistent=False)  # (L,)
        self.threshold, self.max_dep, self.alpha = coder.threshold_mev, coder.max_dep, coder.alpha
        self.normalise, self.n_layers, self.per_layer = coder.normalise, geo.n_layers, geo.n_voxels // geo.n_layers

    def clip_codes(self, codes: torch.Tensor) -> torch.Tensor:
        return torch.minimum(torch.maximum(codes, self.lo), self.hi)

    def layer_energies(self, codes: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """Codes (B, L) -> layer energies (B, L) MeV (the u-parametrisation inverted with a product loop)."""
        y = self.clip_codes(codes) * self.std + self.mean
        u = torch.clamp((torch.sigmoid(y) - self.alpha) / (1.0 - 2.0 * self.alpha), 0.0, 1.0)
        # 1 - u from sigmoid(-y): no float32 cancellation when u is close to 1
        one_minus_u = torch.clamp((torch.sigmoid(-y) - self.alpha) / (1.0 - 2.0 * self.alpha), 0.0, 1.0)
        total = u[:, :1] * (self.max_dep * e)  # (B, 1)
        remaining = [torch.ones_like(total)]
        for i in range(1, self.n_layers):
            remaining.append(remaining[-1] * one_minus_u[:, i:i + 1])
        rem = torch.cat(remaining, dim=1)  # (B, L)
        fractions = torch.cat([rem[:, :-1] * u[:, 1:], rem[:, -1:]], dim=1)
        return fractions * total

    def _denormalise(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        sums = x @ self.onehot  # (B, L)
        positive = sums > 0
        factor = torch.where(positive, target / torch.where(positive, sums, torch.ones_like(sums)),
                             torch.zeros_like(sums))
        return x * (factor @ self.onehot.t())

    def forward(self, shapes: torch.Tensor, codes: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        target = self.layer_energies(codes, e)  # (B, L)
        x = torch.clamp_min(shapes, 0.0)
        if self.normalise:
            x = self._denormalise(x, target)
        b = x.shape[0]
        offsets = torch.arange(self.n_layers, device=x.device) * self.per_layer  # (L,)
        best = x.reshape(b, self.n_layers, self.per_layer).argmax(dim=2) + offsets  # (B, L) flat voxel index
        for _ in range(3):
            x = self._denormalise(below_to_zero(x, self.threshold), target)
        x = below_to_zero(x, self.threshold)
        lost = ((x @ self.onehot) == 0) & (target >= self.threshold)  # (B, L)
        current = x.gather(1, best)
        return x.scatter(1, best, torch.where(lost, target, current))
