"""CIFAR-10-C style arrays: ``dst/<corruption>.npy`` (5 severity blocks) and ``labels.npy``."""
from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vqsa.corruptions._api import check_severities, derive_rng
from vqsa.utils.io import (
    atomic_open,
)
from vqsa.utils.lock import folder_lock

from .manifest import claim_destination, remove_stale_temporaries
from .pool import progress_bar, run_tasks
from .summary import WriteSummary
from .validate import SEVERITIES, check_profile, check_seed, requested_corruptions


def _corrupt_chunk(
    images: np.ndarray, keys: np.ndarray, corruption: str, severities: tuple[int, ...], profile: str, seed: int
) -> np.ndarray:
    """Corrupt ``images`` (n, H, W, 3) at each severity -> (len(severities), n, H, W, 3) uint8."""
    from vqsa.corruptions import corrupt

    out = np.empty((len(severities), *images.shape), np.uint8)
    for j, s in enumerate(severities):
        for i, (image, key) in enumerate(zip(images, keys)):
            out[j, i] = corrupt(image, s, corruption, rng=derive_rng(seed, int(key), corruption, s), profile=profile)
    return out


def corrupt_arrays(
    dst: str | os.PathLike,
    images: np.ndarray,
    labels: np.ndarray,
    corruptions: str | Sequence[str] = "common",
    severities: Sequence[int] = SEVERITIES,
    *,
    profile: str = "cifar",
    seed: int = 0,
    keys: np.ndarray | None = None,
    jobs: int = 1,
    progress: bool = True,
    info: dict[str, Any] | None = None,
) -> WriteSummary:
    """Write CIFAR-10-C style files: ``dst/<corruption>.npy`` and ``dst/labels.npy``.

    Each ``<corruption>.npy`` is (len(severities) * N, H, W, 3) uint8, severity-major (rows ``k*N .. (k+1)*N - 1``
    hold severity ``severities[k]``), and ``labels.npy`` is the labels tiled the same way, as uint8.

    Args:
        images: (N, H, W, 3) uint8.  labels: (N,) integers in 0..255.
        keys: per-image integer ids used to derive the random draws (default ``0..N-1``); pass the indices into
            the full dataset so that a subset's rows equal the corresponding rows of a full run.
        info: extra JSON-able facts recorded in the manifest (e.g. the source file).
    """
    names, sev = requested_corruptions(corruptions), check_severities(severities)
    profile, seed = check_profile(profile), check_seed(seed)
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3:
        raise ValueError(f"images must be a uint8 array (N, H, W, 3), got {getattr(images, 'shape', type(images))}")
    labels = np.asarray(labels)
    if (labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer)
            or labels.size and (labels.min() < 0 or labels.max() > 255)):
        raise ValueError(
            f"labels must be (N,) = ({len(images)},) integers in 0..255, got {labels.dtype} of shape {labels.shape}"
        )
    keys = np.arange(len(images), dtype=np.int64) if keys is None else np.asarray(keys, dtype=np.int64)
    if keys.shape != (len(images),) or len(np.unique(keys)) != len(keys):
        raise ValueError(f"keys must be {len(images)} distinct integers, got shape {keys.shape}")
    if len(images) == 0:
        raise ValueError("no images to corrupt")
    dst = Path(dst)
    settings = {
        "profile": profile,
        "seed": seed,
        "severities": list(sev),
        "n": len(images),
        "image_shape": list(images.shape[1:]),
        "keys_sha256": hashlib.sha256(keys.tobytes()).hexdigest(),
    }
    with folder_lock(dst):
        claim_destination(dst, "arrays", settings, info or {})
        start, stale = time.perf_counter(), remove_stale_temporaries(dst)
        shape = (len(sev) * len(images), *images.shape[1:])
        label_rows = np.tile(labels.astype(np.uint8), len(sev))
        if not _existing_npy_matches(dst / "labels.npy", label_rows.shape, label_rows):
            _save_npy(dst / "labels.npy", label_rows)
        skipped, todo = 0, []
        for name in names:
            if _existing_npy_matches(dst / f"{name}.npy", shape):
                skipped += 1
            else:
                todo.append(name)
        chunk = max(1, min(500, -(-len(images) // (4 * max(1, jobs)))))
        starts = range(0, len(images), chunk)
        meta = [(name, k) for name in todo for k in range(len(starts))]
        tasks = [(images[starts[k] : starts[k] + chunk], keys[starts[k] : starts[k] + chunk], name, sev, profile, seed)
                 for name, k in meta]
        parts: dict[str, list[np.ndarray | None]] = {name: [None] * len(starts) for name in todo}
        with progress_bar(len(todo) * len(images), "images", progress) as bar:
            for i, result in run_tasks(_corrupt_chunk, tasks, jobs):
                name, k = meta[i]
                parts[name][k] = result
                bar.update(result.shape[1])
                if all(p is not None for p in parts[name]):
                    _save_npy(dst / f"{name}.npy", np.concatenate(parts.pop(name), axis=1).reshape(shape))
        return WriteSummary(len(todo), skipped, (), stale, time.perf_counter() - start, "arrays")


def _existing_npy_matches(path: Path, shape: tuple[int, ...], expected: np.ndarray | None = None) -> bool:
    """True when ``path`` is a complete uint8 array of ``shape`` (and equal to ``expected`` if given)."""
    if not path.is_file():
        return False
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: exists but is not a readable .npy ({e}); delete it to rewrite it") from e
    if arr.dtype != np.uint8 or arr.shape != shape or (expected is not None and not np.array_equal(arr, expected)):
        raise ValueError(
            f"{path}: exists as {arr.dtype} {arr.shape} but this run writes uint8 {shape}"
            + (" with other contents" if arr.shape == shape else "") + "; delete it or choose another folder"
        )
    return True


def _save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_open(path, "wb") as f:
        np.save(f, array, allow_pickle=False)
