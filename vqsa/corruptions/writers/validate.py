"""Validation of the writers' arguments, once at the boundary: corruptions, severities, profile, sizes, JPEG
quality, seed."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vqsa.corruptions._api import resolve_corruptions
from vqsa.corruptions._params import PROFILE_CHOICES

PROFILES = PROFILE_CHOICES  # what the writers accept: a table or auto


SEVERITIES = (1, 2, 3, 4, 5)


def requested_corruptions(spec: str | Sequence[str]) -> tuple[str, ...]:
    """:func:`vqsa.corruptions.resolve_corruptions`, refusing an empty request (a writer must write something)."""
    names = resolve_corruptions(spec)
    if not names:
        raise ValueError("no corruptions requested")
    return names


def check_profile(profile: str) -> str:
    """Validate a corruption parameter profile name."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; expected one of {', '.join(PROFILES)}")
    return profile


def check_size(name: str, value: int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
    return int(value)


def check_quality(q: int | None) -> int | None:
    if q is None:
        return None
    if isinstance(q, bool) or not isinstance(q, (int, np.integer)) or not 1 <= q <= 95:
        raise ValueError(f"jpeg_quality must be an integer in 1..95 (85 = ImageNet-C release), got {q!r}")
    return int(q)


def check_seed(seed: int) -> int:
    """Validate a seed (a non-negative integer)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)
