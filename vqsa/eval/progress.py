"""Per-rank evaluation progress on disk: exact counts up to a position of the rank's shard, saved after every
finished cell, so that a killed or failed evaluation continues where it stopped with identical final counts.

A progress file records a fingerprint of everything that decides the counts (the cells and their sizes, the
example selection, seed, batch size, precision, world size and the model's weights); a file made with other
settings is refused by name instead of being mixed in.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vqsa.utils.io import atomic_write_json

logger = logging.getLogger(__name__)

FORMAT = 1


def progress_path(folder: str | os.PathLike, rank: int, world: int) -> Path:
    """The progress file of ``rank`` of ``world`` in ``folder``."""
    return Path(folder) / f"eval_progress.rank{rank}of{world}.json"


def clear_progress(folder: str | os.PathLike) -> None:
    """Remove the progress files of every rank in ``folder`` (call once the results are written)."""
    for path in Path(folder).glob("eval_progress.rank*of*.json"):
        path.unlink(missing_ok=True)


def model_digest(model: Callable[..., Any]) -> str | None:
    """sha256 of an ``nn.Module``'s parameters and buffers (names, dtypes, shapes, bytes); None for other callables."""
    if not isinstance(model, nn.Module):
        return None
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        if not isinstance(t, torch.Tensor):
            continue
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def fingerprint(settings: dict[str, Any]) -> str:
    """sha256 of the JSON form of ``settings`` (sorted keys)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class Progress:
    """Counts of one rank's shard up to ``position`` (items of the shard consumed, readable or not)."""

    fingerprint: str
    n_cells: int
    position: int = 0
    correct: list[int] = field(default_factory=list)
    total: list[int] = field(default_factory=list)
    excluded: list[int] = field(default_factory=list)
    bad_files: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name in ("correct", "total", "excluded"):
            if not getattr(self, name):
                setattr(self, name, [0] * self.n_cells)

    def save(self, path: Path) -> None:
        atomic_write_json(path, {"format": FORMAT, "fingerprint": self.fingerprint, "position": self.position,
                                 "correct": self.correct, "total": self.total, "excluded": self.excluded,
                                 "bad_files": self.bad_files})


def load_progress(path: Path, expected: str, n_cells: int) -> Progress | None:
    """The saved progress at ``path`` (None when there is none); a file made with other settings, or unreadable, is
    refused in one line naming it."""
    if not path.is_file():
        logger.info(f"resume: no evaluation progress at {path}; starting from the first cell")
        return None
    try:
        d = json.loads(path.read_text())
        prog = Progress(d["fingerprint"], n_cells, int(d["position"]), list(d["correct"]), list(d["total"]),
                        list(d["excluded"]), list(d["bad_files"]))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: unreadable evaluation progress ({type(e).__name__}: {e}); delete it to start "
                         "again") from e
    if prog.fingerprint != expected:
        raise ValueError(f"{path}: the saved progress is of another evaluation (other model weights, cells, examples, "
                         "seed, batch size, precision, device or world size); rerun without --resume to start again")
    if not (len(prog.correct) == len(prog.total) == len(prog.excluded) == n_cells):
        raise ValueError(f"{path}: the saved progress counts {len(prog.total)} cells, this evaluation has {n_cells}")
    logger.info(f"resume: continuing the evaluation from {path} (position {prog.position} of this rank's shard)")
    return prog
