"""Full value check of a shower file, streamed: what ``caloforge data validate`` runs.

Opening a ``ShowerFile`` checks the layout (metadata only). This module reads every value and stops at the first
problem, naming the file, the dataset, the row (and voxel) and what was expected. The same row checks guard the
writer, so caloforge never writes a file it would reject.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from caloforge.data import schema
from caloforge.data.geometry import Geometry
from caloforge.data.reader import ShowerBatch, ShowerFile, batch_rows_for
from caloforge.errors import DataError


@dataclass(frozen=True)
class ValidationReport:
    """What a successful validation saw."""

    path: str
    n: int
    n_voxels: int
    geometry: str | None
    extras: tuple[str, ...]
    energy_min_mev: float
    energy_max_mev: float
    max_voxel_mev: float

    def describe(self) -> str:
        geo = self.geometry or "no known geometry"
        extras = f", extras: {', '.join(self.extras)}" if self.extras else ""
        return (f"{self.path}: OK: {self.n} showers x {self.n_voxels} voxels ({geo}), incident energy "
                f"{self.energy_min_mev:.4g}-{self.energy_max_mev:.4g} MeV, max voxel {self.max_voxel_mev:.4g} MeV"
                f"{extras}")


def _first_bad(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask.reshape(-1))[0])


def check_values(
    label: str,
    energies: np.ndarray,
    showers: np.ndarray,
    extras: dict[str, np.ndarray] | None = None,
    row_offset: int = 0,
    n_detectors: int | None = None,
    rows: np.ndarray | None = None,
) -> None:
    """Raise DataError on the first non-physical value: energies finite and > 0, showers finite and >= 0,
    extras finite, detector ids in range. Messages name file rows: ``rows[i]`` if given, else row_offset + i."""

    def row(i: int) -> int:
        return int(rows[i]) if rows is not None else row_offset + i
    e = np.asarray(energies)
    bad = ~(np.isfinite(e) & (e > 0))
    if bad.any():
        i = _first_bad(bad)
        raise DataError(f"{label}: dataset '{schema.ENERGIES}': row {row(i)}: expected a finite energy "
                        f"> 0 MeV, found {e.reshape(-1)[i].item()!r}")
    s = np.asarray(showers)
    clean = s.size == 0 or (s.min() >= 0 and np.isfinite(s.max()))  # NaN propagates into min/max: no false pass
    bad = None if clean else ~(s >= 0) | ~np.isfinite(s)  # NaN fails (s >= 0)
    if bad is not None and bad.any():
        flat = _first_bad(bad)
        r, voxel = divmod(flat, s.shape[1])
        raise DataError(f"{label}: dataset '{schema.SHOWERS}': row {row(r)}, voxel {voxel}: expected a "
                        f"finite deposit >= 0 MeV, found {s[r, voxel].item()!r}")
    for name, values in (extras or {}).items():
        v = np.asarray(values)
        bad = ~np.isfinite(v) if v.dtype.kind == "f" else np.zeros(v.shape, bool)
        if name == "detector_id" and n_detectors is not None:
            bad |= (v < 0) | (v >= n_detectors)
            expected = f"an id in [0, {n_detectors}) (attribute '{schema.ATTR_DETECTOR_NAMES}')"
        else:
            expected = "a finite value"
        if bad.any():
            i = _first_bad(bad)
            raise DataError(f"{label}: dataset '{name}': row {row(i)}: expected {expected}, "
                            f"found {v.reshape(-1)[i].item()!r}")


def check_batch(label: str, batch: ShowerBatch, n_detectors: int | None = None) -> None:
    """check_values on a batch read from a file; rows are reported as file rows (``batch.index``)."""
    check_values(label, batch.energies, batch.showers, batch.extras, n_detectors=n_detectors, rows=batch.index)


class _NoBar:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def update(self, n: int) -> None:
        return None


def maybe_progress(enabled: bool, desc: str, total: int, unit: str = "shower"):
    """A caloforge progress bar when enabled, else a silent stand-in with the same ``update`` method."""
    from caloforge.progress import progress

    return progress(desc=desc, total=total, unit=unit) if enabled else _NoBar()


def n_detectors_of(f: ShowerFile) -> int | None:
    names = f.attrs.get(schema.ATTR_DETECTOR_NAMES)
    return len(names) if isinstance(names, list) else None


def validate_file(
    path: str | Path, geometry: Geometry | str | None = None, batch_size: int | None = None, progress_bar: bool = False
) -> ValidationReport:
    """Read every value of the file once (bounded memory); raise DataError at the first problem."""
    with ShowerFile(path, geometry=geometry) as f:
        if f.n == 0:
            raise DataError(f"{path}: dataset '{schema.SHOWERS}': expected at least one shower, found 0")
        n_det = n_detectors_of(f)
        max_voxel = 0.0
        with maybe_progress(progress_bar, "validate", f.n) as bar:
            for batch in f.iter_batches(batch_size or batch_rows_for(f.n_voxels), with_extras=True):
                check_batch(str(path), batch, n_det)
                if batch.showers.size:
                    max_voxel = max(max_voxel, float(batch.showers.max()))
                bar.update(len(batch))
        e = f.energies()
        return ValidationReport(
            str(path), f.n, f.n_voxels, f.geometry.name if f.geometry else None, f.extras,
            float(e.min()), float(e.max()), max_voxel,
        )
