"""Condition vectors for the network: incident energy, optionally angles and a detector one-hot.

Column order: ``[energy, sin(phi), cos(phi), theta / pi, one-hot(K + 1)]``, the angle and detector blocks present
only when enabled. The energy term ``log10(E / Emin) / log10(Emax / Emin)`` is 0 at Emin and 1 at Emax; energies
outside the range are not clipped (they extrapolate linearly in log E). phi goes in as (sin, cos) so that -pi and pi
meet; theta lies in [0, pi] so theta / pi is already in [0, 1]. With ``n_detectors = K > 0`` the one-hot has K + 1
columns: one per known detector and a spare slot (index K) for fine-tuning on a new one, as CaloDiT-2 does.
Conditions the encoder was not built for (e.g. angles when ``angles=False``) are ignored. Pure numpy.

Detector slots belong to the model, not to a global preset list: ``detector_names`` is the slot table, K + 1 entries
(slot k holds detector ``detector_names[k]``; the last entry is the reserved slot, ``None`` until a run is adapted to
a new detector, then that detector's name). It travels in ``state()``, so a checkpoint says which slot means what.
"""

from __future__ import annotations

import numpy as np

from caloforge.errors import CaloforgeError, ConfigError


class ConditionEncoder:
    """Map per-shower conditions to an (n, dim) float32 matrix."""

    def __init__(self, energy_range_mev: tuple[float, float] = (1e3, 1e6), angles: bool = False, n_detectors: int = 0,
                 detector_names=None):
        lo, hi = (float(v) for v in energy_range_mev)
        if not (0 < lo < hi and np.isfinite(hi)):
            raise ConfigError(f"conditions: energy_range_mev: expected 0 < Emin < Emax, found {energy_range_mev!r}")
        if isinstance(n_detectors, bool) or int(n_detectors) != n_detectors or n_detectors < 0:
            raise ConfigError(f"conditions: n_detectors: expected an integer >= 0, found {n_detectors!r}")
        self.energy_range_mev = (lo, hi)
        self.angles = bool(angles)
        self.n_detectors = int(n_detectors)
        self.detector_names = _slot_table(detector_names, self.n_detectors)

    @property
    def dim(self) -> int:
        return 1 + (3 if self.angles else 0) + (self.n_detectors + 1 if self.n_detectors else 0)

    @property
    def new_detector_id(self) -> int:
        """The spare one-hot slot, for a detector the model has not been trained on."""
        return self.n_detectors

    @property
    def named(self) -> bool:
        """True when the known slots carry detector names (files are then mapped to slots by name)."""
        return bool(self.n_detectors) and all(n is not None for n in self.detector_names[:-1])

    def slot(self, name: str) -> int:
        """The one-hot slot of a detector name; an unknown name is a one-line error listing the table."""
        if self.n_detectors and name in self.detector_names:
            return self.detector_names.index(name)
        raise CaloforgeError(f"conditions: detector {name!r}: not in this model's slot table "
                             f"{self.detector_names} (the last entry is the reserved slot for a new detector)")

    def with_new_detector(self, name: str) -> ConditionEncoder:
        """A copy whose reserved slot (index K) holds ``name``: what ``caloforge adapt`` stores in the new run."""
        if not self.n_detectors:
            raise ConfigError("conditions: this model has no detector condition, so it has no reserved slot")
        if name in self.detector_names[:-1]:
            raise ConfigError(f"conditions: detector {name!r} already has slot {self.detector_names.index(name)} "
                              f"in {self.detector_names}; adapt to a detector the model was not trained on")
        if self.detector_names[-1] not in (None, name):
            raise ConfigError(f"conditions: the reserved slot already holds {self.detector_names[-1]!r}; "
                              f"adapting again to {name!r} would overwrite it")
        return ConditionEncoder(self.energy_range_mev, self.angles, self.n_detectors, [*self.detector_names[:-1], name])

    def encode(self, energies, phi=None, theta=None, detector_id=None) -> np.ndarray:
        """Energies (n,) MeV, phi/theta (n,) rad, detector_id (n,) int -> (n, dim) float32."""
        e = np.asarray(energies, dtype=np.float64).reshape(-1)
        n = e.shape[0]
        if np.any(~(e > 0)) or np.any(~np.isfinite(e)):
            bad = e[~((e > 0) & np.isfinite(e))][0]
            raise CaloforgeError(f"conditions: incident energy: expected finite values > 0 MeV, found {float(bad):g}")
        lo, hi = self.energy_range_mev
        cols = [np.log10(e / lo) / np.log10(hi / lo)]
        if self.angles:
            phi = self._required(phi, "phi", "incident_phi", n)
            theta = self._required(theta, "theta", "incident_theta", n)
            cols += [np.sin(phi), np.cos(phi), theta / np.pi]
        out = np.stack(cols, axis=1)  # (n, 1 or 4)
        if self.n_detectors:
            ids = self._required(detector_id, "detector_id", "detector_id", n)
            if np.any(ids != np.round(ids)) or np.any((ids < 0) | (ids > self.n_detectors)):
                bad = ids[(ids != np.round(ids)) | (ids < 0) | (ids > self.n_detectors)][0]
                raise CaloforgeError(f"conditions: detector_id: expected integers in [0, {self.n_detectors}] "
                                     f"({self.n_detectors} known detectors + 1 new slot), found {float(bad):g}")
            onehot = np.zeros((n, self.n_detectors + 1))  # (n, K + 1)
            onehot[np.arange(n), ids.astype(np.int64)] = 1.0
            out = np.concatenate([out, onehot], axis=1)
        return out.astype(np.float32)

    @staticmethod
    def _required(values, name: str, dataset: str, n: int) -> np.ndarray:
        if values is None:
            raise CaloforgeError(f"conditions: '{name}' is required by this model (dataset '{dataset}'), found none")
        v = np.asarray(values, dtype=np.float64).reshape(-1)
        if v.shape[0] != n or not np.all(np.isfinite(v)):
            raise CaloforgeError(f"conditions: '{name}': expected {n} finite values (one per shower), "
                                 f"found {v.shape[0]} values" + ("" if v.shape[0] != n else " with non-finite ones"))
        return v

    def state(self) -> dict:
        return {"energy_range_mev": list(self.energy_range_mev), "angles": self.angles,
                "n_detectors": self.n_detectors, "detector_names": list(self.detector_names)}

    @classmethod
    def from_state(cls, d: dict) -> ConditionEncoder:
        try:
            return cls(tuple(d["energy_range_mev"]), bool(d["angles"]), int(d["n_detectors"]),
                       d.get("detector_names"))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"conditions state: expected energy_range_mev, angles, n_detectors, found {d!r} ({exc})"
                              ) from None

    def __repr__(self) -> str:
        return (f"ConditionEncoder(energy_range_mev={self.energy_range_mev}, angles={self.angles}, "
                f"n_detectors={self.n_detectors}, detector_names={self.detector_names})")


def _slot_table(names, k: int) -> list:
    """K + 1 slot names from K names (reserved slot empty) or K + 1 names (reserved slot taken); None = unnamed."""
    if names is None:
        return [None] * (k + 1) if k else []
    names = [None if n is None else str(n) for n in names]
    if not k:
        if names:
            raise ConfigError(f"conditions: detector_names {names} given but n_detectors is 0")
        return []
    if len(names) == k:
        names = [*names, None]
    if len(names) != k + 1:
        raise ConfigError(f"conditions: detector_names: expected {k} names (+ the reserved slot), found {len(names)}")
    known = [n for n in names if n is not None]
    if len(set(known)) != len(known):
        raise ConfigError(f"conditions: detector_names: expected distinct names, found {names}")
    return names
