"""The in-progress folder of ``caloforge distill``: work happens in ``<OUT>.partial`` so a killed run resumes.

``<OUT>.partial/distill_request.json`` records what defines the job (method, steps, every setting, the teacher
checkpoint actually loaded, the data file). Re-running the same command resumes there; another request is refused in
one line naming the first differing field, unless ``--force`` (which starts afresh). One ``distill`` at a time holds
the folder (an OS lock, dropped when its process dies). On success the folder is renamed to ``OUT`` in one step; a
failure keeps it when it holds a checkpoint (something to resume) and removes it otherwise (nothing was done).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from caloforge.errors import ConfigError
from caloforge.outputs import OutputError, atomic_write_text, swap_dir
from caloforge.training.checkpoint import latest_step
from caloforge.training.run_dir import RunDirLock, remove_stale_temps

REQUEST_NAME = "distill_request.json"
LOCK_NAME = ".caloforge-distill.lock"  # not the trainer's .caloforge.lock: the trainer locks this folder too
#: Settings that change neither the student nor the order of its training steps: they may differ on resume.
RESUME_FREE = {("settings", "train", "ckpt_every"), ("settings", "train", "log_every")}
CHECKPOINTED = ("consistency", "progressive")  # bespoke and reflow keep no checkpoints: they restart


def partial_path(out: Path) -> Path:
    """``<OUT>.partial``, a visible sibling of ``OUT``."""
    return out.parent / f"{out.name}.partial"


def job_request(cfg, teacher_ckpt: dict, data_path) -> dict:
    """What defines a distillation: equal requests make the same student, so the work of one may serve the other."""
    ck = Path(teacher_ckpt["path"]).resolve()
    return {"method": cfg.method, "steps": cfg.steps,
            "teacher": {"checkpoint": str(ck), "step": int(teacher_ckpt["step"]), "bytes": ck.stat().st_size},
            "data": str(Path(data_path).resolve()), "settings": cfg.model_dump(mode="json")}


def first_difference(stored: dict, requested: dict, prefix: tuple = ()) -> str | None:
    """``field: stored vs requested`` for the first field (in request order) that differs, else None."""
    for key in dict.fromkeys([*requested, *stored]):
        path = (*prefix, key)
        if path in RESUME_FREE:
            continue
        a, b = stored.get(key), requested.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            found = first_difference(a, b, path)
            if found:
                return found
        elif a != b:
            return f"{'.'.join(path)}: {a!r} (stored) vs {b!r} (requested)"
    return None


def has_checkpoint(part: Path) -> bool:
    """Whether the folder holds trained work: a checkpoint of the student or of a progressive round."""
    return any(latest_step(run) > 0 for run in [part, *part.glob("rounds/*")])


def _check_inputs(part: Path, inputs: Iterable) -> None:
    """Never start in (and, with --force, empty) a folder that holds the teacher or the data file."""
    for src in inputs:
        if Path(src).resolve().is_relative_to(part.resolve()):
            raise OutputError(f"{part}: the in-progress folder of --out holds an input of this command ({src}); "
                              f"choose another --out")


def _clear(part: Path) -> None:
    """Empty the folder except the lock this process holds (--force: the old work is discarded)."""
    for p in part.iterdir():
        if p.name != LOCK_NAME:
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()


def _read_request(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise OutputError(f"{path}: cannot read the stored request ({exc}); delete the folder or pass "
                          f"--force") from None
    if not isinstance(data, dict):
        raise OutputError(f"{path}: expected a JSON object; delete the folder or pass --force")
    return data


def _open(part: Path, request: dict, force: bool) -> None:
    """Start, resume or refuse the locked folder, then (re)write its request."""
    remove_stale_temps(part)
    req = part / REQUEST_NAME
    if force:
        _clear(part)
    elif set(os.listdir(part)) - {LOCK_NAME}:
        if not req.is_file():
            raise OutputError(f"{part}: holds files but no {REQUEST_NAME}, so it is not an interrupted caloforge "
                              f"distill; delete the folder or pass --force")
        diff = first_difference(_read_request(req), request)
        if diff:
            raise ConfigError(f"{req}: the interrupted run there has other settings, {diff}; delete the folder or "
                              f"pass --force to start afresh")
        method = request["method"]
        how = "" if method in CHECKPOINTED else f" from its beginning ({method} keeps no checkpoints)"
        print(f"[distill] resuming the interrupted run in {part}{how}", file=sys.stderr, flush=True)
    atomic_write_text(req, json.dumps(request, indent=1) + "\n")


@contextmanager
def partial_job(out: Path, request: dict, force: bool = False, inputs: Iterable = ()) -> Iterator[Path]:
    """Yield the locked ``<OUT>.partial`` to work in; rename it to ``out`` when the block succeeds (an existing
    ``out`` only with ``force``); on failure keep it only if it holds a checkpoint."""
    part = partial_path(out)
    _check_inputs(part, [p for p in inputs if p is not None])
    lock = RunDirLock(part, "distill", name=LOCK_NAME)
    lock.acquire()
    try:
        part.mkdir(exist_ok=True)  # made by the lock where locks exist; not on Windows
        _open(part, request, force)
    except BaseException:
        lock.release()
        raise
    try:
        yield part
    except BaseException:
        if not has_checkpoint(part):
            shutil.rmtree(part, ignore_errors=True)
        lock.release(remove_empty=False)
        raise
    try:
        _finish(part, out, force)
    finally:
        lock.release(remove_empty=False)


def _finish(part: Path, out: Path, force: bool) -> None:
    """The finished folder becomes ``out`` in one rename; ``out`` keeps the request as provenance, not the lock."""
    if out.exists() and not force:
        raise OutputError(f"{out}: appeared while distilling; the finished run stays in {part}: move it or re-run "
                          f"with --force")
    swap_dir(part, out)
    (out / LOCK_NAME).unlink(missing_ok=True)
