"""Progress bars for long commands (tqdm; quiet when stderr is not a terminal unless forced)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable

from tqdm.auto import tqdm


def progress(iterable: Iterable | None = None, desc: str = "", total: int | None = None, unit: str = "it", **kw):
    """A tqdm bar on stderr; disabled in non-interactive runs unless CALOFORGE_PROGRESS=1."""
    force = os.environ.get("CALOFORGE_PROGRESS")
    disable = (force == "0") or (force != "1" and not sys.stderr.isatty())
    return tqdm(iterable, desc=desc, total=total, unit=unit, disable=disable, dynamic_ncols=True, **kw)
