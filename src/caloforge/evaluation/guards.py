"""Guards against meaningless evaluations: reference == training data, shared showers, mismatched energies.

A generator evaluated on the showers it was trained on (or a "generated" file that contains reference showers)
scores as if it were perfect. Showers are compared by a per-row digest (blake2b of the float32 bytes of the
incident energy and the voxels), computed while streaming, so files of any size are checked in constant memory.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from scipy.stats import ks_2samp

from caloforge.errors import CaloforgeError

#: Below this KS p-value the incident-energy distributions of generated and reference files are flagged.
ENERGY_KS_P_WARN = 1e-3


def row_digests(energies: np.ndarray, showers: np.ndarray) -> np.ndarray:
    """(n,) uint64 digests of each (energy, shower) row; float32 bytes so float64 copies of a file match too."""
    e = np.ascontiguousarray(np.asarray(energies, dtype=np.float32).reshape(-1))
    s = np.ascontiguousarray(np.asarray(showers, dtype=np.float32))
    out = np.empty(len(s), dtype=np.uint64)
    for i in range(len(s)):
        h = hashlib.blake2b(e[i].tobytes(), digest_size=8)
        h.update(s[i].tobytes())
        out[i] = int.from_bytes(h.digest(), "little")
    return out


def stream_digests(batches: Iterable) -> np.ndarray:
    """Digests of every row of a stream of batches with ``.energies`` and ``.showers``."""
    parts = [row_digests(b.energies, b.showers) for b in batches]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint64)


def file_digests(path: str | Path, batch_size: int = 2048) -> np.ndarray:
    from caloforge.data.reader import ShowerFile

    with ShowerFile(path) as f:
        return stream_digests(f.iter_batches(batch_size))


def n_shared(a: np.ndarray, b: np.ndarray) -> int:
    """How many rows of ``b`` also occur in ``a`` (digest equality)."""
    return int(np.isin(b, np.unique(a)).sum())


def same_file(a: str | Path, b: str | Path) -> bool:
    """Same path or same inode (hard links, symlinks)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(a).resolve() == Path(b).resolve()


def check_independence(
    ref_path: str | Path,
    gen_paths: list,
    train_path: str | Path | None = None,
    allow_overlap: bool = False,
    digests: dict | None = None,
    content: bool = True,
) -> list[str]:
    """Refuse (one-line CaloforgeError) when the reference is the training data or shares showers with a generated
    file; with ``allow_overlap`` the same findings come back as warnings. ``digests`` maps str(path) -> digests
    already computed during streaming (missing ones are computed here). ``content=False`` checks only paths and
    inodes (cheap: run it before any streaming)."""
    digests = dict(digests or {})

    def dig(p) -> np.ndarray:
        key = str(p)
        if key not in digests:
            digests[key] = file_digests(p)
        return digests[key]

    problems: list[str] = []
    if train_path is not None:
        if same_file(ref_path, train_path):
            problems.append(f"{ref_path}: the reference file is the training file {train_path}")
        elif content:
            k = n_shared(dig(train_path), dig(ref_path))
            if k:
                problems.append(f"{ref_path}: {k} of {len(dig(ref_path))} reference showers are in the training file "
                                f"{train_path}")
    for g in gen_paths:
        if same_file(ref_path, g):
            problems.append(f"{g}: the generated file is the reference file {ref_path}")
            continue
        k = n_shared(dig(ref_path), dig(g)) if content else 0
        if k:
            problems.append(f"{g}: {k} of {len(dig(g))} generated showers also occur in the reference {ref_path}")
    if problems and not allow_overlap:
        raise CaloforgeError(
            problems[0] + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
            + "; the evaluation would be meaningless (pass --allow-overlap to evaluate anyway)"
        )
    return [f"OVERLAP ALLOWED: {p}" for p in problems]


def log_energy_separation_power(e_gen: np.ndarray, e_ref: np.ndarray, bins: int = 50) -> float:
    """Separation power (triangular discrimination) of log10 E_inc histograms over the common range."""
    lg, lr = np.log10(e_gen), np.log10(e_ref)
    edges = np.linspace(min(lg.min(), lr.min()), max(lg.max(), lr.max()) + 1e-12, bins + 1)
    h1 = np.histogram(lr, edges)[0] / len(lr)
    h2 = np.histogram(lg, edges)[0] / len(lg)
    return float(0.5 * np.sum((h1 - h2) ** 2 / (h1 + h2 + 1e-16)))


def energy_distribution_check(e_gen: np.ndarray, e_ref: np.ndarray) -> dict:
    """KS test and separation power of the incident-energy distributions; warns when p < 1e-3.

    The official README asks for matching incident energies: otherwise every histogram is distorted.
    """
    e_gen = np.asarray(e_gen, dtype=np.float64).reshape(-1)
    e_ref = np.asarray(e_ref, dtype=np.float64).reshape(-1)
    ks = ks_2samp(np.log10(e_gen), np.log10(e_ref))
    out = {
        "ks_statistic": float(ks.statistic),
        "ks_pvalue": float(ks.pvalue),
        "separation_power_log_e": log_energy_separation_power(e_gen, e_ref),
        "gen_range_mev": [float(e_gen.min()), float(e_gen.max())],
        "ref_range_mev": [float(e_ref.min()), float(e_ref.max())],
        "warning": None,
    }
    if ks.pvalue < ENERGY_KS_P_WARN:
        out["warning"] = (
            f"incident-energy distributions differ (KS p = {ks.pvalue:.2g} < {ENERGY_KS_P_WARN:g}); "
            "histograms and classifiers are distorted"
        )
    return out
