"""What machine a benchmark ran on (shared by the scripts in this folder; run them as `python benchmarks/x.py`)."""

from __future__ import annotations

import platform
from pathlib import Path


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (Linux), else what the platform module says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags() -> set[str]:
    """The instruction-set flags /proc/cpuinfo lists (empty where there is none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_features(wanted=("avx2", "avx512f", "avx512_bf16", "amx_bf16", "avx512_vnni")) -> str:
    """Which of the instruction sets that decide CPU bf16/int8 speed this CPU has (hosts of one name differ)."""
    have = cpu_flags()
    if not have:
        return "flags unknown"
    return ", ".join(f"{f} {'yes' if f in have else 'no'}" for f in wanted)
