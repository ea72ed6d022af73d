"""Invertible preprocessing steps between shower voxels (MeV) and the space a generative model learns in.

Every step maps ``forward(x, e) -> y`` and ``inverse(y, e) -> x`` on float arrays ``x`` (n, V) and incident energies
``e`` (n,) in MeV, returns new arrays (inputs are never modified) and computes in float64. Its ``state()`` holds the
parameters and any fitted statistics as plain JSON types, because it is saved inside training checkpoints; the
``kind`` names are the ones recipes use. Where a step is only invertible on part of its domain the docstring says
what the inverse returns elsewhere. Pure numpy.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import numpy as np

from caloforge.errors import ConfigError, DataError
from caloforge.transforms.stats import RunningMoments


def _number(kind: str, name: str, value: Any, lo: float = -math.inf, hi: float = math.inf, lo_open=False) -> float:
    """A finite float within [lo, hi] (or (lo, hi]), else a one-line ConfigError naming step and parameter."""
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    v = float(value) if ok else math.nan
    if not (ok and math.isfinite(v) and (v > lo if lo_open else v >= lo) and v <= hi):
        span = f"{'(' if lo_open else '['}{lo:g}, {hi:g}]"
        raise ConfigError(f"step '{kind}': parameter '{name}': expected a finite number in {span}, found {value!r}")
    return v


def _energies(e, n: int, kind: str) -> np.ndarray:
    e = np.asarray(e, dtype=np.float64).reshape(-1)
    if e.shape[0] != n:
        raise DataError(f"step '{kind}': expected {n} incident energies (one per shower), found {e.shape[0]}")
    return e


@dataclass
class Step:
    """Base class: identity, no statistics. Subclasses are dataclasses whose init fields are their parameters."""

    kind: ClassVar[str] = ""

    @property
    def needs_fit(self) -> bool:
        return False

    def fit(self, stream: Iterable[tuple[np.ndarray, np.ndarray]]) -> None:
        """Accumulate statistics from (x, e) batches already mapped by the steps before this one."""

    def forward(self, x: np.ndarray, e: np.ndarray) -> np.ndarray:
        return np.array(x, dtype=np.float64)

    def inverse(self, y: np.ndarray, e: np.ndarray) -> np.ndarray:
        return np.array(y, dtype=np.float64)

    @classmethod
    def parameter_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls) if f.init)

    def state(self) -> dict:
        out: dict[str, Any] = {"kind": self.kind}
        for name in self.parameter_names():
            v = getattr(self, name)
            out[name] = v.tolist() if isinstance(v, np.ndarray) else v
        return out


@dataclass
class Scale(Step):
    """Multiply by a constant: MeV -> GeV (1e-3), or undo a sampling fraction (0.033)."""

    kind: ClassVar[str] = "scale"
    factor: float = 1.0

    def __post_init__(self):
        self.factor = _number(self.kind, "factor", self.factor)
        if self.factor == 0:
            raise ConfigError("step 'scale': parameter 'factor': expected a non-zero number, found 0")

    def forward(self, x, e):
        return np.asarray(x, dtype=np.float64) * self.factor

    def inverse(self, y, e):
        return np.asarray(y, dtype=np.float64) / self.factor


@dataclass
class DivideByEnergy(Step):
    """x / (k E_inc): voxel energies as a fraction of the largest plausible deposit (CaloDiffusion's MAXDEP k = 2).

    E_inc is always in MeV, so put this step before any ``scale`` (its output is dimensionless).
    """

    kind: ClassVar[str] = "divide_by_energy"
    k: float = 2.0

    def __post_init__(self):
        self.k = _number(self.kind, "k", self.k, lo=0.0, lo_open=True)

    def _denominator(self, e, n: int) -> np.ndarray:
        e = _energies(e, n, self.kind)
        if np.any(~(e > 0)):
            raise DataError(f"step '{self.kind}': incident energies must be > 0 MeV, found {float(e[~(e > 0)][0]):g}")
        return (self.k * e)[:, None]  # (n, 1)

    def forward(self, x, e):
        x = np.asarray(x, dtype=np.float64)
        return x / self._denominator(e, x.shape[0])

    def inverse(self, y, e):
        y = np.asarray(y, dtype=np.float64)
        return y * self._denominator(e, y.shape[0])


@dataclass
class Log(Step):
    """log(x + eps). Negative inputs are treated as 0; the inverse clips at 0, so zeros come back as exactly 0."""

    kind: ClassVar[str] = "log"
    eps: float = 1e-6

    def __post_init__(self):
        self.eps = _number(self.kind, "eps", self.eps, lo=0.0, lo_open=True)

    def forward(self, x, e):
        return np.log(np.maximum(np.asarray(x, dtype=np.float64), 0.0) + self.eps)

    def inverse(self, y, e):
        return np.maximum(np.exp(np.asarray(y, dtype=np.float64)) - self.eps, 0.0)


@dataclass
class Power(Step):
    """x ** p for x >= 0 (0 < p <= 1): compresses the dynamic range like ``log`` but keeps 0 at 0, so an empty voxel
    and a voxel at the readout threshold stay apart on the same scale at every incident energy (no ``eps``). The
    inverse clips at 0."""

    kind: ClassVar[str] = "power"
    p: float = 0.25

    def __post_init__(self):
        self.p = _number(self.kind, "p", self.p, lo=0.0, hi=1.0, lo_open=True)

    def forward(self, x, e):
        return np.maximum(np.asarray(x, dtype=np.float64), 0.0) ** self.p

    def inverse(self, y, e):
        return np.maximum(np.asarray(y, dtype=np.float64), 0.0) ** (1.0 / self.p)


@dataclass
class Logit(Step):
    """logit(alpha + (1 - 2 alpha) x) for x in [0, 1].

    Inputs outside [0, 1] cannot be represented: they are clipped, counted in ``n_clipped`` and reported once by a
    warning (a large count means an earlier step, e.g. ``divide_by_energy`` with too small a k, is mis-set). The
    inverse clips its result to [0, 1], so any model output maps back to a physical fraction.
    """

    kind: ClassVar[str] = "logit"
    alpha: float = 1e-6
    n_clipped: int = field(default=0, init=False, repr=False)

    def __post_init__(self):
        self.alpha = _number(self.kind, "alpha", self.alpha, lo=0.0, hi=0.4999, lo_open=True)

    def forward(self, x, e):
        x = np.asarray(x, dtype=np.float64)
        outside = int(np.count_nonzero((x < 0) | (x > 1)))
        if outside:
            self.n_clipped += outside
            warnings.warn("logit step: inputs outside [0, 1] were clipped (count in Logit.n_clipped)", stacklevel=2)
        z = self.alpha + (1 - 2 * self.alpha) * np.clip(x, 0.0, 1.0)
        return np.log(z) - np.log1p(-z)

    def inverse(self, y, e):
        s = 0.5 * (1.0 + np.tanh(0.5 * np.asarray(y, dtype=np.float64)))  # sigmoid without overflow
        return np.clip((s - self.alpha) / (1 - 2 * self.alpha), 0.0, 1.0)


@dataclass
class Standardise(Step):
    """(x - mean) / std, with one mean/std for everything ("global") or one per voxel ("voxel").

    Statistics are fitted from the training data in one streaming pass, or given in the recipe (then no fit is
    needed). A fitted std below 1e-8 (a voxel that is constant, e.g. always empty) is replaced by 1 so the step stays
    invertible.
    """

    kind: ClassVar[str] = "standardise"
    mode: str = "global"
    mean: Any = None
    std: Any = None

    def __post_init__(self):
        if self.mode not in ("global", "voxel"):
            raise ConfigError(f"step 'standardise': parameter 'mode': expected 'global' or 'voxel', found {self.mode!r}")
        if (self.mean is None) != (self.std is None):
            raise ConfigError("step 'standardise': parameters 'mean' and 'std': expected both or neither, found one")
        if self.mean is not None:
            self.mean, self.std = self._checked(self.mean, "mean"), self._checked(self.std, "std")
            if np.any(self.std <= 0) or self.mean.shape != self.std.shape:
                raise ConfigError("step 'standardise': parameter 'std': expected positive values shaped like 'mean'")

    def _checked(self, value, name: str) -> np.ndarray:
        try:
            arr = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            arr = np.array(np.nan)
        want_dim = 0 if self.mode == "global" else 1
        if arr.ndim != want_dim or not np.all(np.isfinite(arr)):
            what = "a finite number" if want_dim == 0 else "a list of finite numbers (one per voxel)"
            shown = value if np.size(value) < 5 else f"{type(value).__name__} of shape {np.shape(value)}"
            raise ConfigError(f"step 'standardise': parameter '{name}': expected {what} (mode {self.mode}), "
                              f"found {shown!r}")
        return arr

    @property
    def needs_fit(self) -> bool:
        return self.mean is None

    def fit(self, stream):
        moments = RunningMoments(per_column=self.mode == "voxel")
        for x, _ in stream:
            moments.update(x)
        if moments.count == 0:
            raise DataError("step 'standardise': no training data to fit the statistics on (the stream was empty)")
        std = moments.std
        self.mean, self.std = np.asarray(moments.mean), np.where(std < 1e-8, 1.0, std)

    def _stats(self, width: int) -> tuple[np.ndarray, np.ndarray]:
        if self.mean is None:
            raise ConfigError("step 'standardise': not fitted; call Chain.fit(...) on training data first")
        if self.mode == "voxel" and self.mean.shape[0] != width:
            raise DataError(f"step 'standardise': expected {self.mean.shape[0]} voxels per shower (fitted width), "
                            f"found {width}")
        return self.mean, self.std

    def forward(self, x, e):
        x = np.asarray(x, dtype=np.float64)
        mean, std = self._stats(x.shape[1])
        return (x - mean) / std

    def inverse(self, y, e):
        y = np.asarray(y, dtype=np.float64)
        mean, std = self._stats(y.shape[1])
        return y * std + mean


@dataclass
class Noise(Step):
    """Dequantisation: voxels below ``level`` are replaced by uniform noise in [0, level) on forward.

    The inverse zeroes everything below ``level``, so the round trip is exact for voxels that are 0 or >= level (pick
    a level at or below the readout threshold in the units at this point of the chain). ``seed`` makes the noise
    reproducible; each forward call draws fresh noise. ``reseed(key)`` restarts the stream from (seed, key), which
    the trainer does per (step, rank) so that resumed training sees the same noise.
    """

    kind: ClassVar[str] = "noise"
    level: float = 1e-7
    seed: int | None = None
    _rng: np.random.Generator = field(init=False, repr=False)

    def __post_init__(self):
        self.level = _number(self.kind, "level", self.level, lo=0.0, lo_open=True)
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            raise ConfigError(f"step 'noise': parameter 'seed': expected an integer or null, found {self.seed!r}")
        self._rng = np.random.default_rng(self.seed)

    def reseed(self, key: list[int]) -> None:
        self._rng = np.random.default_rng([*([] if self.seed is None else [self.seed % 2**32]), *key])

    def forward(self, x, e):
        x = np.array(x, dtype=np.float64)
        below = x < self.level
        x[below] = self._rng.uniform(0.0, self.level, int(np.count_nonzero(below)))
        return x

    def inverse(self, y, e):
        y = np.array(y, dtype=np.float64)
        y[y < self.level] = 0.0
        return y


@dataclass
class Threshold(Step):
    """Readout threshold: on inverse, voxels below ``value`` become 0 (as evaluate.py does). Forward is the identity
    unless ``both_directions`` (then training data are cut the same way)."""

    kind: ClassVar[str] = "threshold"
    value: float = 0.5e-3 / 0.033
    both_directions: bool = False

    def __post_init__(self):
        self.value = _number(self.kind, "value", self.value, lo=0.0)
        if not isinstance(self.both_directions, bool):
            raise ConfigError(f"step 'threshold': parameter 'both_directions': expected true or false, "
                              f"found {self.both_directions!r}")

    def _cut(self, x) -> np.ndarray:
        x = np.array(x, dtype=np.float64)
        x[x < self.value] = 0.0
        return x

    def forward(self, x, e):
        return self._cut(x) if self.both_directions else np.array(x, dtype=np.float64)

    def inverse(self, y, e):
        return self._cut(y)


STEPS: dict[str, type[Step]] = {cls.kind: cls for cls in (Scale, DivideByEnergy, Log, Power, Logit, Standardise, Noise,
                                                          Threshold)}


def step_from_config(d: dict) -> Step:
    """Build a step from ``{"kind": ..., **parameters}``; unknown kinds or parameters raise one-line ConfigErrors."""
    if not isinstance(d, dict) or "kind" not in d:
        raise ConfigError(f"expected a mapping with a 'kind' key, found {d!r}")
    kind = d["kind"]
    if kind not in STEPS:
        raise ConfigError(f"key 'kind': expected one of {sorted(STEPS)}, found {kind!r}")
    cls = STEPS[kind]
    allowed = cls.parameter_names()
    for key in d:
        if key != "kind" and key not in allowed:
            raise ConfigError(f"step '{kind}': unknown parameter '{key}' (expected one of: {', '.join(allowed)})")
    return cls(**{k: v for k, v in d.items() if k != "kind"})
