"""One streaming pass per file: everything the evaluation needs, kept small.

Each file is read once, in batches: high-level features (in the file's own float type, as evaluate.py computes
them), row digests (for the overlap guard), average showers (overall and per incident-energy decade), the
voxel-energy spectrum on the official edges and, only for the rows a low-level classifier needs (capped so the arrays
fit in memory), the voxel inputs.

The official voxel edges are ``logspace(log10 threshold, log10 max reference voxel, 50)``: they are known only after
the whole reference has been seen. The reference therefore keeps its non-zero voxels (float32, ~8 % of a DS2 file)
while they fit in ``keep_voxel_bytes`` and counts them exactly once the maximum is known; a larger reference is read a
second time for that one histogram. Generated files are scanned after the reference and counted on the final edges.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from caloforge.data.geometry import Geometry
from caloforge.data.reader import ShowerFile
from caloforge.errors import CaloforgeError
from caloforge.evaluation import guards, histograms
from caloforge.evaluation.features import compute_hlf, voxel_inputs
from caloforge.progress import progress
from caloforge.transforms.postprocess import apply_threshold

ENERGY_RANGES_MEV = ((1e3, 1e4), (1e4, 1e5), (1e5, 1e6))  # the official avg-E decades for DS2/3
KEEP_VOXEL_BYTES = 1 << 30  # reference voxels kept in memory for the exact spectrum before a second pass is needed


@dataclass
class FileScan:
    """What one streaming pass keeps of a file."""

    path: str
    n: int
    feats: dict
    digests: np.ndarray
    mean_shower: np.ndarray  # (V,) MeV, thresholded
    range_means: list = field(default_factory=list)  # [(lo, hi, count, (V,) mean)]
    voxel_max: np.floating | float = 0.0  # largest thresholded voxel, in the file's float type
    voxel_counts: np.ndarray | None = None  # exact counts on the official voxel edges
    voxel_values: list | None = None  # reference only: non-zero voxels kept until the edges are known
    low: dict = field(default_factory=dict)  # mode -> (n_low, D) inputs of a row subset
    seconds: float = 0.0


def energies_dtype(path) -> np.dtype:
    """The float type of the file's incident energies (the reader hands out float64; float32 values round-trip)."""
    with h5py.File(path, "r") as f:
        dt = f["incident_energies"].dtype
    return np.dtype(dt) if dt in (np.float32, np.float64) else np.dtype(np.float64)


def batch_rows(geometry: Geometry, batch_size: int | None = None) -> int:
    """Showers per streamed batch: at most 2048 and ~128 MiB of float64 (414 dataset-3 showers), unless given."""
    return int(batch_size) if batch_size else max(1, min(2048, 2**27 // (8 * geometry.n_voxels)))


def scan_file(path, geometry: Geometry, low_modes=(), low_cap: int | None = None, seed: int = 0,
              batch_size: int | None = None, desc: str = "", voxel_edges: np.ndarray | None = None,
              keep_voxel_bytes: int = KEEP_VOXEL_BYTES) -> FileScan:
    """Stream ``path`` once. With ``voxel_edges`` (generated files) the voxel spectrum is counted on them; without
    (the reference) the non-zero voxels are kept for :func:`finish_reference_spectrum` while they fit."""
    t0 = time.perf_counter()
    batch_size = batch_rows(geometry, batch_size)
    thr = geometry.threshold_mev
    e_dtype = energies_dtype(path)
    with ShowerFile(path, geometry=geometry) as f:
        n = f.n
        if n == 0:
            raise CaloforgeError(f"{path}: dataset 'showers': expected at least one shower, found 0")
        rows = np.arange(n)
        if low_modes and low_cap is not None and n > low_cap:
            rows = np.sort(np.random.default_rng(seed).choice(n, low_cap, replace=False))
        parts, digests, low = [], [], {m: [] for m in low_modes}
        total = np.zeros(geometry.n_voxels)
        rsum = [np.zeros(geometry.n_voxels) for _ in ENERGY_RANGES_MEV]
        rcount = [0] * len(ENERGY_RANGES_MEV)
        counts = None if voxel_edges is None else np.zeros(len(voxel_edges) - 1, dtype=np.int64)
        kept, kept_bytes, vmax = [], 0, None
        for b in progress(f.iter_batches(batch_size), desc=desc or Path(path).name,
                          total=math.ceil(n / batch_size), unit="batch"):
            energies = b.energies.astype(e_dtype, copy=False)  # float32 files: exact round trip
            xn = apply_threshold(b.showers, thr)  # (b, V) in the file's float type
            parts.append(compute_hlf(xn, energies, geometry, thr))
            digests.append(guards.row_digests(b.energies, b.showers))
            total += xn.sum(axis=0, dtype=np.float64)
            for k, (lo, hi) in enumerate(ENERGY_RANGES_MEV):
                sel = (b.energies >= lo) & (b.energies < hi)
                rsum[k] += xn[sel].sum(axis=0, dtype=np.float64)
                rcount[k] += int(sel.sum())
            pos = xn[xn > 0]
            if pos.size:
                vmax = pos.max() if vmax is None else max(vmax, pos.max())
                if counts is not None:
                    counts += histograms.count_on_edges(pos, voxel_edges)
                elif kept is not None:
                    kept.append(pos)
                    kept_bytes += pos.nbytes
                    if kept_bytes > keep_voxel_bytes:
                        kept = None  # too big: finish_reference_spectrum reads the file again
            if low_modes:
                take = np.isin(b.index, rows)
                for m in low_modes:
                    vmode = "low" if m == "cnn" else m
                    low[m].append(voxel_inputs(b.showers[take], energies[take], vmode, geometry, thr, np.float32))
    feats = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return FileScan(
        str(path), n, feats, np.concatenate(digests), total / n,
        [(lo, hi, c, s / max(c, 1)) for (lo, hi), c, s in zip(ENERGY_RANGES_MEV, rcount, rsum)],
        vmax if vmax is not None else 0.0, counts, kept if voxel_edges is None else None,
        {m: np.concatenate(v) for m, v in low.items()}, time.perf_counter() - t0,
    )


def finish_reference_spectrum(ref: FileScan, geometry: Geometry, batch_size: int | None = None) -> np.ndarray | None:
    """The official voxel edges from the reference maximum, and the reference counted on them (from the kept voxels,
    or by a second read of a reference too large to keep). None when no reference voxel is above the threshold."""
    batch_size = batch_rows(geometry, batch_size)
    thr = geometry.threshold_mev
    edges = histograms.voxel_edges(thr, ref.voxel_max)
    if edges is None:
        return None
    if ref.voxel_values is not None:
        ref.voxel_counts = sum((histograms.count_on_edges(v, edges) for v in ref.voxel_values),
                               np.zeros(len(edges) - 1, dtype=np.int64))
    else:
        counts = np.zeros(len(edges) - 1, dtype=np.int64)
        with ShowerFile(ref.path, geometry=geometry) as f:
            for b in progress(f.iter_batches(batch_size), desc="reference voxels", unit="batch"):
                xn = apply_threshold(b.showers, thr)
                counts += histograms.count_on_edges(xn[xn > 0], edges)
        ref.voxel_counts = counts
    ref.voxel_values = None
    return edges


def voxel_spectrum(ref: FileScan, gen: FileScan, edges: np.ndarray) -> histograms.HistResult:
    """The official voxel-energy histogram from the exact streamed counts."""
    return histograms.compare_counts("voxel", None, ref.voxel_counts, gen.voxel_counts, edges, True)
