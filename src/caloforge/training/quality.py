"""A quick quality number during training: the EMA model samples showers at the validation energies and the
Fréchet distance between their high-level features and the validation showers' is logged.

It is the plain Fréchet distance of the two finite samples (no extrapolation in the sample size, the eigh trace), so
it carries a finite-sample floor and is meant for comparing steps of one run, not for quoting; ``caloforge evaluate``
gives the real FPD. The mean response E_dep/E_inc relative to the validation showers is logged with it.
"""

from __future__ import annotations

import copy

import numpy as np

from caloforge.data.reader import ShowerFile
from caloforge.training.callbacks import Callback


class InLoopQuality(Callback):
    """Holds the validation showers' features; ``measure(model, ema)`` returns the metrics to log. As a loop
    callback it measures at the validation cadence (``on_val``)."""

    def __init__(self, val_path, n: int, recipe, objective, chain, encoder, geometry, device, model_range,
                 coder=None, layer_objective=None):
        from caloforge.evaluation.features import compute_hlf, hlf_vector
        from caloforge.training.sources import as_sources, row_slots

        source = as_sources(val_path)[0]
        with ShowerFile(source.path, geometry) as f:
            b = f.read(np.arange(min(int(n), f.n)), with_extras=True)
            slots = row_slots(f, encoder, source.detector)  # the model's detector slot of each row (or None)
        self.energies, self.extras = b.energies, b.extras
        self.slots = None if slots is None else slots[:len(b)]
        self.ref = hlf_vector(compute_hlf(b.showers, b.energies, geometry), geometry)  # (n, D)
        self.ref_response = float(np.mean(b.showers.sum(1) / b.energies))
        self.parts = (objective, chain, encoder, geometry, recipe, device)
        self.model_range = tuple(np.asarray(v, dtype=np.float32) for v in model_range)
        self.coder, self.layer_objective = coder, layer_objective

    def _generator(self, model, ema):
        from caloforge.sampling.generator import Generator

        net = copy.deepcopy(model)
        ema.copy_to(net)
        objective, chain, encoder, geometry, recipe, device = self.parts
        gen = Generator(net, objective, chain, encoder, geometry, recipe, device)
        gen.model_range, gen.coder, gen.layer_objective = self.model_range, self.coder, self.layer_objective
        return gen

    def measure(self, model, ema, seed: int = 12345) -> dict:
        from caloforge.evaluation.features import compute_hlf, hlf_vector
        from caloforge.evaluation.fpd_kpd import sample_frechet_distance

        gen = self._generator(model, ema)
        x = self.extras
        showers, _ = gen.generate(self.energies, x.get("incident_phi"), x.get("incident_theta"), self.slots,
                                  seed=seed, batch_size=500)
        geometry = self.parts[3]
        fake = hlf_vector(compute_hlf(showers, self.energies, geometry), geometry)
        fd = sample_frechet_distance(self.ref, fake)
        response = float(np.mean(showers.sum(1) / self.energies)) / self.ref_response - 1.0
        return {"quality_fd_x1e3": 1e3 * float(fd), "quality_response_bias": response,
                "quality_showers": len(self.energies)}

    def on_val(self, state) -> dict:
        return self.measure(state.model, state.ema)
