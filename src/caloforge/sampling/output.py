"""Write generated showers with their provenance, chunk by chunk and safely (``ShowerWriter``: never a half-written
file)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from caloforge import __version__


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


def chunk_seed(seed: int, k: int) -> int:
    """Noise seed of output chunk k: the plain seed for the first chunk (so a file of one chunk does not change)."""
    return int(seed) if k == 0 else int(np.random.SeedSequence([int(seed), int(k)]).generate_state(1)[0])


def sample_to_file(out: str | Path, gen, energies, conditions: np.ndarray, seed: int, chunk: int, solver=None,
                   steps=None, batch_size: int = 1000, show_progress: bool = False, layer_steps=None) -> dict:
    """Generate ``chunk`` showers at a time (noise seed ``chunk_seed(seed, k)``) and append each to ``out``, so memory
    stays bounded by one chunk whatever the file size; the file appears only when complete. Returns summed stats."""
    from caloforge.data.writer import ShowerWriter
    from caloforge.errors import ConfigError

    if chunk < 1:
        raise ConfigError(f"--chunk: expected a positive integer, found {chunk}")
    solver, steps = gen.solver_steps(solver, steps)  # a bad solver / steps is refused before the file is started
    layer_plan = gen.layer_solver_steps(layer_steps)
    e = np.asarray(energies, dtype=np.float64).reshape(-1)
    phi, theta = (conditions[:, 1], conditions[:, 2]) if gen.encoder.angles else (None, None)
    det = np.argmax(conditions[:, -(gen.encoder.n_detectors + 1):], 1) if gen.encoder.n_detectors else None
    extras = condition_extras(gen, conditions)
    attrs = provenance(gen, {"solver": solver, "steps": steps, "nfe": gen.nfe(solver, steps)}, seed)
    if layer_plan is not None:
        attrs["layer_solver"], attrs["layer_steps"] = layer_plan[0], int(layer_plan[1])
    if gen.encoder.n_detectors and gen.detector_names:
        # the reserved (not yet adapted) slot has no name: the file schema needs one per slot
        attrs["detector_names"] = [n if n is not None else f"reserved-slot-{i}"
                                   for i, n in enumerate(gen.detector_names)]
    total = {"rejected_first": 0, "n_redrawn": 0, "n_still_bad": 0, "seconds": 0.0}
    with ShowerWriter(out, gen.geometry.n_voxels, geometry=gen.geometry, attrs=attrs, extras=tuple(extras),
                      expected_n=len(e)) as writer:
        for k, lo in enumerate(range(0, len(e), chunk)):
            rows = slice(lo, lo + chunk)
            showers, stats = gen.generate(e[rows], *(None if v is None else v[rows] for v in (phi, theta, det)),
                                          solver=solver, steps=steps, seed=chunk_seed(seed, k),
                                          batch_size=batch_size, show_progress=show_progress,
                                          layer_steps=layer_steps)
            writer.append(e[rows], showers, {name: v[rows] for name, v in extras.items()})
            total["rejected_first"] += stats["rejected_per_round"][0] if stats["rejected_per_round"] else 0
            for key in ("n_redrawn", "n_still_bad", "seconds"):
                total[key] += stats[key]
    return {**total, "n": len(e), "ms_per_shower": 1e3 * total["seconds"] / len(e), "solver": solver,
            "steps": steps, "nfe": stats["nfe"], "device": stats["device"],
            "layer_steps": None if layer_plan is None else layer_plan[1]}
