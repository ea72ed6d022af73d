"""Seeded train / validation / test split of a shower file, streamed in one sequential pass.

Every row goes to exactly one part, chosen by a seeded permutation (the same seed always gives the same split).
The source is read once, in file order, batch by batch, and each row is appended to its part's writer, so memory
stays at one batch and every compressed chunk is decompressed once. Rows keep their source order inside a part
(the official files are already shuffled; training loaders shuffle again).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from caloforge.data import schema
from caloforge.data.geometry import Geometry
from caloforge.data.reader import ShowerFile, batch_rows_for
from caloforge.data.validate import check_batch, maybe_progress, n_detectors_of
from caloforge.data.writer import ShowerWriter
from caloforge.errors import ConfigError, DataError
from caloforge.outputs import check_output, clean_stale_temps, ensure_free_space

PART_NAMES = {2: ("train", "test"), 3: ("train", "val", "test")}


def check_fractions(fractions) -> tuple[float, ...]:
    """Two or three positive fractions that sum to 1."""
    try:
        fr = tuple(float(x) for x in fractions)
    except (TypeError, ValueError):
        raise ConfigError(f"fractions: expected 2 or 3 numbers summing to 1, found {fractions!r}") from None
    if len(fr) not in PART_NAMES or not all(np.isfinite(x) and x > 0 for x in fr) or abs(sum(fr) - 1) > 1e-6:
        raise ConfigError(f"fractions: expected 2 or 3 positive numbers summing to 1, found {fractions!r}")
    return fr


def split_sizes(n: int, fractions) -> tuple[int, ...]:
    """Part sizes that sum to n, each within 1 of n * fraction (largest-remainder rounding)."""
    fr = np.asarray(check_fractions(fractions))
    exact = n * fr
    sizes = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - sizes), kind="stable")
    sizes[order[: n - int(sizes.sum())]] += 1
    return tuple(int(s) for s in sizes)


def split_assignment(n: int, fractions, seed: int = 0) -> np.ndarray:
    """(n,) int8: the part each row belongs to (0 = train, ...), from a seeded permutation."""
    sizes = split_sizes(n, fractions)
    perm = np.random.default_rng(seed).permutation(n)
    part = np.empty(n, dtype=np.int8)
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    for k in range(len(sizes)):
        part[perm[bounds[k] : bounds[k + 1]]] = k
    return part


def default_out_paths(path: Path, out_dir: Path, n_parts: int) -> dict[str, Path]:
    return {name: out_dir / f"{path.stem}_{name}.h5" for name in PART_NAMES[n_parts]}


def _targets(path: Path, out_dir, out_paths, names: tuple[str, ...], force: bool) -> dict[str, Path]:
    if out_paths is None:
        if out_dir is None:
            raise ConfigError("split: expected an output directory or explicit output paths, found neither")
        targets = default_out_paths(path, Path(out_dir), len(names))
    else:
        targets = {k: Path(v) for k, v in out_paths.items()}
        if tuple(targets) != names:
            raise ConfigError(f"split: out_paths: expected parts {list(names)}, found {list(targets)}")
    resolved = [t.resolve() for t in targets.values()]
    if path.resolve() in resolved or len(set(resolved)) != len(resolved):
        raise ConfigError(f"split: output paths must differ from each other and from the source {path}")
    for name, t in targets.items():
        if t.parent.is_dir():  # a folder still to be created holds nothing to overwrite
            check_output(t, force=force, inputs=[path], what=f"{name} part")
    return targets


def _stored_bytes_per_row(path: Path, n: int) -> float | None:
    """The source's stored bytes per shower when its showers are gzip-compressed like the parts, else None."""
    import h5py

    with h5py.File(path, "r") as h5:
        gzip = h5[schema.SHOWERS].compression == "gzip"
    return os.path.getsize(path) / max(n, 1) if gzip else None


def split_file(
    path: str | Path,
    out_dir: str | Path | None = None,
    out_paths: dict[str, str | Path] | None = None,
    fractions=(0.8, 0.1, 0.1),
    seed: int = 0,
    geometry: Geometry | str | None = None,
    batch_size: int | None = None,
    progress_bar: bool = False,
    force: bool = False,
) -> dict[str, Path]:
    """Write the parts (``<out_dir>/<stem>_train.h5``, ``_val.h5``, ``_test.h5`` or ``out_paths``); all or none.

    An existing part is replaced only with ``force``; the source is never written onto."""
    path = Path(path)
    fr = check_fractions(fractions)
    names = PART_NAMES[len(fr)]
    targets = _targets(path, out_dir, out_paths, names, force)
    with ShowerFile(path, geometry=geometry) as f:  # layout checked before anything is created
        sizes = split_sizes(f.n, fr)
        if min(sizes) == 0:
            raise DataError(f"{path}: split: fractions {list(fr)} of {f.n} showers leave an empty part "
                            f"({dict(zip(names, sizes))})")
        for folder in {t.parent for t in targets.values()}:
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise DataError(f"{folder}: cannot create the output directory ({exc.strerror or exc})") from None
            clean_stale_temps(folder)
        row_bytes = _stored_bytes_per_row(path, f.n)
        if row_bytes is not None:  # gzip parts of a gzip source hold about the source's bytes
            ensure_free_space(next(iter(targets.values())), int(row_bytes * f.n), what="the split")
        part = split_assignment(f.n, fr, seed)
        n_det = n_detectors_of(f)
        writers: list[ShowerWriter] = []
        committed: list[Path] = []
        try:
            for k, name in enumerate(names):
                provenance = {"source": str(path), "seed": int(seed), "fractions": list(fr), "part": name,
                              "n_source": f.n}
                attrs = {**f.attrs, schema.ATTR_SPLIT: provenance}
                writers.append(ShowerWriter(targets[name], f.n_voxels, f.geometry, attrs, f.extras, sizes[k],
                                            bytes_per_row=row_bytes))
            with maybe_progress(progress_bar, "split", f.n) as bar:
                for batch in f.iter_batches(batch_size or batch_rows_for(f.n_voxels), with_extras=True):
                    check_batch(str(path), batch, n_det)
                    owner = part[batch.index]  # (b,)
                    for k, w in enumerate(writers):
                        sel = owner == k
                        if sel.any():
                            w.append(batch.energies[sel], batch.showers[sel],
                                     {name: v[sel] for name, v in batch.extras.items()})
                    bar.update(len(batch))
            for w in writers:
                committed.append(w.close())
        except BaseException:
            for w in writers:
                w.abort()
            for done in committed:  # all parts or none
                done.unlink(missing_ok=True)
            raise
    return dict(zip(names, committed))
