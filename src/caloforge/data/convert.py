"""Converting shower files into caloforge's multi-detector schema: LEMURS files and plain CaloChallenge files.

LEMURS (CaloDiT-2's multi-detector set, zenodo 17076360), as its public loaders read it: ``showers`` (N, 9, 16, 45)
ordered (r, phi, z); ``incident_energy`` (N,) or (N, 1); ``incident_theta``, ``incident_phi`` in rad. The energy unit
is not written in the files; the loaders treat it as MeV (ranges [1e3, 1e6]), and so do we, with a check: a file
whose energies all lie below 1000 (less than the 1 GeV LEMURS minimum, if MeV) is refused unless the unit is given.
Voxel energies are copied as they are (MeV assumed; ``shower_scale`` multiplies them, e.g. 1/0.033 for the
CaloChallenge Par04 convention). The output is the CaloChallenge flat order (z, alpha, r, r fastest): a transpose,
so float32 values go through bit for bit. The detector is named once for the whole file (``detector_id`` 0,
``detector_names`` [name]) from the argument, the LEMURS file name (``LEMURS_<det>_...``) or a 'detector' attribute.

A CaloChallenge-layout file (e.g. Geant4 showers at one angle) is converted by adding constant angle columns and the
detector name, so it can join a multi-detector run or an adaptation.
"""

from __future__ import annotations

import re
from pathlib import Path

import h5py
import numpy as np

from caloforge.data import schema
from caloforge.data.geometry import Geometry
from caloforge.data.reader import ShowerFile, open_h5
from caloforge.errors import ConfigError, DataError

LEMURS_SHOWERS = "showers"
LEMURS_ENERGY = "incident_energy"
LEMURS_GRID = (9, 16, 45)  # (r, phi, z) as stored
#: The DS2 mesh LEMURS uses for the Par04 detectors (other detectors share the grid; pass their cell sizes).
LEMURS_CELL_MM = (4.65, 3.4)  # (dr, dz)
_UNITS = {"MeV": 1.0, "GeV": 1e3}
_NAME_RE = re.compile(r"LEMURS_([A-Za-z0-9]+)_")


def detect_layout(h5: h5py.File) -> str:
    """'lemurs' (4-D showers + incident_energy) or 'calochallenge' (2-D showers + incident_energies)."""
    s = h5.get(LEMURS_SHOWERS)
    if isinstance(s, h5py.Dataset) and s.ndim == 4 and LEMURS_ENERGY in h5:
        return "lemurs"
    if isinstance(s, h5py.Dataset) and s.ndim == 2 and schema.ENERGIES in h5:
        return "calochallenge"
    raise DataError(f"{h5.filename}: layout not recognised: expected LEMURS ('showers' (N, 9, 16, 45) + "
                    f"'{LEMURS_ENERGY}') or CaloChallenge ('showers' (N, V) + '{schema.ENERGIES}'); "
                    f"found {sorted(h5.keys())}")


def lemurs_to_flat(showers: np.ndarray) -> np.ndarray:
    """(n, R, A, Z) LEMURS order -> (n, Z * A * R) CaloChallenge flat order (r fastest)."""
    n = showers.shape[0]
    return np.ascontiguousarray(np.transpose(showers, (0, 3, 2, 1))).reshape(n, -1)


def flat_to_lemurs(flat: np.ndarray, grid=LEMURS_GRID) -> np.ndarray:
    """The inverse of ``lemurs_to_flat``: (n, Z * A * R) -> (n, R, A, Z)."""
    r, a, z = grid
    return np.ascontiguousarray(np.transpose(flat.reshape(-1, z, a, r), (0, 3, 2, 1)))


def energy_scale(label: str, energies: np.ndarray, unit: str) -> float:
    """MeV per file unit; 'auto' is MeV unless every energy is below 1000, which is ambiguous and refused."""
    if unit in _UNITS:
        return _UNITS[unit]
    if unit != "auto":
        raise ConfigError(f"--energy-unit: expected auto, MeV or GeV, found {unit!r}")
    if energies.size and float(np.max(energies)) < 1000.0:
        raise DataError(f"{label}: '{LEMURS_ENERGY}': every energy is below 1000 (max {float(np.max(energies)):g}): "
                        f"GeV, or MeV below the 1 GeV LEMURS minimum? pass --energy-unit GeV or MeV")
    return 1.0


def detector_name(path: Path, attrs: dict, given: str | None) -> str:
    """The detector of a whole file: given, else from a LEMURS file name, else from a 'detector' attribute."""
    if given:
        return given
    m = _NAME_RE.search(path.name)
    if m:
        return m.group(1)
    det = attrs.get("detector")
    if isinstance(det, bytes):
        det = det.decode()
    if isinstance(det, str) and det:
        return det
    raise ConfigError(f"{path}: cannot tell the detector from the file name or attributes; pass --detector NAME")


def _column(h5: h5py.File, name: str, n: int, label: str) -> np.ndarray:
    ds = h5.get(name)
    if not isinstance(ds, h5py.Dataset) or ds.shape not in ((n,), (n, 1)):
        found = "nothing" if ds is None else f"shape {getattr(ds, 'shape', '?')}"
        raise DataError(f"{label}: dataset '{name}': expected shape ({n},) or ({n}, 1), found {found}")
    return np.asarray(ds[...]).reshape(-1)


def convert_file(src, dst, detector: str | None = None, energy_unit: str = "auto", shower_scale: float = 1.0,
                 cell_mm: tuple[float, float] | None = None, theta: float | None = None, phi: float | None = None,
                 chunk: int = 2000) -> dict:
    """Write ``dst`` in the multi-detector schema from a LEMURS or CaloChallenge file; returns a summary dict."""
    src, label = Path(src), str(src)
    if not (shower_scale > 0 and np.isfinite(shower_scale)):
        raise ConfigError(f"--shower-scale: expected a finite factor > 0, found {shower_scale}")
    for name, v in (("--theta", theta), ("--phi", phi)):
        if v is not None and not np.isfinite(v):
            raise ConfigError(f"{name}: expected a finite angle in rad, found {v}")
    if theta is not None and not 0 < theta < np.pi:
        raise ConfigError(f"--theta: expected a polar angle in (0, pi) rad (pi/2 = normal incidence), found {theta}")
    with open_h5(src) as h5:
        layout = detect_layout(h5)
        attrs = {k: schema.decode_attr(label, k, v) for k, v in h5.attrs.items()}
    if layout == "lemurs":
        name = detector_name(src, attrs, detector)
        return _convert_lemurs(src, dst, name, energy_unit, shower_scale, cell_mm, theta, phi, chunk)
    per_row = detector is None and schema.ATTR_DETECTOR_NAMES in attrs and "detector_id" in h5_keys(src)
    name = None if per_row else detector_name(src, attrs, detector)  # None: keep the file's per-row detectors
    return _convert_calochallenge(src, dst, name, shower_scale, theta, phi, chunk)


def h5_keys(path: Path) -> set[str]:
    with open_h5(path) as h5:
        return set(h5.keys())


def _convert_lemurs(src, dst, name, energy_unit, shower_scale, cell_mm, theta, phi, chunk) -> dict:
    from caloforge.data.writer import ShowerWriter

    label = str(src)
    with open_h5(src) as h5:
        showers = h5[LEMURS_SHOWERS]
        n, grid = showers.shape[0], tuple(showers.shape[1:])
        e = _column(h5, LEMURS_ENERGY, n, label)
        scale = energy_scale(label, e, energy_unit)
        angles = {}
        for key, const in (("incident_theta", theta), ("incident_phi", phi)):
            angles[key] = _column(h5, key, n, label) if key in h5 else (
                None if const is None else np.full(n, const, dtype=np.float32))
        dr, dz = cell_mm or LEMURS_CELL_MM
        geometry = Geometry.regular(grid[2], grid[1], grid[0], dr, dz, name=f"lemurs-{name}")
        extras = ["detector_id"] + [k for k, v in angles.items() if v is not None]
        lossy = [k for k, v in (("showers", showers), ("incident_energy", e), *angles.items())
                 if v is not None and np.dtype(v.dtype).itemsize > 4]
        attrs = {"detector_names": [name], "detector": name, "converted_from": src.name,
                 "source_layout": "LEMURS (r, phi, z)", "energy_unit_assumed": "GeV" if scale == 1e3 else "MeV",
                 "shower_scale": float(shower_scale)}
        with ShowerWriter(dst, geometry.n_voxels, geometry=geometry, attrs=attrs, extras=extras,
                          expected_n=n) as w:
            for lo in range(0, n, chunk):
                hi = min(n, lo + chunk)
                flat = lemurs_to_flat(np.asarray(showers[lo:hi]))
                if shower_scale != 1.0:
                    flat = flat * shower_scale
                cols = {"detector_id": np.zeros(hi - lo, dtype=np.int32)}
                cols.update({k: v[lo:hi] for k, v in angles.items() if v is not None})
                w.append(e[lo:hi] * scale, flat, extras=cols)
    return {"layout": "lemurs", "n": int(n), "detector": name, "grid_r_phi_z": list(grid),
            "energy_unit": "GeV" if scale == 1e3 else "MeV", "narrowed_to_float32": lossy, "out": str(dst)}


def _convert_calochallenge(src, dst, name, shower_scale, theta, phi, chunk) -> dict:
    from caloforge.data.writer import ShowerWriter

    with ShowerFile(src) as f:
        missing = [k for k, v in (("incident_theta", theta), ("incident_phi", phi)) if k not in f.extras and v is None]
        extras = ["detector_id", *[k for k in ("incident_theta", "incident_phi") if k not in missing]]
        attrs = {k: v for k, v in f.attrs.items() if k not in (schema.ATTR_GEOMETRY, schema.ATTR_SPLIT)}
        attrs.update({"converted_from": Path(src).name, "shower_scale": float(shower_scale)})
        if name is not None:
            attrs.update({"detector_names": [name], "detector": name})
        with ShowerWriter(dst, f.n_voxels, geometry=f.geometry, attrs=attrs, extras=extras, expected_n=f.n) as w:
            for b in f.iter_batches(chunk, with_extras=True):
                cols = {"detector_id": np.zeros(len(b), dtype=np.int32) if name is not None else b.extras["detector_id"]}
                for key, const in (("incident_theta", theta), ("incident_phi", phi)):
                    if key in b.extras:
                        cols[key] = b.extras[key]
                    elif const is not None:
                        cols[key] = np.full(len(b), const, dtype=np.float32)
                w.append(b.energies, b.showers * shower_scale if shower_scale != 1.0 else b.showers, extras=cols)
        n = f.n
    return {"layout": "calochallenge", "n": int(n), "detector": name or "per row (kept)", "angles_missing": missing, "out": str(dst)}
