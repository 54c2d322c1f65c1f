"""CIFAR-10-C written from the CIFAR-10 test split with vqsa's corruption engine (``vqsa corrupt --cifar10``)."""
from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from vqsa.corruptions._api import derive_rng
from vqsa.corruptions.writers import SEVERITIES, WriteSummary, corrupt_arrays

from .cifar import load_cifar10
from .paths import resolve_data_root


def corrupt_cifar10(
    dst: str | os.PathLike,
    data_root: str | os.PathLike | None = None,
    corruptions: str | Sequence[str] = "common",
    severities: Sequence[int] = SEVERITIES,
    *,
    limit: int | None = None,
    profile: str = "cifar",
    seed: int = 0,
    jobs: int = 1,
    progress: bool = True,
) -> WriteSummary:
    """CIFAR-10-C from the CIFAR-10 test split (``data_root`` or ``$VQSA_DATA``): see
    :func:`vqsa.corruptions.writers.corrupt_arrays`.

    ``limit`` keeps a fixed random subset of that many test images (in dataset order, drawn with ``seed``); its
    rows are identical to the corresponding rows of a full run with the same seed, and the manifest records their
    test indices (``vqsa evaluate`` scores the clean images at them). A limit above the number of test images
    raises ValueError.
    """
    root = resolve_data_root(data_root, required=True)
    ds = load_cifar10(root, "test")
    idx = np.arange(len(ds), dtype=np.int64)
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit <= 0:
            raise ValueError(f"limit must be a positive integer, got {limit!r}")
        if limit > len(ds):
            raise ValueError(f"limit {limit} is larger than the {len(ds)} CIFAR-10 test images of {ds.source}; "
                             f"omit --limit to write all {len(ds)}")
        if limit < len(ds):
            idx = np.sort(derive_rng(seed, "cifar10-test-subset").permutation(len(ds))[:limit])
    info = {"source": ds.source, "split": "test", "classes": list(ds.classes)}
    if len(idx) < len(ds):
        info["indices"] = idx.tolist()
    return corrupt_arrays(
        dst, ds.images[idx], ds.labels[idx], corruptions, severities, profile=profile, seed=seed, keys=idx,
        jobs=jobs, progress=progress, info=info,
    )
