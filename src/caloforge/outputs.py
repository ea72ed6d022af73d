"""The one home for writing user-visible files safely.

What caloforge promises about outputs: an existing file is never replaced unless the user asked (``--force``); an
input of the same command is never written onto, even with ``--force``; every file is built under a temporary name
in its destination folder and renamed only when complete; a full disk is one line naming the path, never a
traceback or a half-written file; temporary files of killed runs are removed on the next start.
"""

from __future__ import annotations

import errno
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from caloforge.errors import CaloforgeError

TMP_MARK = ".caloforge-tmp-"
_DISK_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG}


class OutputError(CaloforgeError):
    """An output path is unsafe (exists, is an input) or cannot be written (full disk, no permission)."""


def temp_name(dest: Path) -> Path:
    """A hidden temporary sibling of ``dest`` that names the owning process (so stale ones can be found)."""
    return dest.parent / f".{dest.name}{TMP_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_temps(folder: str | Path) -> list[Path]:
    """Remove temporary files/folders in ``folder`` left by processes that no longer run; returns what went."""
    folder = Path(folder)
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for p in folder.iterdir():
        if TMP_MARK not in p.name:
            continue
        try:
            pid = int(p.name.split(TMP_MARK, 1)[1].split("-", 1)[0])
        except ValueError:
            continue
        if pid == os.getpid() or _pid_alive(pid):
            continue
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        removed.append(p)
    return removed


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_output(path: str | Path, *, force: bool = False, inputs: Iterable[str | Path | None] = (),
                 what: str = "output") -> Path:
    """Refuse, before any work, an output that would overwrite an input (always) or an existing file (unless
    ``force``). Returns the path; the caller then writes through ``atomic_path``."""
    path = Path(path)
    for src in inputs:
        if src is not None and (_same_file(path, Path(src)) or path.resolve() == Path(src).resolve()):
            raise OutputError(f"{path}: {what} is also an input of this command ({src}); choose another path")
    if path.is_dir() and what != "directory":
        raise OutputError(f"{path}: {what} is an existing directory; expected a file path")
    if path.exists() and not force:
        raise OutputError(f"{path}: {what} exists; pass --force to replace it")
    if not path.parent.exists():
        raise OutputError(f"{path}: the folder {path.parent} does not exist")
    return path


def disk_error_message(path: Path, exc: OSError) -> str | None:
    """One line for a full disk / quota / too-large error, else None."""
    if getattr(exc, "errno", None) in _DISK_ERRNOS or "No space left" in str(exc):
        free = shutil.disk_usage(path.parent if path.parent.exists() else Path(".")).free
        return f"{path}: the disk is full ({free / 1e6:.1f} MB free there); free some space or choose another folder"
    return None


def ensure_free_space(path: str | Path, nbytes: int, what: str = "output") -> None:
    """Refuse a write whose size is known in advance when the destination folder lacks the room (10 % margin)."""
    path = Path(path)
    free = shutil.disk_usage(path.parent if path.parent.exists() else Path(".")).free
    need = int(nbytes * 1.1)
    if need > free:
        raise OutputError(f"{path}: {what} needs about {need / 1e6:.1f} MB but only {free / 1e6:.1f} MB are free "
                          f"there; free some space or choose another folder")


@contextmanager
def atomic_path(dest: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; rename it onto ``dest`` when the block succeeds, remove it otherwise
    (also on KeyboardInterrupt). A full disk becomes one ``OutputError`` line."""
    dest = Path(dest)
    tmp = temp_name(dest)
    try:
        yield tmp
        os.replace(tmp, dest)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            msg = disk_error_message(dest, exc)
            if msg:
                raise OutputError(msg) from None
        raise


def atomic_write_bytes(path: str | Path, write_fn) -> None:
    """``write_fn(file_object)`` writes the content; the file appears whole or not at all."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        write_fn(f)
        f.flush()
        os.fsync(f.fileno())


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, lambda f: f.write(text.encode()))


def swap_dir(src: str | Path, dest: str | Path) -> None:
    """Rename the finished directory ``src`` onto ``dest`` in one step; an existing ``dest`` is moved aside first
    (put back if the rename fails) and removed after, so ``dest`` is always the old or the new one, never a mix."""
    src, dest = Path(src), Path(dest)
    old = temp_name(dest) if dest.exists() else None
    if old is not None:
        os.replace(dest, old)
    try:
        os.replace(src, dest)
    except BaseException:
        if old is not None:
            os.replace(old, dest)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextmanager
def replaced_dir(dest: str | Path) -> Iterator[Path]:
    """Build a directory under a temporary name and swap it in as a whole: a killed or failed build leaves the old
    directory (or nothing) in place, never a mix of old and new files."""
    dest = Path(dest)
    tmp = temp_name(dest)
    tmp.mkdir()
    try:
        yield tmp
        swap_dir(tmp, dest)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError):
            msg = disk_error_message(dest, exc)
            if msg:
                raise OutputError(msg) from None
        raise
