"""Incident energies drawn log-uniform in a range (the CaloChallenge DS2/DS3 convention): the one sampler that data
generation, `caloforge sample` and the timing benchmarks share."""

from __future__ import annotations

import math

import numpy as np

from caloforge.errors import CaloforgeError


def log_uniform(n: int, energy_range_mev: tuple[float, float], rng: np.random.Generator) -> np.ndarray:
    """(n,) float64 energies in MeV with log E uniform in [log low, log high]."""
    lo, hi = (float(x) for x in energy_range_mev)
    if not (0 < lo <= hi and math.isfinite(hi)):
        raise CaloforgeError(f"energy range: expected 0 < low <= high MeV, got {lo!r}:{hi!r}")
    return np.exp(rng.uniform(math.log(lo), math.log(hi), int(n)))
