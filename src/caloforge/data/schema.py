"""The shower-file schema: the official CaloChallenge layout plus caloforge's optional multi-detector extension.

Official layout (what ``evaluate.py`` reads; every caloforge file is also a valid official file):

==================== ============ ========= ====================================================================
dataset              shape        dtype     meaning
==================== ============ ========= ====================================================================
``incident_energies`` (N, 1)       float     energy of the incoming particle, MeV
``showers``           (N, V)       float     voxel energy deposits, MeV, CaloChallenge flat order (r, alpha, layer)
==================== ============ ========= ====================================================================

Optional per-shower datasets (the multi-detector / multi-angle extension; absent in official files):

- ``incident_phi`` (N, 1) float, rad: azimuth of the incoming particle.
- ``incident_theta`` (N, 1) float, rad: polar angle of the incoming particle.
- ``detector_id`` (N, 1) integer: index into the file attribute ``detector_names``.

Optional file attributes (JSON strings so that any HDF5 tool can read them):

- ``detector_names``: JSON list of detector names; ``detector_id`` k means ``detector_names[k]``.
- ``caloforge_geometry``: JSON of ``Geometry.to_dict()``; lets a file carry a non-official readout mesh.
- ``caloforge_split``: JSON provenance written by ``caloforge data split`` (source, seed, fractions, part).

Pure metadata and attribute (de)coding; no file I/O here.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from caloforge.data.geometry import Geometry
from caloforge.errors import DataError

ENERGIES = "incident_energies"
SHOWERS = "showers"

#: Optional per-shower datasets -> numpy kind they must have ('f' float, 'i' signed/unsigned integer).
EXTRAS: dict[str, str] = {"incident_phi": "f", "incident_theta": "f", "detector_id": "i"}

ATTR_DETECTOR_NAMES = "detector_names"
ATTR_GEOMETRY = "caloforge_geometry"
ATTR_SPLIT = "caloforge_split"
#: Attributes stored as JSON text and decoded to Python objects when read.
JSON_ATTRS = (ATTR_DETECTOR_NAMES, ATTR_GEOMETRY, ATTR_SPLIT)

#: Storage dtypes used by caloforge's writer (the official files are read whatever their float dtype).
FLOAT_DTYPE = np.float32
EXTRA_STORAGE = {"incident_phi": np.float32, "incident_theta": np.float32, "detector_id": np.int32}


def is_kind(dtype: np.dtype, kind: str) -> bool:
    """True when dtype is a float ('f') or an integer ('i', signed or unsigned) type."""
    return dtype.kind in ("iu" if kind == "i" else kind)


def kind_name(kind: str) -> str:
    return "an integer" if kind == "i" else "a float"


def encode_attr(key: str, value: Any) -> Any:
    """A value HDF5 can store: dicts/lists/tuples and the JSON attributes become JSON text."""
    if key in JSON_ATTRS or isinstance(value, (dict, list, tuple)):
        if isinstance(value, str) and key in JSON_ATTRS:
            return value  # already JSON
        return json.dumps(value)
    if value is None:
        return "null"
    return value


def decode_attr(label: str, key: str, value: Any) -> Any:
    """A plain Python value from an HDF5 attribute; JSON attributes are parsed (bad JSON names the file)."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if isinstance(value, np.generic):
        value = value.item()
    elif isinstance(value, np.ndarray):
        value = value.tolist()
    if key in JSON_ATTRS and isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise DataError(f"{label}: attribute '{key}': expected JSON text, found invalid JSON ({exc})") from None
        except RecursionError:
            raise DataError(f"{label}: attribute '{key}': expected JSON text of a sane depth, found JSON nested "
                            f"too deeply to read") from None
    return value


def geometry_from_attrs(label: str, attrs: dict) -> Geometry | None:
    """The geometry recorded in the file's ``caloforge_geometry`` attribute, if any."""
    d = attrs.get(ATTR_GEOMETRY)
    if d is None:
        return None
    if not isinstance(d, dict):
        raise DataError(f"{label}: attribute '{ATTR_GEOMETRY}': expected a JSON object, found {type(d).__name__}")
    try:
        return Geometry.from_dict(d)
    except DataError as exc:
        raise DataError(f"{label}: attribute '{ATTR_GEOMETRY}': {exc}") from None


def check_detector_names(label: str, names: Any) -> list[str]:
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise DataError(f"{label}: attribute '{ATTR_DETECTOR_NAMES}': expected a JSON list of names, found {names!r}")
    return names
