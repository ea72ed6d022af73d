"""Progress for long commands: a tqdm bar with ETA on a terminal, a plain line every ~30 s otherwise.

A batch job or ``make demo > log`` has no terminal: a bar there is either silence or a wall of carriage returns,
so the same progress is written as one self-contained line (what, step n/N, rate, elapsed, ETA) at most every
``CALOFORGE_PROGRESS_EVERY`` seconds (default 30) and once at the end. ``CALOFORGE_PROGRESS`` chooses:
``bar`` (or ``1``) a bar even without a terminal, ``lines`` plain lines even on a terminal, ``0`` nothing;
unset: a bar on a terminal, lines otherwise.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable

from tqdm.auto import tqdm

LINE_FORMAT = "{desc}: {n_fmt}/{total_fmt} {unit} ({percentage:.0f}%), {rate_fmt}, elapsed {elapsed}, ETA {remaining}"
DEFAULT_EVERY_S = 30.0


class LineProgress(tqdm):
    """tqdm that prints whole lines, at most one per ``every`` seconds plus a last one when it ends."""

    def __init__(self, *args, every: float = DEFAULT_EVERY_S, **kw):
        self._every, self._t_line, self._printed = float(every), time.monotonic(), False
        super().__init__(*args, **kw)

    def display(self, msg=None, pos=None):
        now = time.monotonic()
        if getattr(self, "_closing", False):
            if getattr(self, "_final", False) or not (self._printed or now - self.start_t >= self._every):
                return True  # the last line is out already, or a short task stays silent
            self._final = True
        elif now - self._t_line < self._every:
            return True
        line = (msg if msg else self.__str__()).strip()
        if self.postfix:
            line += f", {self.postfix}"
        self.fp.write(line + "\n")
        self.fp.flush()
        self._t_line, self._printed = now, True
        return True

    def close(self):
        self._closing = True
        super().close()


class _WholeLines:
    """stderr without the bare carriage returns and newlines tqdm writes around its bar."""

    def write(self, text: str) -> None:
        if text.strip():
            sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def mode() -> str:
    """'bar', 'lines' or 'off', from CALOFORGE_PROGRESS and whether stderr is a terminal."""
    force = os.environ.get("CALOFORGE_PROGRESS", "").strip().lower()
    if force in ("0", "off", "no", "false"):
        return "off"
    if force in ("1", "bar", "yes", "true"):
        return "bar"
    if force == "lines":
        return "lines"
    return "bar" if sys.stderr.isatty() else "lines"


def progress(iterable: Iterable | None = None, desc: str = "", total: int | None = None, unit: str = "it", **kw):
    """A progress bar or periodic progress lines on stderr (see the module docstring)."""
    how = mode()
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)
    if how == "lines":
        every = float(os.environ.get("CALOFORGE_PROGRESS_EVERY", DEFAULT_EVERY_S))
        kw.pop("dynamic_ncols", None)
        return LineProgress(iterable, desc=desc, total=total, unit=unit, every=every, file=_WholeLines(),
                            bar_format=LINE_FORMAT if total else "{desc}: {n_fmt} {unit}, {rate_fmt}, "
                            "elapsed {elapsed}", **kw)
    return tqdm(iterable, desc=desc, total=total, unit=unit, disable=how == "off", dynamic_ncols=True, **kw)
