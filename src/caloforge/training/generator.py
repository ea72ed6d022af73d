"""A trained run as a shower generator: conditions -> noise -> objective.sample -> inverse transforms -> threshold
-> reject-and-redraw. Used by ``caloforge sample``, ``bench`` and the demo.

Everything needed (recipe, DiT config, transform-chain and condition-encoder state, geometry, EMA weights) is read
from the checkpoint, so a run directory (or one checkpoint file) is all a user has to keep.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from caloforge.data.geometry import Geometry
from caloforge.errors import CaloforgeError
from caloforge.training.build import build_network, build_objective, resolve_device
from caloforge.training.checkpoint import load_checkpoint, to_numpy
from caloforge.training.config import stored_recipe


class Generator:
    """Generate showers (n, V) in MeV for incident energies (n,) in MeV; see ``Generator.load``."""

    def __init__(self, net, objective, chain, encoder, geometry: Geometry, recipe, device, step: int = 0,
                 source: str = ""):
        self.net, self.objective, self.chain, self.encoder = net.eval(), objective, chain, encoder
        self.geometry, self.config, self.device, self.step, self.source = geometry, recipe, device, step, source
        self.voxel_net = getattr(net, "voxel", net)  # a two-stage net's DiT, else the net itself
        self.grid = tuple(self.voxel_net.cfg.grid) if hasattr(self.voxel_net, "cfg") else geometry.grid_shape
        self.model_range = None  # per-voxel (lo, hi) of the training data in model space
        self.coder = self.layer_objective = None  # two-stage: layer-energy coder and the layer model's objective

    @classmethod
    def load(cls, run_dir_or_ckpt, use_ema: bool = True, device: str = "auto") -> Generator:
        from caloforge.transforms.chain import Chain
        from caloforge.transforms.conditions import ConditionEncoder

        ckpt = load_checkpoint(run_dir_or_ckpt)
        dev = resolve_device(device)
        recipe = stored_recipe(ckpt["config"], f"{ckpt['path']}: config")
        net = build_network(ckpt["model_config"])
        net.load_state_dict(ckpt["ema"] if use_ema else ckpt["model"])
        gen = cls(net.to(dev), build_objective(ckpt["objective"]), Chain.from_state(to_numpy(ckpt["chain"])),
                  ConditionEncoder.from_state(ckpt["encoder"]), Geometry.from_dict(ckpt["geometry"]), recipe, dev,
                  int(ckpt["step"]), str(ckpt["path"]))
        if "model_range" in ckpt:
            gen.model_range = tuple(np.asarray(to_numpy(v), dtype=np.float32) for v in ckpt["model_range"])
        if "layer_coder" in ckpt:
            from caloforge.transforms.layer_coder import LayerEnergyCoder

            gen.coder = LayerEnergyCoder.from_state(to_numpy(ckpt["layer_coder"]), gen.geometry)
            gen.layer_objective = build_objective(ckpt["layer_objective"])
        return gen

    @property
    def two_stage(self) -> bool:
        return self.coder is not None

    # ---- sampling ----------------------------------------------------------------------------------------------
    def nfe(self, solver: str | None = None, steps: int | None = None) -> int | None:
        """Voxel-network evaluations per shower (the layer network of a two-stage model is ~1000x cheaper)."""
        solver, steps = self._solver_steps(solver, steps)
        return self.objective.nfe(solver, steps)

    def layer_nfe(self) -> int | None:
        if not self.two_stage:
            return None
        lm = self.config.layer_model
        return self.layer_objective.nfe(lm.solver, lm.steps)

    def _solver_steps(self, solver, steps):
        return (solver if solver is not None else self.config.sampler.solver,
                steps if steps is not None else self.config.sampler.steps)

    def conditions(self, energies, phi=None, theta=None, detector_id=None) -> np.ndarray:
        e = np.asarray(energies, dtype=np.float64).reshape(-1)
        if self.encoder.angles:
            phi = np.zeros(len(e)) if phi is None else phi
            theta = np.zeros(len(e)) if theta is None else theta
        return self.encoder.encode(e, phi, theta, detector_id)  # (n, C)

    @torch.no_grad()
    def layer_codes(self, cond: np.ndarray, gen: torch.Generator) -> np.ndarray:
        """Two-stage: layer-energy codes (n, L) sampled by the layer network for encoded conditions (n, C)."""
        lm = self.config.layer_model
        c = torch.from_numpy(np.ascontiguousarray(cond, dtype=np.float32)).to(self.device)  # (n, C)
        noise = torch.randn((len(c), self.coder.n_layers), generator=gen, device=self.device)  # (n, L)
        z = self.layer_objective.sample(self.net.layer, noise, c, solver=lm.solver, steps=lm.steps, generator=gen)
        return np.clip(z.float().cpu().numpy(), self.coder.lo, self.coder.hi).astype(np.float32)

    @torch.no_grad()
    def model_space(self, cond: np.ndarray, seed: int, solver=None, steps=None) -> np.ndarray:
        """Model-space samples (n, V) for encoded conditions (n, C), with noise from a generator seeded by ``seed``.

        Two-stage: the layer codes are sampled first and appended to the conditions; the result is then
        (n, V + L), the voxel part followed by the codes (``generate`` splits them).
        """
        solver, steps = self._solver_steps(solver, steps)
        gen = torch.Generator(device=self.device).manual_seed(int(seed))
        codes = self.layer_codes(cond, gen) if self.two_stage else None
        if codes is not None:
            cond = np.concatenate([cond, codes], axis=1)  # (n, C + L)
        c = torch.from_numpy(np.ascontiguousarray(cond, dtype=np.float32)).to(self.device)  # (n, C)
        noise = torch.randn((len(c), *self.grid), generator=gen, device=self.device)  # (n, Z, A, R)
        z = self.objective.sample(self.voxel_net, noise, c, solver=solver, steps=steps, generator=gen)
        y = z.reshape(len(c), -1).float().cpu().numpy()  # (n, V)
        if self.model_range is not None:
            # an ODE step can overshoot far outside the data; after an exp-like inverse that is an absurd energy
            y = np.clip(y, self.model_range[0], self.model_range[1])
        return y if codes is None else np.concatenate([y, codes], axis=1)

    def generate(self, energies, phi=None, theta=None, detector_id=None, solver: str | None = None,
                 steps: int | None = None, seed: int = 0, batch_size: int = 1000) -> tuple[np.ndarray, dict]:
        """Showers (n, V) float32 MeV and stats (redraw counts, seconds, ms per shower, nfe)."""
        e = np.asarray(energies, dtype=np.float64).reshape(-1)
        if e.size == 0:
            raise CaloforgeError("generate: expected at least one incident energy, found none")
        if batch_size < 1:
            raise CaloforgeError(f"generate: batch_size: expected a positive integer, found {batch_size}")
        self.nfe(solver, steps)  # validates solver/steps before any work
        from caloforge.transforms.postprocess import apply_threshold, reject_and_redraw

        cond = self.conditions(e, phi, theta, detector_id)  # (n, C)
        pp = self.config.postprocess
        thr = self.geometry.threshold_mev if pp.threshold_mev is None else pp.threshold_mev
        calls = [0]

        def draw(indices: np.ndarray) -> np.ndarray:
            out = np.empty((len(indices), self.geometry.n_voxels), dtype=np.float32)
            for i in range(0, len(indices), batch_size):
                rows = indices[i:i + batch_size]
                # each draw call gets a fresh, reproducible noise stream
                y = self.model_space(cond[rows], seed * 1_000_003 + calls[0], solver, steps)
                calls[0] += 1
                if self.two_stage:
                    v = self.geometry.n_voxels
                    shapes = self.chain.inverse(y[:, :v], e[rows])
                    out[i:i + len(rows)] = self.coder.join(shapes, y[:, v:], e[rows])
                else:
                    out[i:i + len(rows)] = apply_threshold(self.chain.inverse(y, e[rows]), thr)
            return out

        t0 = time.perf_counter()
        showers, rstats = reject_and_redraw(draw, e, pp.max_ratio, pp.max_rounds)
        seconds = time.perf_counter() - t0
        stats = {**rstats.to_dict(), "n": len(e), "seconds": seconds, "ms_per_shower": 1e3 * seconds / len(e),
                 "nfe": self.nfe(solver, steps), "layer_nfe": self.layer_nfe(), "solver": self._solver_steps(solver, steps)[0] or
                 self.objective.default_solver, "device": str(self.device)}
        return showers.astype(np.float32, copy=False), stats

    def __repr__(self) -> str:
        return f"Generator({self.source!r}, step={self.step}, {self.geometry.name}, objective={self.objective.kind})"


def load_generator(path: str | Path, use_ema: bool = True, device: str = "auto") -> Generator:
    return Generator.load(path, use_ema=use_ema, device=device)
