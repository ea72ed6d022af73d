"""Split a shower into what the two stages of a CaloDREAM-style model learn, and join them again.

Stage 1 learns the L layer energies, coded as the u-parametrisation (``layer_energy``), mapped through a logit and
standardised per layer. Stage 2 learns the thresholded shower conditioned on those codes: in MeV (the default; the
transform chain then divides by E_inc, takes logs, ...) or with each layer normalised to unit sum (``normalise``, as
CaloDREAM does). Joining thresholds the stage-2 output and then imposes the stage-1 layer energies, so the mean
longitudinal profile and the total deposit come from the small stage-1 model. Pure numpy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from caloforge.data.geometry import Geometry
from caloforge.errors import ConfigError, DataError
from caloforge.transforms.layer_energy import (
    denormalise_layers,
    layer_energies,
    layer_energies_to_u,
    normalise_layers,
    u_to_layer_energies,
)

STD_FLOOR = 1e-6  # a layer that is always empty has std 0; it must not blow up the standardisation


class LayerEnergyCoder:
    """showers (n, V) MeV <-> (stage-2 shapes (n, V), stage-1 codes (n, L)); see the module docstring."""

    def __init__(self, geometry: Geometry, threshold_mev: float, max_dep: float = 2.0, alpha: float = 1e-6,
                 mean=None, std=None, lo=None, hi=None, normalise: bool = False):
        if not 0 < alpha < 0.5:
            raise ConfigError(f"layer_model.alpha: expected a value in (0, 0.5), found {alpha}")
        if not max_dep > 0:
            raise ConfigError(f"layer_model.max_dep: expected a positive value, found {max_dep}")
        self.geometry, self.threshold_mev = geometry, float(threshold_mev)
        self.max_dep, self.alpha, self.normalise = float(max_dep), float(alpha), bool(normalise)
        self.mean, self.std, self.lo, self.hi = (None if v is None else np.asarray(v, dtype=np.float64)
                                                 for v in (mean, std, lo, hi))

    @property
    def n_layers(self) -> int:
        return self.geometry.n_layers

    @property
    def fitted(self) -> bool:
        return self.mean is not None

    # ---- the two codes ------------------------------------------------------------------------------------------
    def _logit_u(self, layer_e: np.ndarray, energies: np.ndarray) -> np.ndarray:
        # u0 > 1 only when E_dep > max_dep E_inc, which fit() reports as a config error
        u = np.clip(layer_energies_to_u(layer_e, energies, self.max_dep), 0.0, 1.0)  # (n, L)
        p = self.alpha + (1.0 - 2.0 * self.alpha) * u
        return np.log(p) - np.log1p(-p)

    def _thresholded(self, showers) -> np.ndarray:
        x = np.asarray(showers, dtype=np.float64)
        return np.where(x < self.threshold_mev, 0.0, x)

    def split(self, showers, energies) -> tuple[np.ndarray, np.ndarray]:
        """(n, V) MeV, (n,) MeV -> (shapes (n, V) float32, codes (n, L) float32).

        Shapes have unit layer sums when ``normalise``; otherwise they are the thresholded showers in MeV (the voxel
        model then learns absolute energies, conditioned on the codes, and ``join`` only corrects the layer sums).
        """
        self._require_fit()
        x = self._thresholded(showers)
        shapes, layer_e = normalise_layers(x, self.geometry) if self.normalise else (x, layer_energies(x, self.geometry))
        return shapes.astype(np.float32), self._standardised_codes(layer_e, energies)

    def codes(self, showers, energies) -> np.ndarray:
        """Only the stage-1 part (n, L) float32, as in ``split`` (the layer model's own, larger batches)."""
        self._require_fit()
        return self._standardised_codes(layer_energies(self._thresholded(showers), self.geometry), energies)

    def _standardised_codes(self, layer_e: np.ndarray, energies) -> np.ndarray:
        return ((self._logit_u(layer_e, energies) - self.mean) / self.std).astype(np.float32)

    def shapes(self, showers) -> np.ndarray:
        """Only the stage-2 part (n, V), as in ``split`` (no statistics needed)."""
        x = self._thresholded(showers)
        return (normalise_layers(x, self.geometry)[0] if self.normalise else x).astype(np.float32)

    def layer_energies(self, codes, energies) -> np.ndarray:
        """Stage-1 codes (n, L) -> layer energies (n, L) MeV >= 0; codes are first clipped to the training range."""
        self._require_fit()
        y = np.clip(np.asarray(codes, dtype=np.float64), self.lo, self.hi) * self.std + self.mean
        u = (1.0 / (1.0 + np.exp(-y)) - self.alpha) / (1.0 - 2.0 * self.alpha)
        return u_to_layer_energies(u, energies, self.max_dep)

    def join(self, shapes, codes, energies) -> np.ndarray:
        """Stage-2 shapes (n, V) and stage-1 codes (n, L) -> showers (n, V) float32 MeV.

        Threshold first, then scale each layer to its stage-1 energy (twice more, as scaling down can push voxels
        under the threshold): scaling before the threshold would lift sub-threshold noise of a weak layer into
        spurious hits. A layer left with no voxel but a stage-1 energy above threshold gets it in its largest voxel.
        """
        target = self.layer_energies(codes, energies)  # (n, L)
        x = np.clip(np.asarray(shapes, dtype=np.float64), 0.0, None)
        if self.normalise:
            x = denormalise_layers(x, target, self.geometry)  # unit-sum layers -> MeV
        best = self._largest_voxel(x)  # (n, L) flat voxel index
        for _ in range(3):
            x = denormalise_layers(self._thresholded(x), target, self.geometry)
        x = self._thresholded(x)
        lost = (layer_energies(x, self.geometry) == 0) & (target >= self.threshold_mev)  # (n, L)
        rows, layers = np.nonzero(lost)
        x[rows, best[rows, layers]] = target[rows, layers]
        return x.astype(np.float32)

    def _largest_voxel(self, x: np.ndarray) -> np.ndarray:
        out = np.zeros((x.shape[0], self.n_layers), dtype=np.int64)
        for layer in self.geometry.relevant_layers:
            sl = self.geometry.layer_slice(layer)
            out[:, layer] = sl.start + np.argmax(x[:, sl], axis=1)
        return out

    # ---- statistics ---------------------------------------------------------------------------------------------
    def fit(self, batches: Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]], label: str = "training data"):
        """Per-layer mean/std and range of the logit-u codes over one pass of (showers, energies) batches."""
        n, s1, s2, lo, hi, worst = 0, 0.0, 0.0, None, None, 0.0
        for showers, energies in batches():
            e = np.asarray(energies, dtype=np.float64).reshape(-1)
            layer_e = layer_energies(self._thresholded(showers), self.geometry)
            worst = max(worst, float(np.max(layer_e.sum(1) / e)))
            y = self._logit_u(layer_e, e)
            n, s1, s2 = n + len(y), s1 + y.sum(0), s2 + (y * y).sum(0)
            lo = y.min(0) if lo is None else np.minimum(lo, y.min(0))
            hi = y.max(0) if hi is None else np.maximum(hi, y.max(0))
        if n == 0:
            raise DataError(f"{label}: no showers to fit the layer-energy statistics on")
        if worst > self.max_dep:
            raise ConfigError(f"layer_model.max_dep: {self.max_dep} is below the largest E_dep/E_inc in the "
                              f"{label} ({worst:.3g}); raise it above that value")
        self.mean = s1 / n
        self.std = np.maximum(np.sqrt(np.maximum(s2 / n - self.mean**2, 0.0)), STD_FLOOR)
        self.lo, self.hi = (lo - self.mean) / self.std, (hi - self.mean) / self.std
        return self

    def _require_fit(self) -> None:
        if not self.fitted:
            raise ConfigError("layer_model: the layer-energy statistics are not fitted (call fit first)")

    def state(self) -> dict:
        arrays = {k: getattr(self, k) for k in ("mean", "std", "lo", "hi")}
        return {"threshold_mev": self.threshold_mev, "max_dep": self.max_dep, "alpha": self.alpha,
                "normalise": self.normalise,
                **{k: None if v is None else v.tolist() for k, v in arrays.items()}}

    @classmethod
    def from_state(cls, state: dict, geometry: Geometry) -> LayerEnergyCoder:
        try:
            return cls(geometry, state["threshold_mev"], state["max_dep"], state["alpha"], state["mean"],
                       state["std"], state["lo"], state["hi"], bool(state.get("normalise", True)))
        except KeyError as exc:
            raise ConfigError(f"layer coder state: missing key {exc}") from None
