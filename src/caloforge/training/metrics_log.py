"""The run's metrics log: one JSON line per logged step in ``<run>/metrics.jsonl`` (what `caloforge` and the
benchmarks read back), mirrored to TensorBoard when it is installed; a full disk is one line, not a traceback."""

from __future__ import annotations

import json
from pathlib import Path


class MetricsLog:
    """``metrics.jsonl`` (rank 0 only) and TensorBoard scalars when tensorboard is installed."""

    def __init__(self, out: Path, enabled: bool):
        self.enabled = enabled
        self.path = out / "metrics.jsonl"
        self.tb = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(out / "tensorboard"))
            except (ImportError, ModuleNotFoundError):
                self.tb = None

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        try:
            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")
        except OSError as exc:  # a full disk is one line, not a traceback
            from caloforge.outputs import OutputError, disk_error_message

            raise OutputError(disk_error_message(self.path, exc) or f"{self.path}: cannot write ({exc})") from None
        if self.tb is not None:
            for k, v in record.items():
                if k != "step" and isinstance(v, (int, float)):
                    self.tb.add_scalar(k, v, record["step"])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
