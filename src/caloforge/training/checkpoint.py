"""Checkpoints: atomic ``torch.save`` of tensors and plain types, loaded with ``weights_only=True``.

A run directory keeps its checkpoints in ``checkpoints/step_XXXXXXXX.pt`` plus a ``checkpoints/latest`` text file
naming the newest one; both are written to a temporary file and renamed, so a run killed at any instant leaves
either the previous or the new checkpoint, never a torn one. Only the last K are kept.
"""

from __future__ import annotations

import io
import random
from pathlib import Path

import numpy as np
import torch

from caloforge.errors import CaloforgeError
from caloforge.outputs import atomic_write_bytes, atomic_write_text, ensure_free_space

CKPT_DIR = "checkpoints"
LATEST = "latest"
FORMAT = "caloforge-checkpoint-1"
#: Entries every checkpoint written by ``save_checkpoint`` from a training run carries.
REQUIRED_KEYS = ("step", "config", "model", "model_config", "geometry", "objective", "chain", "encoder")


# ---- plain-type conversion (numpy arrays are not allowed by weights_only loading) ----------------------------------
def to_plain(obj):
    """Numpy arrays/scalars -> torch tensors / Python numbers, recursively, so the object loads with weights_only."""
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj))
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_plain(v) for v in obj)
    return obj


def to_numpy(obj):
    """Inverse of to_plain for state dicts handed back to numpy code (tensors -> arrays)."""
    if isinstance(obj, torch.Tensor):
        return obj.numpy()
    if isinstance(obj, dict):
        return {k: to_numpy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_numpy(v) for v in obj)
    return obj


# ---- RNG state -----------------------------------------------------------------------------------------------------
def capture_rng_state() -> dict:
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---- save / load ---------------------------------------------------------------------------------------------------
def checkpoint_name(step: int) -> str:
    return f"step_{step:08d}.pt"


def save_checkpoint(run_dir: str | Path, step: int, payload: dict, keep: int = 3) -> Path:
    """Write payload (plus format and step) as checkpoints/step_N.pt, point `latest` at it, prune to `keep`."""
    ckdir = Path(run_dir) / CKPT_DIR
    path = ckdir / checkpoint_name(step)
    data = to_plain({**payload, "format": FORMAT, "step": int(step)})
    buf = io.BytesIO()  # serialised first: the size is known, so a full disk is refused before the write
    torch.save(data, buf)
    ckdir.mkdir(parents=True, exist_ok=True)
    ensure_free_space(path, buf.getbuffer().nbytes, what="the checkpoint")
    atomic_write_bytes(path, lambda f: f.write(buf.getbuffer()))
    atomic_write_text(ckdir / LATEST, path.name + "\n")
    olds = sorted(p for p in ckdir.glob("step_*.pt") if p.name != path.name)
    for p in olds[: max(len(olds) - (keep - 1), 0)]:
        p.unlink(missing_ok=True)
    return path


def latest_step(run_dir: str | Path) -> int:
    """The step of a run directory's newest checkpoint (from its ``step_N.pt`` name, no load), 0 when it has none."""
    ckpt = latest_checkpoint(run_dir) if Path(run_dir).is_dir() else None
    return int(ckpt.stem.removeprefix("step_")) if ckpt is not None else 0


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest checkpoint of a run directory (via `latest`, else the highest step file), or None."""
    ckdir = Path(run_dir) / CKPT_DIR
    pointer = ckdir / LATEST
    if pointer.is_file():
        candidate = ckdir / pointer.read_text().strip()
        if candidate.is_file():
            return candidate
    files = sorted(ckdir.glob("step_*.pt"))
    return files[-1] if files else None


def resolve_checkpoint(run_dir_or_file: str | Path) -> Path:
    p = Path(run_dir_or_file)
    if p.is_file():
        return p
    if p.is_dir():
        found = latest_checkpoint(p)
        if found is None:
            raise CaloforgeError(f"{p}: no checkpoint found (expected {CKPT_DIR}/step_*.pt in a run directory)")
        return found
    raise CaloforgeError(f"{p}: no such checkpoint file or run directory")


def load_checkpoint(run_dir_or_file: str | Path, map_location="cpu") -> dict:
    """Load a checkpoint dict with weights_only=True (no arbitrary code runs while loading)."""
    path = resolve_checkpoint(run_dir_or_file)
    if path.stat().st_size == 0:
        raise CaloforgeError(f"{path}: not a caloforge checkpoint (the file is empty)")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for corrupt files
        first = (str(exc).strip().splitlines() or ["no detail"])[0]
        raise CaloforgeError(f"{path}: cannot load checkpoint ({type(exc).__name__}: {first})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise CaloforgeError(f"{path}: not a caloforge checkpoint (format: expected {FORMAT!r}, found {found!r})")
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise CaloforgeError(f"{path}: incomplete caloforge checkpoint (missing: {', '.join(missing)}); it was not "
                             f"written by caloforge train")
    data["path"] = str(path)
    return data
