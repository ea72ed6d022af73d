"""Writing shower files in the official CaloChallenge layout, atomically and in streamed chunks.

The file is built as ``<dir>/.<name>.tmp-<pid>`` and renamed onto ``<name>`` only when complete, so a crash, a
bad value or an interrupt never leaves a half-written file under the final name. Values are checked before they
are written (energies finite and > 0, showers finite and >= 0): caloforge never writes a file it would reject.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

import h5py
import numpy as np

from caloforge.data import schema
from caloforge.data.geometry import Geometry
from caloforge.data.validate import check_values
from caloforge.errors import CaloforgeError, DataError

if TYPE_CHECKING:
    from typing_extensions import Self

#: Target size of one compressed-chunk of showers before compression (rows are never split across chunks).
_CHUNK_BYTES = 2 * 2**20


def chunk_rows_for(n_voxels: int, expected_n: int | None = None) -> int:
    """Rows per HDF5 chunk: about 2 MiB of float32 showers (80 rows for DS2, 12 for DS3), at most 1024."""
    rows = int(np.clip(_CHUNK_BYTES // max(4 * n_voxels, 1), 1, 1024))
    return max(1, min(rows, expected_n)) if expected_n else rows


def temp_path_for(path: Path) -> Path:
    """The temporary sibling a file is written to before the atomic rename."""
    return path.parent / f".{path.name}.tmp-{os.getpid()}"


def _oneline(exc: BaseException) -> str:
    return " ".join((getattr(exc, "strerror", None) or str(exc)).split())


class ShowerWriter:
    """Append batches of showers to a new file; ``close()`` renames it into place, ``abort()`` discards it.

    Use as a context manager: the file appears on a clean exit and is removed on an exception.
    """

    def __init__(
        self,
        path: str | Path,
        n_voxels: int,
        geometry: Geometry | None = None,
        attrs: dict | None = None,
        extras=(),
        expected_n: int | None = None,
        compression: str | None = "gzip",
        compression_level: int = 4,
    ):
        self.path = Path(path)
        self.n_voxels = int(n_voxels)
        self.extras = tuple(extras)
        self.expected_n = expected_n
        self.n_written = 0
        self._label = str(path)
        if geometry is not None and geometry.n_voxels != self.n_voxels:
            raise DataError(f"{path}: dataset '{schema.SHOWERS}': expected {geometry.n_voxels} voxels per shower "
                            f"(geometry {geometry.name}), found {self.n_voxels}")
        for name in self.extras:
            if name not in schema.EXTRAS:
                raise DataError(f"{path}: extra dataset '{name}': expected one of {sorted(schema.EXTRAS)}")
        attrs = dict(attrs or {})
        names = attrs.get(schema.ATTR_DETECTOR_NAMES)
        if isinstance(names, str):
            names = schema.decode_attr(self._label, schema.ATTR_DETECTOR_NAMES, names)
        self._n_detectors = len(schema.check_detector_names(self._label, names)) if names is not None else None
        if geometry is not None:
            attrs[schema.ATTR_GEOMETRY] = geometry.to_dict()
        parent = self.path.parent
        if not parent.is_dir():
            raise CaloforgeError(f"{path}: cannot write the output file: directory {parent} does not exist")
        self._tmp = temp_path_for(self.path)
        try:
            self._h5 = h5py.File(self._tmp, "w")
        except OSError as exc:
            raise CaloforgeError(f"{path}: cannot write the output file ({_oneline(exc)})") from None
        try:
            self._create(attrs, compression, compression_level)
        except BaseException:
            self.abort()
            raise

    def _create(self, attrs: dict, compression: str | None, level: int) -> None:
        rows = chunk_rows_for(self.n_voxels, self.expected_n)
        opts = {"compression": compression, "compression_opts": level} if compression == "gzip" else {
            "compression": compression}
        f = self._h5
        f.create_dataset(schema.ENERGIES, (0, 1), schema.FLOAT_DTYPE, maxshape=(None, 1),
                         chunks=(max(rows, 1024), 1), **opts)
        f.create_dataset(schema.SHOWERS, (0, self.n_voxels), schema.FLOAT_DTYPE, maxshape=(None, self.n_voxels),
                         chunks=(rows, self.n_voxels), **opts)
        for name in self.extras:
            f.create_dataset(name, (0, 1), schema.EXTRA_STORAGE[name], maxshape=(None, 1),
                             chunks=(max(rows, 1024), 1), **opts)
        for key, value in attrs.items():
            try:
                f.attrs[key] = schema.encode_attr(key, value)
            except (TypeError, ValueError) as exc:
                raise DataError(f"{self._label}: attribute '{key}': cannot store a {type(value).__name__} "
                                f"({_oneline(exc)})") from None

    def append(self, energies, showers, extras: dict | None = None) -> None:
        """Check and append n showers: energies (n,) or (n, 1) MeV, showers (n, V) MeV, extras name -> (n,)."""
        if self._h5 is None:
            raise DataError(f"{self._label}: the writer is closed")
        e = np.asarray(energies, dtype=np.float64)
        s = np.asarray(showers)
        n = e.shape[0] if e.ndim else -1
        if e.ndim not in (1, 2) or (e.ndim == 2 and e.shape[1] != 1):
            raise DataError(f"{self._label}: dataset '{schema.ENERGIES}': expected shape (n,) or (n, 1), "
                            f"found {e.shape}")
        if s.ndim != 2 or s.shape != (n, self.n_voxels):
            raise DataError(f"{self._label}: dataset '{schema.SHOWERS}': expected shape ({n}, {self.n_voxels}), "
                            f"found {s.shape}")
        extras = dict(extras or {})
        if set(extras) != set(self.extras):
            raise DataError(f"{self._label}: extras: expected {sorted(self.extras)}, found {sorted(extras)}")
        cols = {}
        for name in self.extras:
            v = np.asarray(extras[name])
            if v.reshape(-1).shape != (n,) or v.ndim > 2:
                raise DataError(f"{self._label}: dataset '{name}': expected shape ({n},), found {v.shape}")
            if not schema.is_kind(v.dtype, schema.EXTRAS[name]) and not (name == "detector_id" and v.dtype == bool):
                raise DataError(f"{self._label}: dataset '{name}': expected {schema.kind_name(schema.EXTRAS[name])} "
                                f"dtype, found {v.dtype}")
            cols[name] = v.reshape(-1)
        check_values(self._label, e, s, cols, row_offset=self.n_written, n_detectors=self._n_detectors)
        if n == 0:
            return
        lo, hi = self.n_written, self.n_written + n
        try:
            for name, block in ((schema.ENERGIES, e.reshape(n, 1)), (schema.SHOWERS, s),
                                *((k, v.reshape(n, 1)) for k, v in cols.items())):
                ds = self._h5[name]
                ds.resize(hi, axis=0)
                ds[lo:hi] = block
        except OSError as exc:
            raise CaloforgeError(f"{self._label}: cannot write the output file ({_oneline(exc)})") from None
        self.n_written = hi

    def close(self) -> Path:
        """Finish the file and move it into place; returns the final path."""
        if self._h5 is None:
            return self.path
        if self.expected_n is not None and self.n_written != self.expected_n:
            self.abort()
            raise DataError(f"{self._label}: expected {self.expected_n} showers, {self.n_written} were written")
        try:
            self._h5.close()
            self._h5 = None
            os.replace(self._tmp, self.path)
        except OSError as exc:
            self.abort()
            raise CaloforgeError(f"{self._label}: cannot write the output file ({_oneline(exc)})") from None
        return self.path

    def abort(self) -> None:
        """Discard the partial file."""
        if self._h5 is not None:
            with contextlib.suppress(Exception):  # closing a broken file must not hide the original error
                self._h5.close()
            self._h5 = None
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_showers(
    path: str | Path,
    energies,
    showers,
    extras: dict | None = None,
    attrs: dict | None = None,
    geometry: Geometry | None = None,
    compression: str | None = "gzip",
) -> Path:
    """Write a whole file at once (atomic): energies (N,) MeV, showers (N, V) MeV, optional extras (N,)."""
    s = np.asarray(showers)
    if s.ndim != 2:
        raise DataError(f"{path}: dataset '{schema.SHOWERS}': expected shape (N, n_voxels), found {s.shape}")
    extras = extras or {}
    with ShowerWriter(path, s.shape[1], geometry, attrs, tuple(extras), expected_n=s.shape[0],
                      compression=compression) as w:
        w.append(energies, s, extras)
    return w.path
