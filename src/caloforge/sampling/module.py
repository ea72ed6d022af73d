"""The whole generator as one ``nn.Module``: (noise, raw conditions) -> showers (B, V) in MeV, float32.

Inside, in order: condition encoding, (two-stage) the layer model's sampler and the clip of its codes, the voxel
model's sampler, the model-space clamp, the inverse transform chain, then the readout threshold (one-stage) or the
layer-energy join (two-stage). The samplers are registry solvers run for a fixed step count on constant tensor time
grids, so the loop unrolls into a fixed graph when traced (TorchScript, ONNX). Reject-and-redraw is not inside:
it stays in Python around the module (``sampling.generator``).

Inputs:
- ``noise`` (B, noise_dim) standard normal: the voxel prior (prod(grid)), then the layer prior (L, two-stage), then,
  for stochastic solvers only, one draw per step for the voxel and the layer sampler. ``noise_layout()`` says where.
- ``conditions`` (B, R) raw: [E MeV, (phi, theta rad if the model is angle-conditioned), (detector one-hot K + 1)].
"""

from __future__ import annotations

import torch
from torch import nn

from caloforge.generative.samplers.registry import get_solver
from caloforge.transforms.torch_ops import ChainInverse, Clamp, EncodeConditions, LayerJoin, below_to_zero


class _Stage(nn.Module):
    """One network with its objective and a fixed-step registry solver."""

    def __init__(self, net, objective, solver: str, steps: int, shape: tuple[int, ...]):
        super().__init__()
        self.net, self.objective, self.shape = net, objective, tuple(shape)
        self.solver_name = objective.resolve_solver(solver)
        self.steps = objective.resolve_steps(self.solver_name, steps)
        own = self.solver_name in objective.own_solvers
        self.solver = objective.own_solver(self.solver_name) if own else get_solver(self.solver_name)
        self.ts = objective.time_grid(self.steps)  # constant float64 grid, baked into a traced graph
        self.size = 1
        for n in self.shape:
            self.size *= n

    @property
    def step_draws(self) -> int:
        """Noise draws per sample a stochastic solver consumes (one per step but the last)."""
        return self.steps - 1 if self.solver.stochastic else 0

    def forward(self, prior: torch.Tensor, cond: torch.Tensor, step_noise=None) -> torch.Tensor:
        b = prior.shape[0]
        x = self.objective.prior(prior.reshape(b, *self.shape), self.ts)
        draw = None
        if self.solver.stochastic:
            draw = (lambda i: step_noise[:, i * self.size:(i + 1) * self.size].reshape(b, *self.shape)) \
                if isinstance(step_noise, torch.Tensor) else step_noise
        return self.solver.fn(self.objective.bind(self.net, cond), x, self.ts, draw).reshape(b, self.size)


class GeneratorModule(nn.Module):
    """See the module docstring; built by ``Generator.module(solver, steps, layer_steps)``."""

    def __init__(self, gen, solver: str | None = None, steps: int | None = None, layer_steps: int | None = None):
        super().__init__()
        solver, steps = gen.solver_steps(solver, steps)
        self.encode = EncodeConditions(gen.encoder)
        self.voxel = _Stage(gen.voxel_net, gen.objective, solver, steps, gen.grid)
        self.n_voxels = self.voxel.size
        self.layer = self.join = None
        if gen.two_stage:
            l_solver, l_steps = gen.layer_solver_steps(layer_steps)
            self.layer = _Stage(gen.net.layer, gen.layer_objective, l_solver, l_steps, (gen.coder.n_layers,))
            self.join = LayerJoin(gen.coder)
        self.clamp = Clamp(*gen.model_range) if gen.model_range is not None else None
        self.inverse = ChainInverse(gen.chain)
        self.threshold = float(gen.threshold_mev)

    # ---- layout ---------------------------------------------------------------------------------------------------
    @property
    def raw_condition_dim(self) -> int:
        return self.encode.raw_dim

    def noise_layout(self) -> dict[str, tuple[int, int]]:
        """name -> (start, stop) columns of the flat noise input."""
        parts = [("voxel", self.voxel.size)]
        if self.layer is not None:
            parts.append(("layer", self.layer.size))
        parts.append(("voxel_steps", self.voxel.size * self.voxel.step_draws))
        if self.layer is not None:
            parts.append(("layer_steps", self.layer.size * self.layer.step_draws))
        out, start = {}, 0
        for name, width in parts:
            out[name] = (start, start + width)
            start += width
        return out

    @property
    def noise_dim(self) -> int:
        return max(stop for _, stop in self.noise_layout().values())

    @property
    def stochastic(self) -> bool:
        return self.voxel.solver.stochastic or (self.layer is not None and self.layer.solver.stochastic)

    # ---- generation -----------------------------------------------------------------------------------------------
    def forward(self, noise: torch.Tensor, conditions: torch.Tensor) -> torch.Tensor:
        lay = self.noise_layout()

        def part(name):
            a, b = lay[name]
            return noise[:, a:b]

        return self.generate(part("voxel"), conditions, part("layer") if self.layer is not None else None,
                             part("voxel_steps"), part("layer_steps") if self.layer is not None else None)

    def model_space(self, voxel_noise, conditions, layer_noise=None, voxel_steps=None, layer_steps=None):
        """(model-space samples (B, V) after the clamp, layer codes (B, L) or None) - the networks' part."""
        cond = self.encode(conditions)  # (B, C)
        codes = None
        if self.layer is not None:
            codes = self.join.clip_codes(self.layer(layer_noise, cond, layer_steps))  # (B, L)
            cond = torch.cat([cond, codes], dim=1)  # (B, C + L)
        y = self.voxel(voxel_noise, cond, voxel_steps)  # (B, V) model space
        return (y if self.clamp is None else self.clamp(y)), codes

    def generate(self, voxel_noise, conditions, layer_noise=None, voxel_steps=None, layer_steps=None):
        """Like ``forward`` with the noise parts given separately; a stochastic solver's step noise may also be a
        callable ``i -> tensor`` (Python sampling draws it lazily instead of holding every step's noise)."""
        e = conditions[:, :1]  # (B, 1) MeV
        y, codes = self.model_space(voxel_noise, conditions, layer_noise, voxel_steps, layer_steps)
        x = self.inverse(y, e)  # (B, V) MeV
        return below_to_zero(x, self.threshold) if codes is None else self.join(x, codes, e)
