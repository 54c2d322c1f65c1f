"""The seeded random subsets that training (``data.*_subset``), evaluation (``limit``) and the analyses draw."""
from __future__ import annotations

import numpy as np


def seeded_subset(total: int, n: int | None, seed: int = 0) -> np.ndarray | None:
    """Sorted indices of a seeded random subset of ``n`` of ``range(total)``; None (all of them) when ``n`` is None
    or not smaller than ``total``. The same (total, n, seed) always gives the same subset."""
    if n is None or n >= total:
        return None
    return np.sort(np.random.default_rng(seed).permutation(total)[:n])
