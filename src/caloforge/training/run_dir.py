"""Run directories (``train``, and later ``adapt`` / ``distill``): one writer at a time, a recipe stored only with
a checkpoint, no stale temporary files.

- **Lock**: the writing process holds an exclusive ``fcntl.flock`` on ``RUN_DIR/.caloforge.lock`` for its whole
  life. A second command on the same directory is refused in one line while the first runs. The operating system
  drops the lock when its process dies (even by SIGKILL), so a killed run's lock is simply taken over on the next
  start. Where ``fcntl`` does not exist (Windows) runs are not locked.
- **Recipe**: ``config.yaml`` is written just before each checkpoint, never at start, and compared with the
  requested recipe only when a checkpoint exists. A first attempt that failed before its first checkpoint (missing
  file, bad value) therefore never blocks the corrected command.
- **Temporary files**: under the lock nothing else writes here, so every temporary file in the directory and its
  ``checkpoints/`` folder is a leftover of a killed run and is removed on start.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from caloforge.errors import CaloforgeError, ConfigError
from caloforge.outputs import TMP_MARK, atomic_write_text

if TYPE_CHECKING:
    from typing_extensions import Self

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

LOCK_NAME = ".caloforge.lock"
CONFIG_NAME = "config.yaml"


class RunDirLock:
    """Exclusive lock on a run directory for the life of this object (``with RunDirLock(out): ...``). ``name``: the
    lock file; ``distill`` locks its ``OUT.partial`` under another name because the trainer locks the same folder."""

    def __init__(self, out: str | Path, command: str = "train", enabled: bool = True, name: str = LOCK_NAME):
        self.out, self.command, self.enabled, self.name = Path(out), command, enabled, name
        self._fd: int | None = None
        self._created = False

    def acquire(self) -> None:
        if not self.enabled or fcntl is None:
            return
        self._created = not self.out.exists()
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.out / self.name, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise CaloforgeError(f"{self.out}: cannot use the run directory ({exc.strerror or exc})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise CaloforgeError(f"{self.out}: this run directory is in use by {holder}; wait for it to finish "
                                 f"(it resumes from here) or choose another --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"caloforge {self.command} (pid {os.getpid()})\n".encode(), 0)
        self._fd = fd

    def release(self, remove_empty: bool = True) -> None:
        """Drop the lock; a directory this lock created and nothing else wrote to (a run refused before any work)
        is removed again, so a failed command leaves nothing behind. ``remove_empty=False``: the caller has moved
        or removed the directory itself, so nothing is looked at there."""
        if self._fd is None:
            return
        if remove_empty and self._created and set(os.listdir(self.out)) <= {self.name}:
            (self.out / self.name).unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                self.out.rmdir()
        os.close(self._fd)  # closing the descriptor drops the flock
        self._fd = None

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def remove_stale_temps(out: str | Path) -> list[Path]:
    """Remove every temporary file in the run directory and its checkpoints (call only while holding the lock):
    ``caloforge.outputs`` temps and the ``.<name>.*.tmp`` files of older caloforge versions."""
    removed = []
    for folder in (Path(out), Path(out) / "checkpoints"):
        if not folder.is_dir():
            continue
        for p in folder.iterdir():
            if p.is_file() and (TMP_MARK in p.name or (p.name.startswith(".") and p.name.endswith(".tmp"))):
                p.unlink(missing_ok=True)
                removed.append(p)
    return removed


def check_recipe(out: Path, requested: dict, has_checkpoint: bool) -> None:
    """Refuse to resume a run trained with another recipe (other than resume-free settings). Without a checkpoint
    the directory holds no run, and a ``config.yaml`` left by a failed attempt is ignored (it is rewritten)."""
    from caloforge.training.config import recipe_differences

    cfg_path = out / CONFIG_NAME
    if not has_checkpoint or not cfg_path.is_file():
        return
    try:
        old = yaml.safe_load(cfg_path.read_text())
    except yaml.YAMLError:
        raise ConfigError(f"{cfg_path}: cannot parse the stored recipe; use a new --out directory") from None
    diffs = recipe_differences(old or {}, requested)
    if diffs:
        more = f" and {len(diffs) - 1} more" if len(diffs) > 1 else ""
        raise ConfigError(f"{cfg_path}: this run directory holds a run with a different recipe: {diffs[0]}{more} "
                          f"(stored vs requested); use a new --out directory or the same settings")


def store_recipe(out: Path, recipe_yaml: str) -> None:
    """Write ``config.yaml`` (atomically) when it is missing or differs; called just before a checkpoint."""
    path = Path(out) / CONFIG_NAME
    if not (path.is_file() and path.read_text() == recipe_yaml):
        atomic_write_text(path, recipe_yaml)
