"""Post-processing of generated showers: readout threshold and reject-and-redraw of unphysical samples.

Reject-and-redraw (as CaloArt does) re-samples showers that are non-finite, hold negative energies, or deposit more
than ``max_ratio`` times the incident energy. Unlike CaloArt, rows that are still bad after the last round are NOT
dropped: users expect N showers for N requested energies, and dropping rows would bias the energy spectrum. Those rows
are kept with non-finite and negative voxels set to 0 (what the official evaluation's threshold does to negatives
anyway); an over-energetic row is kept as is. Their count and indices are reported in ``RedrawStats``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from caloforge.errors import CaloforgeError


def apply_threshold(showers: np.ndarray, threshold_mev: float, dtype=None) -> np.ndarray:
    """A copy with voxels below the threshold (strictly) set to 0: the one readout cut of generation and evaluation.

    The comparison is done in the data's own float type, as numpy does for ``shower < min_energy`` in evaluate.py
    (a Python float threshold is cast to float32 for float32 data), so the same voxels survive everywhere. The copy
    keeps the data's dtype unless ``dtype`` is given (evaluation asks for float64).
    """
    showers = np.asarray(showers)
    cut = np.asarray(threshold_mev, dtype=showers.dtype) if showers.dtype.kind == "f" else threshold_mev
    out = np.where(showers < cut, 0, showers)
    return out.astype(dtype if dtype is not None else showers.dtype, copy=False)


def unphysical_mask(showers: np.ndarray, energies: np.ndarray, max_ratio: float) -> np.ndarray:
    """(n,) bool: the shower has a non-finite or negative voxel, or E_dep / E_inc > max_ratio."""
    x = np.asarray(showers)
    e = np.asarray(energies, dtype=np.float64).reshape(-1)
    if x.ndim != 2 or x.shape[0] != e.shape[0]:
        raise CaloforgeError(f"post-processing: expected showers (n, V) with n = {e.shape[0]} energies, "
                             f"found shape {x.shape}")
    finite = np.isfinite(x).all(axis=1)
    negative = (x < 0).any(axis=1)
    with np.errstate(invalid="ignore", over="ignore"):
        ratio = x.sum(axis=1, dtype=np.float64) / e
    return ~finite | negative | ~(ratio <= max_ratio)


@dataclass
class RedrawStats:
    """rejected_per_round[0] counts bad rows in the first draw, [k] bad rows after redraw k."""

    rejected_per_round: list[int] = field(default_factory=list)
    n_still_bad: int = 0
    still_bad_indices: list[int] = field(default_factory=list)

    @property
    def n_redrawn(self) -> int:
        """Rows drawn again in total (a row redrawn twice counts twice)."""
        return int(sum(self.rejected_per_round[:-1])) if self.n_still_bad else int(sum(self.rejected_per_round))

    def to_dict(self) -> dict:
        return {"rejected_per_round": list(self.rejected_per_round), "n_redrawn": self.n_redrawn,
                "n_still_bad": self.n_still_bad, "still_bad_indices": list(self.still_bad_indices)}


def reject_and_redraw(
    draw_fn: Callable[[np.ndarray], np.ndarray],
    energies: np.ndarray,
    max_ratio: float,
    max_rounds: int = 10,
) -> tuple[np.ndarray, RedrawStats]:
    """Draw showers for all energies, then redraw bad rows (``draw_fn(indices)``) up to ``max_rounds`` times.

    Returns (showers (n, V), stats); the row count always equals ``len(energies)`` (see the module docstring).
    """
    e = np.asarray(energies, dtype=np.float64).reshape(-1)
    showers = np.array(_drawn(draw_fn, np.arange(e.shape[0])), copy=True)
    stats = RedrawStats()
    bad = np.flatnonzero(unphysical_mask(showers, e, max_ratio))
    stats.rejected_per_round.append(int(bad.size))
    for _ in range(max_rounds):
        if bad.size == 0:
            break
        showers[bad] = _drawn(draw_fn, bad)
        bad = bad[unphysical_mask(showers[bad], e[bad], max_ratio)]
        stats.rejected_per_round.append(int(bad.size))
    if bad.size:
        rows = showers[bad]
        rows[~np.isfinite(rows) | (rows < 0)] = 0
        showers[bad] = rows
        stats.n_still_bad, stats.still_bad_indices = int(bad.size), bad.tolist()
    return showers, stats


def _drawn(draw_fn, indices: np.ndarray) -> np.ndarray:
    out = np.asarray(draw_fn(indices))
    if out.ndim != 2 or out.shape[0] != indices.shape[0]:
        raise ValueError(f"reject_and_redraw: draw_fn returned shape {out.shape} for {indices.shape[0]} rows")
    return out
