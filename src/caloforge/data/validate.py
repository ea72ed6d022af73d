"""Full value check of a shower file, streamed: what ``caloforge data validate`` runs.

Opening a ``ShowerFile`` checks the layout (metadata only). This module reads every value and stops at the first
problem, naming the file, the dataset, the row (and voxel) and what was expected. The same row checks guard the
writer, so caloforge never writes a file it would reject, and every command that reads showers (``train``,
``data inspect``, ``sample --energies-from``, ``evaluate``) runs them through ``require_valid`` first.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from caloforge.data import schema
from caloforge.data.geometry import OFFICIAL, Geometry
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
    other: tuple[str, ...] = ()  # other datasets/groups in the file: accepted, not read

    def describe(self) -> str:
        geo = self.geometry or "no known geometry"
        extras = f", extras: {', '.join(self.extras)}" if self.extras else ""
        other = f"; other datasets (not read): {', '.join(self.other)}" if self.other else ""
        return (f"{self.path}: OK: {self.n} showers x {self.n_voxels} voxels ({geo}), incident energy "
                f"{self.energy_min_mev:.4g}-{self.energy_max_mev:.4g} MeV, max voxel {self.max_voxel_mev:.4g} MeV"
                f"{extras}{other}")


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


def known_geometries() -> str:
    """The official voxel counts, for messages: '368 (1-photons), 533 (1-pions), 6480 (2), 40500 (3)'."""
    return ", ".join(f"{Geometry.official(k).n_voxels} ({k})" for k in OFFICIAL)


def require_geometry(f: ShowerFile) -> None:
    """Refuse a file whose voxel count matches no known geometry when none was given or recorded: its voxels
    cannot be placed, so every profile and metric computed from it would be meaningless."""
    if f.geometry is None:
        raise DataError(f"{f.path}: dataset '{schema.SHOWERS}': {f.n_voxels} voxels per shower match no known "
                        f"geometry (official: {known_geometries()}); record the mesh in the '{schema.ATTR_GEOMETRY}' "
                        f"attribute or give its binning (--geometry BINNING.xml)")


def validate_file(
    path: str | Path, geometry: Geometry | str | None = None, batch_size: int | None = None, progress_bar: bool = False,
    require_known_geometry: bool = True,
) -> ValidationReport:
    """Read every value of the file once (bounded memory); raise DataError at the first problem."""
    with ShowerFile(path, geometry=geometry) as f:
        if require_known_geometry:
            require_geometry(f)
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
            float(e.min()), float(e.max()), max_voxel, f.other,
        )


def require_valid(path: str | Path, geometry: Geometry | str | None = None, what: str = "",
                  batch_size: int | None = None) -> ValidationReport:
    """The checks of ``caloforge data validate`` for a command's input file: layout, a known geometry and every
    value (streamed, one batch in memory), so no NaN, inf, negative deposit or E <= 0 reaches a model or a metric.
    Raises DataError naming the option (``what``, e.g. '--data'), the file, the row and the field."""
    try:
        return validate_file(path, geometry=geometry, batch_size=batch_size)
    except DataError as exc:
        raise DataError(f"{what}: {exc}" if what else str(exc)) from None


def check_energy_range(energies_mev, energy_range_mev, what: str = "", on_outside: str = "error") -> str | None:
    """Incident energies outside the range a model was trained for (recipe ``data.energy_range_mev``): the model
    extrapolates there, so by default this is an error. ``energies_mev`` is an array or a ``ValidationReport``;
    ``on_outside``: 'error' raises DataError, 'warn' prints one warning line to stderr and returns it, 'ignore'
    returns the line. Returns None when every energy is inside (relative tolerance 1e-6 for float32 files)."""
    import sys

    if on_outside not in ("error", "warn", "ignore"):
        raise ValueError(f"on_outside: expected 'error', 'warn' or 'ignore', found {on_outside!r}")
    if isinstance(energies_mev, ValidationReport):
        e_lo, e_hi = energies_mev.energy_min_mev, energies_mev.energy_max_mev
        what = what or energies_mev.path
        n_out = None
    else:
        e = np.asarray(energies_mev, dtype=np.float64).reshape(-1)
        if e.size == 0:
            return None
        e_lo, e_hi = float(e.min()), float(e.max())
    lo, hi = (float(x) for x in energy_range_mev)
    if e_lo >= lo * (1 - 1e-6) and e_hi <= hi * (1 + 1e-6):
        return None
    if not isinstance(energies_mev, ValidationReport):
        n_out = int(np.count_nonzero((e < lo * (1 - 1e-6)) | (e > hi * (1 + 1e-6))))
    count = f"{n_out} showers with " if n_out else ""
    line = (f"{what + ': ' if what else ''}{count}incident energies {e_lo:.6g}-{e_hi:.6g} MeV outside the model's "
            f"trained range {lo:.6g}-{hi:.6g} MeV (data.energy_range_mev); the model would extrapolate")
    if on_outside == "error":
        raise DataError(line)
    if on_outside == "warn":
        print(f"caloforge: warning: {line}", file=sys.stderr)
    return line
