"""Reading shower files in the CaloChallenge layout without loading them: cheap layout check on open, then
bounded-memory batches (sequential or random access).

Memory: ``iter_batches`` holds at most one batch of showers; ``read(indices)`` holds the requested rows. Batches
follow HDF5 chunk boundaries so that every compressed chunk is decompressed once per pass.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import h5py
import numpy as np

from caloforge.data import schema
from caloforge.data.geometry import Geometry
from caloforge.errors import DataError

if TYPE_CHECKING:
    from typing_extensions import Self

#: Default in-memory budget for ``ShowerFile(..., in_memory=True)``.
DEFAULT_MEMORY_BUDGET = 4 * 2**30
#: HDF5 chunk cache per open file: large enough for a few chunks of the biggest official rows (DS3).
_CHUNK_CACHE_BYTES = 64 * 2**20


@dataclass
class ShowerBatch:
    """Consecutive or requested rows of a shower file, in physical units (MeV)."""

    energies: np.ndarray  # (n,) float64, MeV
    showers: np.ndarray  # (n, V) float32, MeV
    index: np.ndarray  # (n,) int64, row numbers in the file
    extras: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (n,)

    def __len__(self) -> int:
        return len(self.energies)


def batch_rows_for(n_voxels: int, target_bytes: int = 64 * 2**20) -> int:
    """Rows per streamed batch so that one batch of float32 showers is about target_bytes (2589 rows for DS2,
    414 for DS3): commands that stream use it so their memory does not depend on the dataset."""
    return max(1, int(target_bytes // max(4 * n_voxels, 1)))


def resolve_geometry(geometry: Geometry | str | None) -> Geometry | None:
    """A Geometry from a Geometry, an official dataset key ('2', '3', '1-photons', '1-pions'), a binning XML path
    or None."""
    if geometry is None or isinstance(geometry, Geometry):
        return geometry
    if str(geometry).endswith(".xml") and not Path(geometry).is_file():
        raise DataError(f"{geometry}: binning XML file not found")
    return Geometry.parse(geometry)


def open_h5(path: Path) -> h5py.File:
    """Open an HDF5 file read-only; every failure becomes one line naming the file."""
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if path.is_dir():
        raise DataError(f"{path}: expected an HDF5 file, found a directory")
    try:
        return h5py.File(path, "r", rdcc_nbytes=_CHUNK_CACHE_BYTES)
    except PermissionError:
        raise DataError(f"{path}: cannot read the file (permission denied)") from None
    except OSError as exc:
        if not h5py.is_hdf5(path):
            raise DataError(f"{path}: not an HDF5 file (no HDF5 signature found)") from None
        detail = " ".join(str(exc).split())
        raise DataError(f"{path}: cannot open the HDF5 file, it is truncated or corrupt ({detail})") from None


class ShowerFile:
    """A shower file opened for reading; use as a context manager (``with ShowerFile(p) as f: ...``)."""

    def __init__(
        self,
        path: str | Path,
        geometry: Geometry | str | None = None,
        in_memory: bool = False,
        memory_budget: int = DEFAULT_MEMORY_BUDGET,
    ):
        self.path = Path(path)
        self._label = str(path)
        self._h5: h5py.File | None = open_h5(self.path)
        self._memory: dict[str, np.ndarray] | None = None
        self._energies: np.ndarray | None = None
        try:
            self._check_layout(resolve_geometry(geometry))
            if in_memory:
                self._load(memory_budget)
        except BaseException:
            self.close()
            raise

    # ---- layout check (metadata only: no shower is read) ------------------------------------------------------
    def _dataset(self, name: str) -> h5py.Dataset:
        obj = self._h5.get(name)
        if obj is None:
            raise DataError(f"{self._label}: dataset '{name}' is missing (found: {sorted(self._h5.keys())})")
        if not isinstance(obj, h5py.Dataset):
            raise DataError(f"{self._label}: '{name}': expected a dataset, found a {type(obj).__name__}")
        return obj

    def _check_column(self, name: str, kind: str, n: int | None, flat_ok: bool = False) -> h5py.Dataset:
        ds = self._dataset(name)
        if not (ds.ndim == 2 and ds.shape[1] == 1) and not (flat_ok and ds.ndim == 1):
            expected = "(N, 1) or (N,)" if flat_ok else "(N, 1)"
            raise DataError(f"{self._label}: dataset '{name}': expected shape {expected}, found {ds.shape}")
        if not schema.is_kind(ds.dtype, kind):
            raise DataError(f"{self._label}: dataset '{name}': expected {schema.kind_name(kind)} dtype, "
                            f"found {ds.dtype}")
        if n is not None and ds.shape[0] != n:
            raise DataError(f"{self._label}: dataset '{name}': expected {n} rows (as in '{schema.SHOWERS}'), "
                            f"found {ds.shape[0]}")
        return ds

    def _check_layout(self, geometry: Geometry | None) -> None:
        label = self._label
        showers = self._dataset(schema.SHOWERS)
        if showers.ndim != 2:
            raise DataError(f"{label}: dataset '{schema.SHOWERS}': expected shape (N, n_voxels), found {showers.shape}")
        if not schema.is_kind(showers.dtype, "f"):
            raise DataError(f"{label}: dataset '{schema.SHOWERS}': expected a float dtype, found {showers.dtype}")
        n, n_voxels = showers.shape
        self._check_column(schema.ENERGIES, "f", n)
        self.attrs = {k: schema.decode_attr(label, k, v) for k, v in self._h5.attrs.items()}
        recorded = schema.geometry_from_attrs(label, self.attrs)
        if geometry is not None:
            source = "given"
        elif recorded is not None:
            geometry, source = recorded, f"attribute '{schema.ATTR_GEOMETRY}'"
        else:
            geometry, source = Geometry.for_voxels(n_voxels), "official"
        if geometry is not None and geometry.n_voxels != n_voxels:
            raise DataError(f"{label}: dataset '{schema.SHOWERS}': expected {geometry.n_voxels} voxels per shower "
                            f"(geometry {geometry.name}, {source}), found {n_voxels}")
        if schema.ATTR_DETECTOR_NAMES in self.attrs:
            schema.check_detector_names(label, self.attrs[schema.ATTR_DETECTOR_NAMES])
        self.extras = tuple(name for name in schema.EXTRAS if name in self._h5)
        for name in self.extras:  # real files often store per-shower columns flat, as (N,)
            self._check_column(name, schema.EXTRAS[name], n, flat_ok=True)
        #: Other top-level datasets and groups (provenance, ids, ...): accepted, reported, never read.
        self.other = tuple(sorted(set(self._h5.keys()) - {schema.ENERGIES, schema.SHOWERS} - set(self.extras)))
        self.n, self.n_voxels, self.geometry = int(n), int(n_voxels), geometry
        self.chunk_rows = showers.chunks[0] if showers.chunks else None

    def _load(self, budget: int) -> None:
        need = self.n * self.n_voxels * 4
        if need > budget:
            raise DataError(f"{self._label}: in_memory: expected showers within {budget / 2**30:.2f} GiB, found "
                            f"{need / 2**30:.2f} GiB; stream with iter_batches() or raise the budget")
        batch = self._read_rows(slice(0, self.n), np.arange(self.n, dtype=np.int64), with_extras=True)
        self._memory = {schema.ENERGIES: batch.energies, schema.SHOWERS: batch.showers, **batch.extras}
        self._energies = batch.energies
        self._h5.close()
        self._h5 = None

    # ---- access ------------------------------------------------------------------------------------------------
    def energies(self) -> np.ndarray:
        """Incident energies (N,) float64, MeV (small: read once and cached)."""
        if self._energies is None:
            self._energies = self._column(schema.ENERGIES, slice(None)).astype(np.float64)
        return self._energies

    def extra(self, name: str) -> np.ndarray:
        """An optional per-shower dataset as an (N,) array."""
        if name not in self.extras:
            raise DataError(f"{self._label}: dataset '{name}' is not in the file (present extras: {list(self.extras)})")
        return self._column(name, slice(None))

    def _column(self, name: str, rows) -> np.ndarray:
        if self._memory is not None:
            return self._memory[name][rows]
        try:
            ds = self._open()[name]
            if ds.ndim == 1:
                return ds[rows]
            return ds[rows, 0] if isinstance(rows, slice) else ds[rows][:, 0]
        except OSError as exc:
            raise DataError(f"{self._label}: dataset '{name}': cannot read rows ({' '.join(str(exc).split())})") from None

    def _open(self) -> h5py.File:
        if self._h5 is None:
            raise DataError(f"{self._label}: the file is closed")
        return self._h5

    def _read_rows(self, sel: slice | np.ndarray, index: np.ndarray, *, with_extras: bool) -> ShowerBatch:
        """Rows ``sel``: a slice, or sorted unique row numbers (what h5py fancy indexing accepts)."""
        if self._memory is not None:
            showers = self._memory[schema.SHOWERS][sel]
        else:
            try:
                showers = self._open()[schema.SHOWERS][sel]
            except OSError as exc:
                detail = " ".join(str(exc).split())
                raise DataError(f"{self._label}: dataset '{schema.SHOWERS}': cannot read rows ({detail})") from None
        energies = self._column(schema.ENERGIES, sel).astype(np.float64, copy=False)
        extras = {name: self._column(name, sel) for name in self.extras} if with_extras else {}
        return ShowerBatch(energies, showers.astype(np.float32, copy=False), index, extras)

    def iter_batches(
        self, batch_size: int = 4096, start: int = 0, stop: int | None = None, with_extras: bool = False
    ) -> Iterator[ShowerBatch]:
        """Consecutive batches of rows [start, stop); boundaries follow HDF5 chunks when batch_size allows."""
        stop = self.n if stop is None else int(stop)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= start <= stop <= self.n:
            raise IndexError(f"rows [{start}, {stop}) outside [0, {self.n}]")
        chunk = self.chunk_rows if (self.chunk_rows and self.chunk_rows <= batch_size) else 1
        b0 = int(start)
        while b0 < stop:
            b1 = min(stop, ((b0 + batch_size) // chunk) * chunk)  # end on a chunk boundary
            if b1 <= b0:
                b1 = min(stop, b0 + batch_size)
            yield self._read_rows(slice(b0, b1), np.arange(b0, b1, dtype=np.int64), with_extras=with_extras)
            b0 = b1

    def read(self, indices, with_extras: bool = False) -> ShowerBatch:
        """The rows ``indices`` (any order, repeats allowed), returned in the requested order."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= self.n):
            raise IndexError(f"row index out of range [0, {self.n})")
        uniq, inverse = np.unique(idx, return_inverse=True)  # h5py needs increasing, unique indices
        if uniq.size == 0:
            sel = slice(0, 0)
        elif uniq[-1] - uniq[0] + 1 == uniq.size:  # a contiguous run: a plain slice is much faster
            sel = slice(int(uniq[0]), int(uniq[-1]) + 1)
        else:
            sel = uniq
        batch = self._read_rows(sel, uniq, with_extras=with_extras)
        return ShowerBatch(
            batch.energies[inverse],
            batch.showers[inverse],
            idx,
            {k: v[inverse] for k, v in batch.extras.items()},
        )

    # ---- lifecycle ---------------------------------------------------------------------------------------------
    def close(self) -> None:
        if self._h5 is not None:
            self._h5.close()
            self._h5 = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __len__(self) -> int:
        return self.n

    def __repr__(self) -> str:
        geo = self.geometry.name if self.geometry else "unknown geometry"
        return f"ShowerFile({self._label!r}, n={self.n}, n_voxels={self.n_voxels}, {geo})"
