"""An ordered, invertible chain of preprocessing steps, declared as a list of dicts in a recipe.

``forward`` applies the steps in order, ``inverse`` undoes them in reverse. A step with statistics is fitted on the
outputs of the steps before it, so fitting takes one streaming pass over the training data per statistics step;
the caller supplies a factory that returns a fresh iterator of (x, e) batches for each pass. Arrays go in and come
out as float32; the steps compute in float64 in between, on row chunks so that memory stays bounded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import numpy as np

from caloforge.errors import ConfigError, DataError
from caloforge.progress import progress
from caloforge.transforms.steps import Step, step_from_config

STATE_VERSION = 1
CHUNK_ELEMENTS = 1 << 22  # float64 values per chunk (32 MB per intermediate array)

BatchFactory = Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]]


class Chain:
    """Steps applied in order on forward and in reverse order on inverse."""

    def __init__(self, steps: list[Step]):
        self.steps = list(steps)

    @classmethod
    def from_config(cls, steps: list[dict], where: str = "preprocessing") -> Chain:
        """Build from ``[{"kind": "log", "eps": 1e-6}, ...]``; errors name ``where[index]`` and the key."""
        if not isinstance(steps, (list, tuple)):
            raise ConfigError(f"{where}: expected a list of steps, found {type(steps).__name__}")
        built = []
        for i, d in enumerate(steps):
            try:
                built.append(step_from_config(d))
            except ConfigError as exc:
                raise ConfigError(f"{where}[{i}]: {exc}") from None
        return cls(built)

    # ---- fitting ------------------------------------------------------------------------------------------------
    @property
    def needs_fit(self) -> bool:
        return any(step.needs_fit for step in self.steps)

    def fit(self, batches: BatchFactory) -> Chain:
        """Fit every statistics step in order, one pass over ``batches()`` each (skipped when nothing needs a fit)."""
        for i, step in enumerate(self.steps):
            if step.needs_fit:
                bar = progress(batches(), desc=f"fitting {step.kind} (step {i})", unit="batch")
                step.fit(self._mapped(bar, i))
        return self

    def _mapped(self, batches: Iterable, upto: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for x, e in batches:
            x, e = self._checked(x, e)
            for step in self.steps[:upto]:
                x = step.forward(x, e)
            yield x, e

    # ---- mapping ------------------------------------------------------------------------------------------------
    @staticmethod
    def _checked(x, e) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(x)
        e = np.asarray(e, dtype=np.float64).reshape(-1)
        if x.ndim != 2:
            raise DataError(f"preprocessing: expected showers shaped (n, voxels), found shape {x.shape}")
        if e.shape[0] != x.shape[0]:
            raise DataError(f"preprocessing: expected {x.shape[0]} incident energies (one per shower), "
                            f"found {e.shape[0]}")
        return x, e

    def forward(self, x: np.ndarray, e: np.ndarray) -> np.ndarray:
        """Showers (n, V) in MeV and energies (n,) in MeV -> model space (n, V) float32."""
        return self._apply(x, e, [step.forward for step in self.steps])

    def inverse(self, y: np.ndarray, e: np.ndarray) -> np.ndarray:
        """Model space (n, V) -> showers (n, V) float32 in MeV."""
        return self._apply(y, e, [step.inverse for step in reversed(self.steps)])

    def reseed(self, key: list[int]) -> Chain:
        """Restart the random streams of the stochastic steps (dequantisation noise) from ``key``: the trainer keys
        them by (seed, step, rank), so a batch transformed after a resume gets exactly the noise it got before."""
        for i, step in enumerate(self.steps):
            if hasattr(step, "reseed"):
                step.reseed([*key, i])
        return self

    def _apply(self, x, e, functions) -> np.ndarray:
        """Run row chunks of ~CHUNK_ELEMENTS through the float64 steps, so memory stays bounded for any n."""
        x, e = self._checked(x, e)
        out = np.empty(x.shape, dtype=np.float32)
        rows = max(1, CHUNK_ELEMENTS // max(1, x.shape[1]))
        for start in range(0, x.shape[0], rows):
            part, part_e = np.asarray(x[start:start + rows], dtype=np.float64), e[start:start + rows]
            for fn in functions:
                part = fn(part, part_e)
            out[start:start + rows] = part
        return out

    # ---- persistence --------------------------------------------------------------------------------------------
    def state(self) -> dict:
        """Plain JSON-able description (parameters and fitted statistics), stored inside checkpoints."""
        return {"version": STATE_VERSION, "steps": [step.state() for step in self.steps]}

    @classmethod
    def from_state(cls, d: dict) -> Chain:
        if not isinstance(d, dict) or d.get("version") != STATE_VERSION or "steps" not in d:
            found = d.get("version") if isinstance(d, dict) else type(d).__name__
            raise ConfigError(f"preprocessing state: expected version {STATE_VERSION} with 'steps', found {found!r}")
        return cls.from_config(d["steps"], where="preprocessing state")

    def __repr__(self) -> str:
        return "Chain(" + " -> ".join(step.kind for step in self.steps) + ")"
