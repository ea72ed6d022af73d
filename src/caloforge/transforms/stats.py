"""Streaming mean / standard deviation, so preprocessing statistics never need the whole dataset in memory.

Each batch is reduced to (count, mean, M2) in float64 and merged into the running totals with Chan et al.'s
pairwise update, which is exact in exact arithmetic for any batching and numerically stable (no sum of squares).
The standard deviation is the population one (ddof=0), as ``numpy.std`` gives by default.
"""

from __future__ import annotations

import numpy as np


class RunningMoments:
    """Running count, mean and M2 (sum of squared deviations), either per column or over every element."""

    def __init__(self, per_column: bool):
        self.per_column = per_column
        self.count = 0
        self.mean: np.ndarray | None = None  # (V,) per column, () global
        self.m2: np.ndarray | None = None

    def update(self, batch: np.ndarray) -> None:
        """Merge one batch (n, V) into the totals."""
        x = np.asarray(batch, dtype=np.float64)
        if x.ndim != 2:
            raise ValueError(f"RunningMoments.update: expected a 2-D batch (n, V), got shape {x.shape}")
        if x.shape[0] == 0:
            return
        if self.per_column:
            n_b = x.shape[0]
            mean_b = x.mean(axis=0)  # (V,)
            m2_b = ((x - mean_b) ** 2).sum(axis=0)  # (V,)
        else:
            n_b = x.size
            mean_b = np.float64(x.mean())
            m2_b = np.float64(((x - mean_b) ** 2).sum())
        self._merge(n_b, mean_b, m2_b)

    def _merge(self, n_b: int, mean_b, m2_b) -> None:
        if self.count == 0:
            self.count, self.mean, self.m2 = n_b, np.array(mean_b), np.array(m2_b)
            return
        if self.mean.shape != np.shape(mean_b):
            raise ValueError(f"RunningMoments: batch width {np.shape(mean_b)} differs from earlier {self.mean.shape}")
        n = self.count + n_b
        delta = mean_b - self.mean
        self.mean = self.mean + delta * (n_b / n)
        self.m2 = self.m2 + m2_b + delta**2 * (self.count * n_b / n)
        self.count = n

    @property
    def var(self) -> np.ndarray:
        if self.count == 0:
            raise ValueError("RunningMoments: no data seen")
        return self.m2 / self.count

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(self.var)
