"""Write generated showers with their provenance, safely (``caloforge.outputs``: never a half-written file)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from caloforge import __version__
from caloforge.outputs import atomic_path


def provenance(gen, stats: dict, seed: int) -> dict:
    """File attributes that say how the showers were made."""
    return {"generator": "caloforge", "caloforge_version": __version__, "recipe": gen.config.name,
            "checkpoint": gen.source, "step": int(gen.step), "solver": str(stats["solver"]),
            "steps": int(stats["steps"]), "nfe": -1 if stats["nfe"] is None else int(stats["nfe"]),
            "seed": int(seed)}


def condition_extras(gen, conditions: np.ndarray) -> dict:
    """The per-shower condition datasets (incident_phi/theta, detector_id) of raw conditions (n, R)."""
    out = {}
    if gen.encoder.angles:
        out["incident_phi"] = conditions[:, 1].astype(np.float32)
        out["incident_theta"] = conditions[:, 2].astype(np.float32)
    if gen.encoder.n_detectors:
        out["detector_id"] = np.argmax(conditions[:, -(gen.encoder.n_detectors + 1):], axis=1).astype(np.int32)
    return out


def write_samples(out: str | Path, gen, energies, showers, stats: dict, seed: int, conditions: np.ndarray) -> Path:
    """Atomic write of a CaloChallenge file with provenance attributes and the condition datasets."""
    from caloforge.data.writer import write_showers

    attrs = provenance(gen, stats, seed)
    if gen.encoder.n_detectors and gen.detector_names:
        attrs["detector_names"] = list(gen.detector_names)
    with atomic_path(out) as tmp:
        write_showers(tmp, energies, showers, extras=condition_extras(gen, conditions), attrs=attrs,
                      geometry=gen.geometry)
    return Path(out)
