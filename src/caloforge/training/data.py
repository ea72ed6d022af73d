"""Training batches from shower files, in model space (transform chain applied) with encoded conditions.

The batch of step s is a pure function of (seed, s): epoch = s // batches_per_epoch picks a permutation seeded by
(seed, epoch) and the position inside the epoch picks a contiguous slice of it. So a resumed run sees exactly the
batches an uninterrupted run would, with no data-loader state to save, and a DDP rank simply takes its slice of the
same global batch (the union over ranks equals the single-process batch). Files that fit the RAM budget are read
and transformed once; bigger files are read batch by batch with random access.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from caloforge.data.geometry import Geometry
from caloforge.data.reader import ShowerFile
from caloforge.errors import ConfigError, DataError
from caloforge.training.config import DataConfig

EXTRA_FOR_CONDITION = {"phi": "incident_phi", "theta": "incident_theta", "detector": "detector_id"}
_CHUNK = 2048
#: Bound on one streamed statistics batch (float64 after the first transform step): ~200 DS3 showers, ~1300 DS2.
_STREAM_BYTES = 64 * 2**20


def stream_rows(n_voxels: int) -> int:
    """Showers per batch when a file is streamed for statistics, so a batch stays near _STREAM_BYTES."""
    return int(max(1, min(4096, _STREAM_BYTES // (8 * max(int(n_voxels), 1)))))


def build_condition_encoder(cfg: DataConfig):
    """The ConditionEncoder a recipe's data section describes."""
    from caloforge.transforms.conditions import ConditionEncoder

    angles = "phi" in cfg.conditions or "theta" in cfg.conditions
    n_det = cfg.n_detectors if "detector" in cfg.conditions else 0
    return ConditionEncoder(energy_range_mev=tuple(cfg.energy_range_mev), angles=angles, n_detectors=n_det)


def encode_conditions(encoder, cfg: DataConfig, energies: np.ndarray, extras: dict, label: str) -> np.ndarray:
    """(n, C) float32 conditions; a condition the recipe uses but the file lacks is a one-line DataError."""
    given = {}
    for cond, name in EXTRA_FOR_CONDITION.items():
        if cond in cfg.conditions:
            if name not in extras:
                raise DataError(f"{label}: dataset '{name}' is missing but the recipe conditions on '{cond}' "
                                f"(data.conditions = {list(cfg.conditions)})")
            given[cond] = np.asarray(extras[name]).reshape(-1)
    if "phi" in given or "theta" in given:  # angles are encoded as a pair; a missing one is 0
        given.setdefault("phi", np.zeros(len(energies)))
        given.setdefault("theta", np.zeros(len(energies)))
    out = encoder.encode(energies, given.get("phi"), given.get("theta"), given.get("detector"))
    return np.asarray(out, dtype=np.float32)


def resolve_geometry(cfg: DataConfig, file: ShowerFile) -> Geometry:
    """The readout geometry a run uses: the file's own (attribute or voxel count) or the recipe's choice."""
    if cfg.geometry == "file":
        geo = file.geometry
        if geo is None:
            raise DataError(f"{file.path}: no geometry recorded and {file.n_voxels} voxels match no official "
                            f"dataset; set data.geometry to official:<name> or an XML path")
        return geo
    if cfg.geometry.startswith("official:"):
        geo = Geometry.official(cfg.geometry.split(":", 1)[1])
    else:
        geo = Geometry.from_xml(cfg.geometry)
    if geo.n_voxels != file.n_voxels:
        raise DataError(f"{file.path}: expected {geo.n_voxels} voxels per shower (data.geometry {cfg.geometry}), "
                        f"found {file.n_voxels}")
    return geo


def fit_batches(path: Path, max_showers: int, geometry: Geometry | None = None, coder=None):
    """A factory of fresh (showers, energies) iterators over the first max_showers rows (for Chain.fit); with a
    two-stage ``coder`` the showers are layer-normalised first, as the voxel model sees them."""

    def factory():
        with ShowerFile(path, geometry) as f:
            for b in f.iter_batches(stream_rows(f.n_voxels), 0, min(f.n, max_showers)):
                yield (b.showers if coder is None else coder.shapes(b.showers)), b.energies

    return factory


@dataclass(frozen=True)
class BatchPosition:
    epoch: int
    index: int  # batch number inside the epoch


class TrainBatches:
    """Deterministic, resumable batches (this rank's share of the global batch) in model space."""

    def __init__(self, path, chain, encoder, cfg: DataConfig, global_batch: int, seed: int,
                 rank: int = 0, world: int = 1, geometry: Geometry | None = None, coder=None):
        self.path, self.chain, self.encoder, self.cfg = Path(path), chain, encoder, cfg
        self.coder = coder  # two-stage: conditions gain the layer codes, showers are layer-normalised
        self.global_batch, self.seed, self.rank, self.world = int(global_batch), int(seed), rank, world
        if self.global_batch % world:
            raise ConfigError(f"train.batch_size: expected a multiple of the world size {world}, found {global_batch}")
        self.local_batch = self.global_batch // world
        self.file = ShowerFile(self.path, geometry)
        self.n, self.n_voxels = self.file.n, self.file.n_voxels
        if self.n < self.global_batch:
            raise ConfigError(f"train.batch_size: expected at most the {self.n} showers in {self.path}, "
                              f"found {self.global_batch}")
        self.batches_per_epoch = self.n // self.global_batch  # the incomplete tail batch is dropped each epoch
        self.in_memory = self.n * self.n_voxels * 4 <= cfg.ram_budget_mb * 2**20
        self._x = self._c = None
        if self.in_memory:
            self._x, self._c = self._transform_rows(np.arange(self.n))
            self.file.close()

    def _transform_rows(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        xs, cs = [], []
        for i in range(0, len(rows), _CHUNK):
            b = self.file.read(rows[i:i + _CHUNK], with_extras=True)
            x, c = model_space(b, self.chain, self.encoder, self.cfg, str(self.path), self.coder)
            xs.append(x)
            cs.append(c)
        return np.concatenate(xs), np.concatenate(cs)

    @lru_cache(maxsize=2)  # noqa: B019 - one object per run; keeps the current and the next epoch
    def permutation(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.n)

    def position(self, step: int) -> BatchPosition:
        return BatchPosition(step // self.batches_per_epoch, step % self.batches_per_epoch)

    def global_rows(self, step: int) -> np.ndarray:
        """File rows of the whole global batch of this step."""
        pos = self.position(step)
        start = pos.index * self.global_batch
        return self.permutation(pos.epoch)[start:start + self.global_batch]

    def batch(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """(x (b, V) float32 model space, cond (b, C) float32) for this rank at this step."""
        rows = self.global_rows(step)[self.rank * self.local_batch:(self.rank + 1) * self.local_batch]
        if self.in_memory:
            return self._x[rows], self._c[rows]
        return self._transform_rows(rows)

    def model_range(self, max_showers: int) -> tuple[np.ndarray, np.ndarray]:
        """Per-voxel (min, max) of the training data in model space; samples are clamped to it (see Generator)."""
        if self.in_memory:
            x = self._x[:max_showers]
            return x.min(axis=0), x.max(axis=0)
        lo = hi = None
        with ShowerFile(self.path) as f:
            for b in f.iter_batches(stream_rows(f.n_voxels), 0, min(f.n, max_showers)):
                y = self.chain.forward(b.showers if self.coder is None else self.coder.shapes(b.showers), b.energies)
                lo = y.min(0) if lo is None else np.minimum(lo, y.min(0))
                hi = y.max(0) if hi is None else np.maximum(hi, y.max(0))
        return lo, hi

    def close(self) -> None:
        self.file.close()


def model_space(batch, chain, encoder, cfg: DataConfig, label: str, coder=None) -> tuple[np.ndarray, np.ndarray]:
    """A read batch -> (x (n, V), cond (n, C [+ L])) float32 as the network sees them."""
    cond = encode_conditions(encoder, cfg, batch.energies, batch.extras, label)
    if coder is None:
        return chain.forward(batch.showers, batch.energies), cond
    shapes, codes = coder.split(batch.showers, batch.energies)
    return chain.forward(shapes, batch.energies), np.concatenate([cond, codes], axis=1)


def load_validation(path, chain, encoder, cfg: DataConfig, geometry: Geometry | None = None, coder=None):
    """The first val_max_showers of a validation file in model space: (x (n, V), cond (n, C [+ L]))."""
    with ShowerFile(path, geometry) as f:
        n = min(f.n, cfg.val_max_showers)
        b = f.read(np.arange(n), with_extras=True)
    return model_space(b, chain, encoder, cfg, str(path), coder)


def threshold_mismatch(transforms, geometry: Geometry) -> str | None:
    """A one-line note when a recipe's ``threshold`` step differs from the geometry's official readout threshold
    (e.g. the DS2/DS3 15.15 keV step of a DS2 recipe on dataset-1 data, whose official threshold is 1 MeV)."""
    for step in transforms:
        if step.get("kind") == "threshold" and "value" in step:
            value = float(step["value"])
            if not np.isclose(value, geometry.threshold_mev, rtol=1e-3):
                return (f"note: transforms threshold {value:g} MeV differs from the official readout threshold "
                        f"{geometry.threshold_mev:g} MeV of geometry {geometry.name}; sampling and evaluation use "
                        f"{geometry.threshold_mev:g} MeV")
    return None
