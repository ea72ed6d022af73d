"""Argument types shared by sub-commands (argparse ``type=`` callables)."""

from __future__ import annotations

import argparse


def colon_pair(text: str, hint: str = "A:B") -> tuple[float, float]:
    """'A:B' -> (A, B) as floats; anything else is an argparse error quoting ``hint``."""
    try:
        lo, hi = (float(x) for x in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {hint}, found {text!r}") from None
    return lo, hi
