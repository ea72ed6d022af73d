"""A trained run as a shower generator: load it, build conditions, sample through the torch module, redraw.

Everything needed (recipe, network config, transform-chain and condition-encoder state, geometry, EMA weights) is read
from the checkpoint, so a run directory (or one checkpoint file) is all a user has to keep. The networks, samplers
and every inverse transform run in one ``GeneratorModule`` (float32 torch); only reject-and-redraw stays in Python.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from caloforge.data.geometry import Geometry
from caloforge.errors import CaloforgeError, ConfigError
from caloforge.sampling.conditions import raw_conditions
from caloforge.training.build import build_network, build_objective, resolve_device
from caloforge.training.checkpoint import load_checkpoint, to_numpy
from caloforge.training.recipe_io import stored_recipe


class Generator:
    """Generate showers (n, V) in MeV for incident energies (n,) in MeV (and angles / detector when the model is
    conditioned on them); see ``Generator.load``."""

    def __init__(self, net, objective, chain, encoder, geometry: Geometry, recipe, device, step: int = 0,
                 source: str = ""):
        self.net, self.objective, self.chain, self.encoder = net.eval(), objective, chain, encoder
        self.geometry, self.config, self.device, self.step, self.source = geometry, recipe, device, step, source
        self.voxel_net = getattr(net, "voxel", net)  # a two-stage net's DiT, else the net itself
        self.grid = tuple(self.voxel_net.cfg.grid) if hasattr(self.voxel_net, "cfg") else geometry.grid_shape
        self.model_range = None  # per-voxel (lo, hi) of the training data in model space
        self.coder = self.layer_objective = None  # two-stage: layer-energy coder and the layer model's objective
        self.detector_names: list[str] | None = getattr(encoder, "detector_names", None)
        self._modules: dict = {}

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
        names = ckpt["encoder"].get("detector_names") if isinstance(ckpt["encoder"], dict) else None
        gen.detector_names = list(names) if names else gen.detector_names
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

    @property
    def threshold_mev(self) -> float:
        pp = self.config.postprocess
        return self.geometry.threshold_mev if pp.threshold_mev is None else pp.threshold_mev

    # ---- solver and steps: the recipe's sampler section, else the objective's defaults --------------------------
    def solver_steps(self, solver: str | None = None, steps: int | None = None) -> tuple[str, int]:
        """The resolved (solver, steps) a call with these arguments uses (validated: one-line ConfigError)."""
        solver = solver if solver is not None else self.config.sampler.solver
        steps = steps if steps is not None else self.config.sampler.steps
        solver = self.objective.resolve_solver(solver)
        return solver, self.objective.resolve_steps(solver, steps)

    def nfe(self, solver: str | None = None, steps: int | None = None) -> int | None:
        """Voxel-network evaluations per shower (the layer network of a two-stage model is ~1000x cheaper)."""
        return self.objective.nfe(*self.solver_steps(solver, steps))

    def layer_solver_steps(self, layer_steps: int | None = None) -> tuple[str, int] | None:
        """The layer-energy model's (solver, steps) of a two-stage model: the recipe's ``layer_model`` section,
        with ``layer_steps`` (e.g. a 1-step export) replacing its step count; None for a one-stage model."""
        if not self.two_stage:
            if layer_steps is not None:
                raise ConfigError(f"--layer-steps: recipe {self.config.name} is a one-stage model (no layer-energy "
                                  "model); leave it out")
            return None
        lm = self.config.layer_model
        solver = self.layer_objective.resolve_solver(lm.solver)
        return solver, self.layer_objective.resolve_steps(solver, lm.steps if layer_steps is None else layer_steps)

    def layer_nfe(self, layer_steps: int | None = None) -> int | None:
        plan = self.layer_solver_steps(layer_steps)
        return None if plan is None else self.layer_objective.nfe(*plan)

    # ---- conditions ---------------------------------------------------------------------------------------------
    def conditions(self, energies, phi=None, theta=None, detector=None) -> np.ndarray:
        """Raw conditions (n, R) float32 for the module; refuses (one line) when the model needs angles or a
        detector and they are missing. ``detector``: integer slots or names from ``detector_names``."""
        return raw_conditions(self.encoder, energies, phi, theta, detector, self.detector_names)

    # ---- the torch module ---------------------------------------------------------------------------------------
    def module(self, solver: str | None = None, steps: int | None = None, layer_steps: int | None = None):
        """The whole generator as one ``GeneratorModule`` for a fixed solver and step count (cached);
        ``layer_steps``: the layer-energy model's step count of a two-stage model (default: the recipe's)."""
        from caloforge.sampling.module import GeneratorModule

        key = (*self.solver_steps(solver, steps), self.layer_solver_steps(layer_steps))
        if key not in self._modules:
            self._modules[key] = GeneratorModule(self, key[0], key[1], layer_steps).to(self.device).eval()
        return self._modules[key]

    def _noise(self, module, n: int, gen: torch.Generator):
        """Noise parts for n showers from ``gen``: voxel prior, layer prior, lazily drawn step noise."""
        def draw(width):
            return torch.randn((n, width), generator=gen, device=self.device)

        layer = draw(module.layer.size) if module.layer is not None else None
        voxel = draw(module.voxel.size)
        v_steps = (lambda i: draw(module.voxel.size).reshape(n, *module.voxel.shape)) \
            if module.voxel.solver.stochastic else None
        l_steps = (lambda i: draw(module.layer.size)) \
            if module.layer is not None and module.layer.solver.stochastic else None
        return voxel, layer, v_steps, l_steps

    @torch.no_grad()
    def model_space(self, conditions: np.ndarray, seed: int, solver=None, steps=None, layer_steps=None) -> np.ndarray:
        """Model-space samples (n, V) after the clamp for raw conditions (n, R); two-stage: (n, V + L), the voxel
        part followed by the layer codes."""
        module = self.module(solver, steps, layer_steps)
        gen = torch.Generator(device=self.device).manual_seed(int(seed))
        c = torch.as_tensor(np.asarray(conditions, dtype=np.float32), device=self.device)
        voxel, layer, v_steps, l_steps = self._noise(module, len(c), gen)
        y, codes = module.model_space(voxel, c, layer, v_steps, l_steps)
        y = y if codes is None else torch.cat([y, codes], dim=1)
        return y.float().cpu().numpy()

    @torch.no_grad()
    def draw(self, conditions: np.ndarray, seed: int, solver=None, steps=None, layer_steps=None) -> np.ndarray:
        """Showers (n, V) float32 MeV for raw conditions (n, R), noise from a generator seeded by ``seed``."""
        module = self.module(solver, steps, layer_steps)
        gen = torch.Generator(device=self.device).manual_seed(int(seed))
        c = torch.as_tensor(np.asarray(conditions, dtype=np.float32), device=self.device)
        voxel, layer, v_steps, l_steps = self._noise(module, len(c), gen)
        return module.generate(voxel, c, layer, v_steps, l_steps).float().cpu().numpy()

    def generate(self, energies, phi=None, theta=None, detector_id=None, solver: str | None = None,
                 steps: int | None = None, seed: int = 0, batch_size: int = 1000,
                 show_progress: bool = False, layer_steps: int | None = None) -> tuple[np.ndarray, dict]:
        """Showers (n, V) float32 MeV and stats (redraw counts, seconds, ms per shower, nfe)."""
        from caloforge.progress import progress
        from caloforge.transforms.postprocess import reject_and_redraw

        e = np.asarray(energies, dtype=np.float64).reshape(-1)
        if e.size == 0:
            raise CaloforgeError("generate: expected at least one incident energy, found none")
        if batch_size < 1:
            raise CaloforgeError(f"generate: batch_size: expected a positive integer, found {batch_size}")
        solver, steps = self.solver_steps(solver, steps)  # validates before any work
        self.layer_solver_steps(layer_steps)
        cond = self.conditions(e, phi, theta, detector_id)  # (n, R)
        pp = self.config.postprocess
        calls = [0]
        bar = progress(total=len(e), desc="sampling", unit="shower") if show_progress else None

        def draw(indices: np.ndarray) -> np.ndarray:
            out = np.empty((len(indices), self.geometry.n_voxels), dtype=np.float32)
            for i in range(0, len(indices), batch_size):
                rows = indices[i:i + batch_size]
                # each draw call gets a fresh, reproducible noise stream
                out[i:i + len(rows)] = self.draw(cond[rows], seed * 1_000_003 + calls[0], solver, steps, layer_steps)
                calls[0] += 1
                if bar is not None:
                    bar.update(len(rows))
            return out

        t0 = time.perf_counter()
        try:
            showers, rstats = reject_and_redraw(draw, e, pp.max_ratio, pp.max_rounds)
        finally:
            if bar is not None:
                bar.close()
        seconds = time.perf_counter() - t0
        stats = {**rstats.to_dict(), "n": len(e), "seconds": seconds, "ms_per_shower": 1e3 * seconds / len(e),
                 "nfe": self.nfe(solver, steps), "layer_nfe": self.layer_nfe(layer_steps), "solver": solver, "steps": steps,
                 "layer_steps": (self.layer_solver_steps(layer_steps) or (None, None))[1],
                 "device": str(self.device)}
        return showers.astype(np.float32, copy=False), stats

    def __repr__(self) -> str:
        return f"Generator({self.source!r}, step={self.step}, {self.geometry.name}, objective={self.objective.kind})"


def load_generator(path: str | Path, use_ema: bool = True, device: str = "auto") -> Generator:
    return Generator.load(path, use_ema=use_ema, device=device)
