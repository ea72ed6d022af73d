"""Writing shower files in the official CaloChallenge layout, atomically and in streamed chunks.

The file is built under ``caloforge.outputs.temp_name`` (a hidden sibling naming the process, so the next start
removes it if the process was killed) and renamed onto ``<name>`` only when complete, so a crash, a bad value, a
full disk or an interrupt never leaves a half-written file under the final name, nor a temporary file. Values are checked before they
are written (energies finite and > 0, showers finite and >= 0): caloforge never writes a file it would reject.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import h5py
import numpy as np

from caloforge.data import schema
from caloforge.data.geometry import Geometry
from caloforge.data.validate import check_values
from caloforge.errors import CaloforgeError, DataError
from caloforge.outputs import OutputError, disk_error_message, temp_name

if TYPE_CHECKING:
    from typing_extensions import Self

#: Target size of one compressed-chunk of showers before compression (rows are never split across chunks).
_CHUNK_BYTES = 2 * 2**20


def chunk_rows_for(n_voxels: int, expected_n: int | None = None) -> int:
    """Rows per HDF5 chunk: about 2 MiB of float32 showers (80 rows for DS2, 12 for DS3), at most 1024."""
    rows = int(np.clip(_CHUNK_BYTES // max(4 * n_voxels, 1), 1, 1024))
    return max(1, min(rows, expected_n)) if expected_n else rows


def _oneline(exc: BaseException) -> str:
    return " ".join((getattr(exc, "strerror", None) or str(exc)).split())


def _write_error(path: Path, exc: Exception) -> CaloforgeError:
    """One line for a failed write: the full-disk line of ``caloforge.outputs``, else the HDF5 reason."""
    full = disk_error_message(path, exc)
    return OutputError(full) if full else CaloforgeError(f"{path}: cannot write the output file ({_oneline(exc)})")


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
        bytes_per_row: float | None = None,
    ):
        self.path = Path(path)
        self._row_bytes_hint = bytes_per_row  # expected stored bytes per shower (free-space check of the 1st batch)
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
        self._tmp = self.tmp_path = temp_name(self.path)
        self._h5 = None
        try:
            # no chunk cache: every write reaches the disk inside the call that can report its failure
            self._h5 = h5py.File(self._tmp, "w", rdcc_nbytes=0)
        except OSError as exc:
            self.abort()
            raise _write_error(self.path, exc) from None
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
        self._check_room(n)
        try:
            for name, block in ((schema.ENERGIES, e.reshape(n, 1)), (schema.SHOWERS, s),
                                *((k, v.reshape(n, 1)) for k, v in cols.items())):
                ds = self._h5[name]
                ds.resize(hi, axis=0)
                ds[lo:hi] = block
                del ds
            self._h5.flush()  # write errors surface here, not later in a destructor that cannot report them
        except (OSError, RuntimeError) as exc:  # h5py raises RuntimeError for a failed flush
            self.abort()  # at once: a broken HDF5 file must not live on (h5py would crash closing it at exit)
            raise _write_error(self.path, exc) from None
        self.n_written = hi

    def _check_room(self, n: int) -> None:
        """Refuse, before HDF5 sees a full disk, a batch that may not fit: its size is estimated from the bytes per
        row written so far or ``bytes_per_row`` (x1.5 margin), else uncompressed, plus 1 MiB of metadata."""
        if self.n_written:
            per_row = 1.5 * self._tmp.stat().st_size / self.n_written
        else:
            per_row = 1.5 * self._row_bytes_hint if self._row_bytes_hint else 4 * (self.n_voxels + 1 + len(self.extras))
        need = int(n * per_row) + 2**20
        free = shutil.disk_usage(self._tmp.parent).free
        if need > free:
            self.abort()
            raise OutputError(f"{self.path}: not enough free space: the next {n} showers need about "
                              f"{need / 1e6:.1f} MB but only {free / 1e6:.1f} MB are free there; free some space or "
                              f"choose another folder")

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
        except (OSError, RuntimeError) as exc:
            self.abort()
            raise _write_error(self.path, exc) from None
        return self.path

    def abort(self) -> None:
        """Discard the partial file.

        On a full disk HDF5 cannot flush its metadata when closing, leaves the file half-open and crashes the
        interpreter at exit (segfault). Truncating the doomed file first frees its space, so the close succeeds.
        """
        if self._h5 is not None:
            with contextlib.suppress(OSError):
                os.truncate(self._tmp, 0)
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
