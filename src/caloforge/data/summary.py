"""A one-pass summary of a shower file (what ``caloforge data inspect`` prints), in bounded memory.

Deposits are counted the way the official evaluation sees them: voxels below the readout threshold
(``geometry.threshold_mev``, 15.15 keV x 1/0.033 for DS2/3, 1 MeV for DS1) are treated as empty.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from caloforge.data.geometry import Geometry
from caloforge.data.reader import ShowerFile, batch_rows_for
from caloforge.data.validate import check_batch, maybe_progress, n_detectors_of, require_geometry
from caloforge.errors import DataError

_SPARK = "▁▂▃▄▅▆▇█"
_SPARK_ASCII = ".:-=+*#@"


class _Accumulator:
    """Running sums over batches (float64) for the means the summary reports."""

    def __init__(self, geometry: Geometry | None, threshold: float):
        self.geometry, self.threshold = geometry, threshold
        self.n = self.above = 0
        self.response_sum = self.response_sq = 0.0
        self.max_voxel = 0.0
        n_layers = geometry.n_layers if geometry else 0
        self.layer_sum = np.zeros(n_layers)
        self.radial_sum = np.zeros(geometry.grid_shape[2]) if geometry and geometry.is_regular else None

    def add(self, energies: np.ndarray, showers: np.ndarray) -> None:
        b = len(energies)
        mask = showers >= self.threshold if self.threshold > 0 else showers > 0  # (b, V)
        kept = np.where(mask, showers, np.float32(0))  # (b, V) thresholded deposits
        e_dep = kept.sum(axis=1, dtype=np.float64)  # (b,)
        response = e_dep / energies
        self.n += b
        self.above += int(np.count_nonzero(mask))
        self.response_sum += float(response.sum())
        self.response_sq += float(np.square(response).sum())
        if showers.size:
            self.max_voxel = max(self.max_voxel, float(showers.max()))
        geo = self.geometry
        if geo is None:
            return
        if self.radial_sum is not None:
            n_z, n_a, n_r = geo.grid_shape
            grid = kept.reshape(b, n_z, n_a, n_r)
            self.layer_sum += grid.sum(axis=(0, 2, 3), dtype=np.float64)
            self.radial_sum += grid.sum(axis=(0, 1, 2), dtype=np.float64)
        else:
            for layer in geo.relevant_layers:
                self.layer_sum[layer] += kept[:, geo.layer_slice(layer)].sum(dtype=np.float64)


def summarize(
    path: str | Path,
    geometry: Geometry | str | None = None,
    threshold: float | None = None,
    batch_size: int | None = None,
    progress_bar: bool = False,
    require_known_geometry: bool = True,
) -> dict:
    """Streamed statistics of a shower file as a JSON-serialisable dict (energies in GeV or MeV as named).

    Every value is checked as in ``data validate`` on the way (a NaN or inf would make every number wrong), and a
    voxel count of no known geometry is refused unless ``require_known_geometry`` is False."""
    with ShowerFile(path, geometry=geometry) as f:
        if require_known_geometry:
            require_geometry(f)
        if f.n == 0:
            raise DataError(f"{path}: dataset 'showers': expected at least one shower, found 0")
        geo = f.geometry
        thr = float(threshold if threshold is not None else (geo.threshold_mev if geo else 0.0))
        acc = _Accumulator(geo, thr)
        n_det = n_detectors_of(f)
        with maybe_progress(progress_bar, "inspect", f.n) as bar:
            for batch in f.iter_batches(batch_size or batch_rows_for(f.n_voxels), with_extras=True):
                check_batch(str(path), batch, n_det)
                acc.add(batch.energies, batch.showers)
                bar.update(len(batch))
        e_gev = f.energies() / 1e3
        extras = {name: _extra_summary(name, f.extra(name), f.attrs) for name in f.extras}
        mean_resp = acc.response_sum / acc.n
        occupancy = acc.above / (acc.n * f.n_voxels) if f.n_voxels else 0.0
        return {
            "path": str(path),
            "file_size_bytes": os.path.getsize(path),
            "n_showers": f.n,
            "n_voxels": f.n_voxels,
            "geometry": geo.describe() if geo else None,
            "threshold_mev": thr,
            "incident_energy_gev": {
                "min": float(e_gev.min()), "median": float(np.median(e_gev)), "max": float(e_gev.max())},
            "response_mean": mean_resp,
            "response_std": float(np.sqrt(max(acc.response_sq / acc.n - mean_resp**2, 0.0))),
            "fraction_above_threshold": occupancy,
            "sparsity": 1.0 - occupancy,
            "max_voxel_mev": acc.max_voxel,
            "longitudinal_profile_mev": (acc.layer_sum / acc.n).tolist() if geo else None,
            "relevant_layers": list(geo.relevant_layers) if geo else None,
            "radial_profile_mev": (acc.radial_sum / acc.n).tolist() if acc.radial_sum is not None else None,
            "extras": extras,
            "other_datasets": list(f.other),
            "attrs": {k: v if isinstance(v, (int, float, bool)) else str(v) for k, v in f.attrs.items()},
        }


def _extra_summary(name: str, values: np.ndarray, attrs: dict) -> dict:
    if name == "detector_id":
        names = attrs.get("detector_names") or []
        ids, counts = np.unique(values, return_counts=True)
        label = [names[i] if 0 <= i < len(names) else str(i) for i in ids.tolist()]
        return {"counts": dict(zip(label, counts.tolist()))}
    v = values.astype(np.float64)
    return {"min": float(v.min()), "mean": float(v.mean()), "max": float(v.max())}


# ---- text rendering -----------------------------------------------------------------------------------------------
def sparkline(values, ascii_only: bool = False) -> str:
    """One character per value, scaled to the maximum (empty -> lowest mark)."""
    marks = _SPARK_ASCII if ascii_only else _SPARK
    v = np.asarray(values, dtype=np.float64)
    top = v.max() if v.size else 0.0
    if top <= 0:
        return marks[0] * v.size
    return "".join(marks[round(x / top * (len(marks) - 1))] for x in np.clip(v, 0, None))


def _size(n_bytes: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n_bytes < 1024 or unit == "TiB":
            return f"{n_bytes:.1f} {unit}" if unit != "B" else f"{n_bytes} B"
        n_bytes /= 1024
    return ""


def format_summary(d: dict, ascii_only: bool | None = None) -> str:
    """A compact text table of ``summarize()``'s dict; unicode sparklines unless stdout cannot print them."""
    if ascii_only is None:
        try:
            _SPARK.encode(sys.stdout.encoding or "ascii")
            ascii_only = False
        except (UnicodeEncodeError, LookupError):
            ascii_only = True
    e = d["incident_energy_gev"]
    rows = [
        ("file", f"{d['path']} ({_size(d['file_size_bytes'])})"),
        ("showers", f"{d['n_showers']} x {d['n_voxels']} voxels"),
        ("geometry", d["geometry"] or "unknown (no official geometry has this many voxels)"),
        ("E_inc", f"{e['min']:.4g} - {e['max']:.4g} GeV (median {e['median']:.4g} GeV)"),
        ("E_dep/E_inc", f"{d['response_mean']:.4f} +- {d['response_std']:.4f} (voxels >= {d['threshold_mev']:.4g} MeV)"),
        ("occupancy", (f"{100 * d['fraction_above_threshold']:.2f}% of voxels above threshold "
                       f"(sparsity {d['sparsity']:.4f})")),
        ("max voxel", f"{d['max_voxel_mev']:.4g} MeV"),
    ]
    long = d.get("longitudinal_profile_mev")
    if long is not None:
        layers = d["relevant_layers"]
        prof = [long[i] for i in layers]
        peak = layers[int(np.argmax(prof))]
        rows.append(("longitudinal", (f"{sparkline(prof, ascii_only)}  mean MeV per layer, peak layer {peak} "
                                      f"({long[peak]:.4g} MeV)")))
        if len(prof) <= 12:
            rows.append(("", " ".join(f"{x:.3g}" for x in prof)))
    rad = d.get("radial_profile_mev")
    if rad is not None:
        rows.append(("radial", f"{sparkline(rad, ascii_only)}  mean MeV per r bin: " + " ".join(f"{x:.3g}" for x in rad)))
    for name, stats in d["extras"].items():
        text = ", ".join(f"{k}={v}" for k, v in stats["counts"].items()) if "counts" in stats else (
            f"{stats['min']:.4g} .. {stats['max']:.4g} (mean {stats['mean']:.4g})")
        rows.append((name, text))
    if d.get("other_datasets"):
        rows.append(("other data", ", ".join(d["other_datasets"]) + " (not read by caloforge)"))
    for key, value in d["attrs"].items():
        text = str(value)
        rows.append((f"attr {key}", text if len(text) <= 100 else text[:97] + "..."))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
