"""Training batches from shower files, in model space (transform chain applied) with encoded conditions.

The batch of step s is a pure function of (seed, s): epoch = s // batches_per_epoch picks a permutation seeded by
(seed, epoch) and the position inside the epoch picks a contiguous slice of it. So a resumed run sees exactly the
batches an uninterrupted run would, with no data-loader state to save, and a DDP rank simply takes its slice of the
same global batch (the union over ranks equals the single-process batch). Files that fit the RAM budget are read
and transformed once; bigger files are read batch by batch with random access. Stochastic transform steps
(dequantisation noise) are re-keyed from (seed, step, rank) before each streamed batch, and from the seed alone
before the one in-memory pass, so both paths resume bit-identically.

Several files (one per detector, same mesh) act as one concatenated file (``training.sources``): showers are mapped to
the model's detector slots by name, and with ``data.detector_weights`` each step draws its rows by detector weight
(with replacement) instead of walking the epoch permutation.

A two-stage model's layer network may take its own, larger batch (``layer_model.batch_size``): rows drawn with
replacement from a table of every training shower's conditions and layer codes (C + L floats each, built once), keyed
by (seed, step) like the voxel batch, and by detector weight where those are set.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from caloforge.data.geometry import Geometry
from caloforge.data.reader import ShowerFile
from caloforge.errors import ConfigError, DataError
from caloforge.training.config import DataConfig
from caloforge.training.sources import WeightedRows, as_sources, row_slots, slot_weights

EXTRA_FOR_CONDITION = {"phi": "incident_phi", "theta": "incident_theta", "detector": "detector_id"}
_CHUNK = 2048
_IN_MEMORY_KEY, _STREAM_KEY, _VAL_KEY, FIT_NOISE_KEY = 0, 1, 2, 3  # noise streams: one-off pass, batches, val, fit
_LAYER_ROWS_KEY = 0x1A7E  # the rows of the layer model's own batches
#: Bound on one streamed statistics batch (float64 after the first transform step): ~200 DS3 showers, ~1300 DS2.
_STREAM_BYTES = 64 * 2**20


def stream_rows(n_voxels: int) -> int:
    """Showers per batch when a file is streamed for statistics, so a batch stays near _STREAM_BYTES."""
    return int(max(1, min(4096, _STREAM_BYTES // (8 * max(int(n_voxels), 1)))))


def build_condition_encoder(cfg: DataConfig):
    """The ConditionEncoder a recipe's data section describes."""
    from caloforge.transforms.conditions import ConditionEncoder

    angles = "phi" in cfg.conditions or "theta" in cfg.conditions
    n_det = cfg.slots if "detector" in cfg.conditions else 0
    names = [*cfg.detectors, cfg.new_detector] if (n_det and cfg.detectors) else None
    return ConditionEncoder(energy_range_mev=tuple(cfg.energy_range_mev), angles=angles, n_detectors=n_det,
                            detector_names=names)


def encode_conditions(encoder, cfg: DataConfig, energies: np.ndarray, extras: dict, label: str,
                      slots: np.ndarray | None = None) -> np.ndarray:
    """(n, C) float32 conditions; a condition the recipe uses but the file lacks is a one-line DataError. ``slots``
    (the model's detector slot per row, ``training.sources.row_slots``) replaces the file's detector_id."""
    given = {} if slots is None else {"detector": np.asarray(slots).reshape(-1)}
    for cond, name in EXTRA_FOR_CONDITION.items():
        if cond in cfg.conditions and cond not in given:
            if name not in extras:
                hint = "; a file made at one angle can get it from `caloforge data convert --theta/--phi`" if (
                    cond in ("phi", "theta")) else ""
                raise DataError(f"{label}: dataset '{name}' is missing but the recipe conditions on '{cond}' "
                                f"(data.conditions = {list(cfg.conditions)}){hint}")
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
                            f"dataset; set data.geometry (an official key, regular:NZxNAxNR:DR_MM or an XML path)")
        return geo
    geo = Geometry.parse(cfg.geometry)
    if geo.n_voxels != file.n_voxels:
        raise DataError(f"{file.path}: expected {geo.n_voxels} voxels per shower (data.geometry {cfg.geometry}), "
                        f"found {file.n_voxels}")
    return geo


def fit_batches(path, max_showers: int, geometry: Geometry | None = None, coder=None):
    """A factory of fresh (showers, energies) iterators over the first max_showers rows (for Chain.fit); with a
    two-stage ``coder`` the showers are layer-normalised first, as the voxel model sees them. Several files share
    max_showers equally, so every detector shapes the statistics."""
    paths = [s.path for s in as_sources(path)]
    per_file = max(1, max_showers // len(paths))

    def factory():
        for p in paths:
            with ShowerFile(p, geometry) as f:
                for b in f.iter_batches(stream_rows(f.n_voxels), 0, min(f.n, per_file)):
                    yield (b.showers if coder is None else coder.shapes(b.showers)), b.energies

    return factory


@dataclass(frozen=True)
class BatchPosition:
    epoch: int
    index: int  # batch number inside the epoch


class TrainBatches:
    """Deterministic, resumable batches (this rank's share of the global batch) in model space; ``path`` is one file
    or several (``training.sources``), seen as their concatenation."""

    def __init__(self, path, chain, encoder, cfg: DataConfig, global_batch: int, seed: int,
                 rank: int = 0, world: int = 1, geometry: Geometry | None = None, coder=None):
        self.sources = as_sources(path)
        self.path, self.chain, self.encoder, self.cfg = self.sources[0].path, chain, encoder, cfg
        self.coder = coder  # two-stage: conditions gain the layer codes, showers are layer-normalised
        self.global_batch, self.seed, self.rank, self.world = int(global_batch), int(seed), rank, world
        if self.global_batch % world:
            raise ConfigError(f"train.batch_size: expected a multiple of the world size {world}, found {global_batch}")
        self.local_batch = self.global_batch // world
        self.files = [ShowerFile(s.path, geometry) for s in self.sources]
        self.file = self.files[0]
        self.n_voxels = self.file.n_voxels
        for f in self.files[1:]:
            if f.n_voxels != self.n_voxels:
                raise DataError(f"{f.path}: expected {self.n_voxels} voxels per shower (as {self.path}; one mesh "
                                f"per run), found {f.n_voxels}")
        self.offsets = np.cumsum([0] + [f.n for f in self.files])  # global row = offsets[file] + local row
        self.n = int(self.offsets[-1])
        slots = [row_slots(f, encoder, s.detector) for f, s in zip(self.files, self.sources)]
        self.slots = None if slots[0] is None else np.concatenate(slots)  # (n,) model slot of every row
        label = ", ".join(str(s.path) for s in self.sources)
        if self.n < self.global_batch:
            raise ConfigError(f"train.batch_size: expected at most the {self.n} showers in {label}, "
                              f"found {self.global_batch}")
        self.weighted = None
        if cfg.detector_weights:
            if self.slots is None:
                raise ConfigError(f"{label}: data.detector_weights needs the 'detector' condition")
            weights = slot_weights(cfg.detector_weights, encoder, np.unique(self.slots), label)
            self.weighted = WeightedRows(self.slots, weights, self.seed)
        self.batches_per_epoch = self.n // self.global_batch  # the incomplete tail batch is dropped each epoch
        self.in_memory = self.n * self.n_voxels * 4 <= cfg.ram_budget_mb * 2**20
        self._x = self._c = self._layer_table = None
        if self.in_memory:
            self.chain.reseed([self.seed % 2**32, _IN_MEMORY_KEY])
            self._x, self._c = self._transform_rows(np.arange(self.n))
            for f in self.files:
                f.close()

    def _transform_rows(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Global rows (any order) -> model space, read file by file and put back in the requested order."""
        which = np.searchsorted(self.offsets, rows, side="right") - 1  # file of each row
        x_out = c_out = None
        for k in np.unique(which):
            pos = np.flatnonzero(which == k)
            local = rows[pos] - self.offsets[k]
            for i in range(0, len(pos), _CHUNK):
                b = self.files[k].read(local[i:i + _CHUNK], with_extras=True)
                slots = None if self.slots is None else self.slots[rows[pos[i:i + _CHUNK]]]
                x, c = model_space(b, self.chain, self.encoder, self.cfg, str(self.sources[k].path), self.coder, slots)
                if x_out is None:
                    x_out = np.empty((len(rows), x.shape[1]), x.dtype)
                    c_out = np.empty((len(rows), c.shape[1]), c.dtype)
                x_out[pos[i:i + _CHUNK]], c_out[pos[i:i + _CHUNK]] = x, c
        return x_out, c_out

    @lru_cache(maxsize=2)  # noqa: B019 - one object per run; keeps the current and the next epoch
    def permutation(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.n)

    def position(self, step: int) -> BatchPosition:
        return BatchPosition(step // self.batches_per_epoch, step % self.batches_per_epoch)

    def global_rows(self, step: int) -> np.ndarray:
        """Rows (global over the files) of the whole global batch of this step."""
        if self.weighted is not None:
            return self.weighted.rows(step, self.global_batch)
        pos = self.position(step)
        start = pos.index * self.global_batch
        return self.permutation(pos.epoch)[start:start + self.global_batch]

    def batch(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """(x (b, V) float32 model space, cond (b, C) float32) for this rank at this step."""
        rows = self.global_rows(step)[self.rank * self.local_batch:(self.rank + 1) * self.local_batch]
        if self.in_memory:
            return self._x[rows], self._c[rows]
        self.chain.reseed([self.seed % 2**32, _STREAM_KEY, step, self.rank])
        return self._transform_rows(rows)

    def layer_batch(self, step: int, global_size: int) -> np.ndarray:
        """(b, C + L) float32 conditions and layer codes of this rank's share of the layer model's own batch."""
        if self.coder is None:
            raise ConfigError("layer_model.batch_size: the recipe has no layer model")
        if self._layer_table is None:
            self._layer_table = self._c if self.in_memory else self._build_layer_table()
        if self.weighted is not None:
            rows = self.weighted.rows(step, global_size, key=_LAYER_ROWS_KEY)
        else:
            rows = np.random.default_rng([self.seed, int(step), _LAYER_ROWS_KEY]).integers(0, self.n, global_size)
        local = global_size // self.world
        return self._layer_table[rows[self.rank * local:(self.rank + 1) * local]]

    def _build_layer_table(self) -> np.ndarray:
        """One streamed pass: the conditions and layer codes of every training shower (the showers are not kept)."""
        parts = []
        for k, (f, s) in enumerate(zip(self.files, self.sources)):
            rows = stream_rows(f.n_voxels)  # bounded memory, also for dataset-3 showers
            for start in range(0, f.n, rows):
                local = np.arange(start, min(start + rows, f.n))
                b = f.read(local, with_extras=True)
                slots = None if self.slots is None else self.slots[self.offsets[k] + local]
                cond = encode_conditions(self.encoder, self.cfg, b.energies, b.extras, str(s.path), slots)
                parts.append(np.concatenate([cond, self.coder.codes(b.showers, b.energies)], axis=1))
        return np.concatenate(parts).astype(np.float32)

    def model_range(self, max_showers: int) -> tuple[np.ndarray, np.ndarray]:
        """Per-voxel (min, max) of the training data in model space; samples are clamped to it (see Generator)."""
        if self.in_memory:
            x = self._x[:max_showers]
            return x.min(axis=0), x.max(axis=0)
        lo = hi = None
        for s in self.sources:
            with ShowerFile(s.path) as f:
                for b in f.iter_batches(stream_rows(f.n_voxels), 0, min(f.n, max_showers)):
                    y = self.chain.forward(b.showers if self.coder is None else self.coder.shapes(b.showers),
                                           b.energies)
                    lo = y.min(0) if lo is None else np.minimum(lo, y.min(0))
                    hi = y.max(0) if hi is None else np.maximum(hi, y.max(0))
        return lo, hi

    def close(self) -> None:
        for f in self.files:
            f.close()


def model_space(batch, chain, encoder, cfg: DataConfig, label: str, coder=None,
                slots: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A read batch -> (x (n, V), cond (n, C [+ L])) float32 as the network sees them."""
    cond = encode_conditions(encoder, cfg, batch.energies, batch.extras, label, slots)
    if coder is None:
        return chain.forward(batch.showers, batch.energies), cond
    shapes, codes = coder.split(batch.showers, batch.energies)
    return chain.forward(shapes, batch.energies), np.concatenate([cond, codes], axis=1)


def load_validation(path, chain, encoder, cfg: DataConfig, geometry: Geometry | None = None, coder=None,
                    detector: str | None = None):
    """The first val_max_showers of a validation file (shared equally by several) in model space:
    (x (n, V), cond (n, C [+ L]))."""
    sources = as_sources(path, detector)
    chain.reseed([_VAL_KEY])  # the same validation noise in every run and after every resume
    xs, cs = [], []
    for s in sources:
        with ShowerFile(s.path, geometry) as f:
            n = min(f.n, max(1, cfg.val_max_showers // len(sources)))
            b = f.read(np.arange(n), with_extras=True)
            slots = row_slots(f, encoder, s.detector)
        x, c = model_space(b, chain, encoder, cfg, str(s.path), coder, None if slots is None else slots[:n])
        xs.append(x)
        cs.append(c)
    return np.concatenate(xs), np.concatenate(cs)


def threshold_mismatch(threshold_mev: float | None, geometry: Geometry) -> str | None:
    """A one-line note when a recipe's ``postprocess.threshold_mev`` differs from the geometry's official readout
    threshold (e.g. the DS2/DS3 15.15 keV of a DS2 recipe on dataset-1 data, whose official threshold is 1 MeV):
    sampling then thresholds at the recipe's value while ``evaluate`` uses the official one."""
    if threshold_mev is None or np.isclose(float(threshold_mev), geometry.threshold_mev, rtol=1e-3):
        return None
    return (f"note: postprocess.threshold_mev {float(threshold_mev):g} MeV differs from the official readout threshold "
            f"{geometry.threshold_mev:g} MeV of geometry {geometry.name}; generated showers are cut at "
            f"{float(threshold_mev):g} MeV, evaluate uses {geometry.threshold_mev:g} MeV")
