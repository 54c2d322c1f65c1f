"""Run logs: per-epoch ``metrics.jsonl`` / ``metrics.csv`` (rewritten atomically), optional TensorBoard, summary."""
from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path
from typing import Any

from vqsa.utils.io import atomic_write_text


def _jsonable(v: Any) -> Any:
    # NaN/Inf are not JSON: a diverged value is written as null (the run stops with a message anyway).
    return None if isinstance(v, float) and not math.isfinite(v) else v


class MetricsLogger:
    """Keeps the per-epoch history; each :meth:`log` rewrites ``metrics.jsonl`` and ``metrics.csv`` atomically.

    The history travels in the checkpoint, so a resumed run rewrites exactly the epochs its checkpoint has seen
    (a kill between the metrics write and the checkpoint write never leaves a duplicated epoch).

    Args:
        run_dir: the run folder.
        history: records of the epochs already done (from the checkpoint when resuming).
        enabled: False on ranks other than 0 (only rank 0 writes).
        tensorboard: also write TensorBoard scalars under ``run_dir/tensorboard`` (needs the tensorboard package).
    """

    def __init__(
        self, run_dir: str | os.PathLike, history: list[dict[str, Any]] | None = None, *, enabled: bool = True,
        tensorboard: bool = False,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.history: list[dict[str, Any]] = [dict(r) for r in history or []]
        self.enabled = enabled
        self._tb = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as e:
                raise RuntimeError("tensorboard: true needs the tensorboard package (pip install tensorboard)") from e
            self._tb = SummaryWriter(str(self.run_dir / "tensorboard"))
        if enabled and self.history:
            self._write()

    def log(self, record: dict[str, Any]) -> None:
        """Append one epoch's record and rewrite the files."""
        record = {k: _jsonable(v) for k, v in record.items()}
        self.history.append(record)
        if not self.enabled:
            return
        self._write()
        if self._tb is not None:
            step = record.get("epoch", len(self.history))
            for k, v in record.items():
                if isinstance(v, (int, float)) and k != "epoch" and v is not None:
                    self._tb.add_scalar(k, v, step)
            self._tb.flush()

    def _write(self) -> None:
        atomic_write_text(self.run_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in self.history))
        columns: list[str] = []
        for r in self.history:
            columns += [k for k in r if k not in columns]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.history)
        atomic_write_text(self.run_dir / "metrics.csv", buf.getvalue())

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def format_summary(summary: dict[str, Any]) -> str:
    """A short human-readable block for the end of a run."""
    width = max(len(k) for k in summary)
    lines = []
    for k, v in summary.items():
        text = f"{v:.4g}" if isinstance(v, float) else str(v)
        lines.append(f"  {k.ljust(width)}  {text}")
    return "\n".join(lines)
