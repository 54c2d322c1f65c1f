"""What a writer run did."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WriteSummary:
    """What a writer did: outputs written, outputs skipped because they already existed, unreadable inputs."""

    written: int
    skipped: int
    bad: tuple[str, ...]
    stale_removed: int
    seconds: float
    unit: str = "files"

    def __str__(self) -> str:
        rate = f" ({self.written / self.seconds:.1f} {self.unit}/s)" if self.written and self.seconds > 0 else ""
        parts = [f"written {self.written} {self.unit}{rate}", f"skipped {self.skipped} already done"]
        parts.append(f"{len(self.bad)} bad input file(s) skipped" if self.bad else "0 bad input files")
        if self.stale_removed:
            parts.append(f"removed {self.stale_removed} stale temporary file(s)")
        text = ", ".join(parts) + f" in {self.seconds:.1f} s"
        return text + "".join(f"\n  bad: {b}" for b in self.bad)
