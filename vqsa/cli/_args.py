"""argparse value types shared by the subcommands."""
from __future__ import annotations

import argparse
from collections.abc import Callable


def int_in_range(low: int, high: int | None = None, what: str = "value") -> Callable[[str], int]:
    """An argparse ``type`` accepting integers in [low, high] (no upper bound when ``high`` is None)."""
    bounds = f">= {low}" if high is None else f"in {low}..{high}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be an integer {bounds}, got {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{what} must be {bounds}, got {value}")
        return value

    return parse


positive_int = int_in_range(1, what="value")
non_negative_int = int_in_range(0, what="value")
severity = int_in_range(1, 5, what="severity")
