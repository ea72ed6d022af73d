"""Several training files in one run (one per detector, same mesh): which model slot each shower takes, and which
rows a step draws when the recipe weights the detectors.

A file's showers are mapped to the model's detector slots by NAME (``ConditionEncoder.slot``): per row through the
file's ``detector_id`` + ``detector_names``, or for the whole file through a given name, the file's single
``detector_names`` entry or its ``detector`` attribute (GFlash files). Slots are therefore a property of the model
(its slot table), never of a global preset numbering. Weighted draws are a pure function of (seed, step), so resume
and DDP keep their guarantees: every rank computes the same global batch and takes its slice. Pure numpy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from caloforge.data import schema
from caloforge.data.reader import ShowerFile
from caloforge.errors import ConfigError, DataError


@dataclass(frozen=True)
class DataSource:
    """One training file; ``detector`` (when set) names the detector of every shower in it."""

    path: Path
    detector: str | None = None


def as_sources(data, detector: str | None = None) -> list[DataSource]:
    """A path, a DataSource or a list of them -> DataSources; ``detector`` applies to plain paths."""
    items = list(data) if isinstance(data, (list, tuple)) else [data]
    if not items:
        raise ConfigError("--data: expected at least one shower file")
    out = [d if isinstance(d, DataSource) else DataSource(Path(d), detector) for d in items]
    if len({s.path.resolve() for s in out}) != len(out):
        raise ConfigError(f"--data: the same file is given twice ({[str(s.path) for s in out]})")
    return out


def whole_file_detector(f: ShowerFile) -> str | None:
    """The detector of every shower of a file without per-row ids: one listed name or the 'detector' attribute."""
    names = f.attrs.get(schema.ATTR_DETECTOR_NAMES)
    if isinstance(names, list) and len(names) == 1:
        return names[0]
    det = f.attrs.get("detector")
    return det if isinstance(det, str) and det else None


def row_slots(f: ShowerFile, encoder, detector: str | None = None) -> np.ndarray | None:
    """The model slot of every row of an open file (N,) int64, or None when the model has no detector condition."""
    if not getattr(encoder, "n_detectors", 0):
        return None
    label = str(f.path)
    if detector is not None:
        return np.full(f.n, encoder.slot(detector), dtype=np.int64)
    if not encoder.named:  # an unnamed table: the file's detector_id is the slot (single-file recipes)
        if "detector_id" not in f.extras:
            raise DataError(f"{label}: dataset 'detector_id' is missing but the recipe conditions on 'detector'")
        return np.asarray(f.extra("detector_id"), dtype=np.int64).reshape(-1)
    names = f.attrs.get(schema.ATTR_DETECTOR_NAMES)
    if "detector_id" in f.extras and isinstance(names, list) and names:
        ids = np.asarray(f.extra("detector_id"), dtype=np.int64).reshape(-1)
        used = np.unique(ids)
        if used.size and (used[0] < 0 or used[-1] >= len(names)):
            raise DataError(f"{label}: dataset 'detector_id': expected ids in [0, {len(names)}) "
                            f"(attribute '{schema.ATTR_DETECTOR_NAMES}'), found {int(used[-1])}")
        lut = np.full(len(names), -1, dtype=np.int64)
        for i in used:
            lut[i] = _slot(encoder, names[i], label)
        return lut[ids]
    name = whole_file_detector(f)
    if name is None:
        raise DataError(f"{label}: cannot tell which detector the showers come from (no 'detector_id' + "
                        f"'{schema.ATTR_DETECTOR_NAMES}', no 'detector' attribute); name it (e.g. adapt --detector)")
    return np.full(f.n, _slot(encoder, name, label), dtype=np.int64)


def _slot(encoder, name: str, label: str) -> int:
    if name not in encoder.detector_names:
        raise DataError(f"{label}: detector {name!r} has no slot in the model's table {encoder.detector_names}; "
                        f"add it to data.detectors (or adapt to it)")
    return encoder.slot(name)


def slot_weights(weights_by_name: dict[str, float], encoder, present: np.ndarray, label: str) -> dict[int, float]:
    """Per-slot weights for the detectors present in the data; every present detector needs a weight."""
    out = {}
    for slot in present.tolist():
        name = encoder.detector_names[slot] if encoder.named or slot < len(encoder.detector_names) else None
        if name is None or name not in weights_by_name:
            raise ConfigError(f"{label}: data.detector_weights: expected a weight for detector "
                              f"{name if name is not None else slot!r} (present in the training files), found none")
        out[slot] = float(weights_by_name[name])
    for name in weights_by_name:
        if name not in encoder.detector_names or encoder.slot(name) not in out:
            raise ConfigError(f"{label}: data.detector_weights: {name!r} has no showers in the training files")
    if not any(w > 0 for w in out.values()):
        raise ConfigError(f"{label}: data.detector_weights: expected a weight > 0 for a detector in the files")
    return out


class WeightedRows:
    """Rows of a weighted global batch: a detector per row drawn by weight, then a row of it uniformly."""

    def __init__(self, slots: np.ndarray, weights: dict[int, float], seed: int):
        keys = sorted(k for k, w in weights.items() if w > 0)
        self.groups = [np.flatnonzero(slots == k) for k in keys]  # global rows of each weighted detector
        p = np.array([weights[k] for k in keys], dtype=np.float64)
        self.p, self.seed = p / p.sum(), int(seed)

    def rows(self, step: int, batch: int, key: int = 0x5107) -> np.ndarray:
        rng = np.random.default_rng([self.seed, int(step), key])
        which = rng.choice(len(self.groups), size=batch, p=self.p)
        out = np.empty(batch, dtype=np.int64)
        for g, rows in enumerate(self.groups):
            sel = np.flatnonzero(which == g)
            out[sel] = rows[rng.integers(0, len(rows), sel.size)]
        return out
