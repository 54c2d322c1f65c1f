"""ImageNet-C style folder trees: ``dst/<corruption>/<severity>/<relative path>`` for every image of a source tree."""
from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from vqsa.corruptions._api import check_severities, derive_rng
from vqsa.utils.io import (
    BadImageError,
    atomic_write_bytes,
)
from vqsa.utils.lock import folder_lock

from .images import encode_image, imagenet_c_preprocess, list_images, load_rgb, output_complete, output_relpath
from .manifest import claim_destination, remove_stale_temporaries
from .pool import progress_bar, run_tasks
from .summary import WriteSummary
from .validate import (
    SEVERITIES,
    check_profile,
    check_quality,
    check_seed,
    check_size,
    requested_corruptions,
)


@dataclass(frozen=True)
class _FolderJob:
    src: Path
    dst: Path
    corruptions: tuple[str, ...]
    severities: tuple[int, ...]
    profile: str
    resize: int | None
    center_crop: int | None
    jpeg_quality: int | None
    seed: int
    skip_bad: bool


def _corrupt_file(job: _FolderJob, rel: PurePosixPath) -> tuple[int, int, str | None]:
    """Write all missing outputs of one source file; returns (written, skipped, bad-file message or None)."""
    from vqsa.corruptions import MIN_SIZE, corrupt

    out_rel = output_relpath(rel, job.jpeg_quality)
    todo = [
        (c, s, job.dst / c / str(s) / out_rel)
        for c in job.corruptions
        for s in job.severities
        if not output_complete(job.dst / c / str(s) / out_rel)
    ]
    skipped = len(job.corruptions) * len(job.severities) - len(todo)
    if not todo:
        return 0, skipped, None
    try:
        image = imagenet_c_preprocess(load_rgb(job.src / rel), job.resize, job.center_crop)
        if min(image.shape[:2]) < MIN_SIZE:
            raise BadImageError(
                f"image {os.fspath(job.src / rel)!r} is {image.shape[1]}x{image.shape[0]} after preprocessing; the "
                f"corruptions need at least {MIN_SIZE}x{MIN_SIZE} (use --resize/--center-crop)"
            )
    except BadImageError as e:
        if job.skip_bad:
            return 0, skipped, str(e)
        raise BadImageError(f"{e} (pass --skip-bad / skip_bad=True to skip such files)") from None
    for c, s, path in todo:
        try:
            out = corrupt(image, s, c, rng=derive_rng(job.seed, rel.as_posix(), c, s), profile=job.profile)
        except (ValueError, TypeError, RuntimeError) as e:
            raise RuntimeError(f"{os.fspath(job.src / rel)!r}: {c} severity {s} failed: {e}") from e
        atomic_write_bytes(path, encode_image(out, job.jpeg_quality))
    return len(todo), skipped, None


def corrupt_folder(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    corruptions: str | Sequence[str] = "common",
    severities: Sequence[int] = SEVERITIES,
    *,
    profile: str = "auto",
    resize: int | None = 256,
    center_crop: int | None = 224,
    jpeg_quality: int | None = None,
    jobs: int = 1,
    seed: int = 0,
    skip_bad: bool = False,
    progress: bool = True,
) -> WriteSummary:
    """Write ``dst/<corruption>/<severity>/<relative path>`` for every image under ``src`` (ImageNet-C layout).

    Each image is decoded once, preprocessed (``resize``/``center_crop``: ImageNet-C's Resize(256) +
    CenterCrop(224) by default; None skips a step) and corrupted at every requested corruption and severity.
    Outputs are PNG, or JPEG at ``jpeg_quality`` with ``optimize=True`` (85 = the released ImageNet-C files).

    Args:
        corruptions: names and/or subset names (see :func:`vqsa.corruptions.resolve_corruptions`).
        jobs: worker processes (1 = in this process). Results do not depend on it.
        skip_bad: skip unreadable/truncated source files (listed in the summary) instead of raising.
    """
    job = _FolderJob(
        src=Path(src),
        dst=Path(dst),
        corruptions=requested_corruptions(corruptions),
        severities=check_severities(severities),
        profile=check_profile(profile),
        resize=check_size("resize", resize),
        center_crop=check_size("center_crop", center_crop),
        jpeg_quality=check_quality(jpeg_quality),
        seed=check_seed(seed),
        skip_bad=bool(skip_bad),
    )
    files = list_images(job.src)
    _check_not_inside(job.dst, job.src)
    _check_unique_outputs(files, job.jpeg_quality)
    settings = {
        "profile": job.profile,
        "resize": job.resize,
        "center_crop": job.center_crop,
        "jpeg_quality": job.jpeg_quality,
        "seed": job.seed,
    }
    with folder_lock(job.dst):
        claim_destination(job.dst, "folder", settings, {"source": str(job.src.resolve())})
        start, stale = time.perf_counter(), remove_stale_temporaries(job.dst)
        written = skipped = 0
        bad: list[str] = []
        with progress_bar(len(files), "images", progress) as bar:
            for _, (w, s, b) in run_tasks(_corrupt_file, [(job, rel) for rel in files], jobs):
                written, skipped = written + w, skipped + s
                if b is not None:
                    bad.append(b)
                bar.update(1)
        return WriteSummary(written, skipped, tuple(bad), stale, time.perf_counter() - start, "files")


def _check_unique_outputs(files: Sequence[PurePosixPath], jpeg_quality: int | None) -> None:
    seen: dict[PurePosixPath, PurePosixPath] = {}
    for rel in files:
        out = output_relpath(rel, jpeg_quality)
        if out in seen:
            raise ValueError(f"source files {seen[out]} and {rel} would both be written as {out}; rename one")
        seen[out] = rel


def _check_not_inside(dst: Path, src: Path) -> None:
    d, s = dst.resolve(), src.resolve()
    if d == s or s in d.parents:
        raise ValueError(f"destination {str(dst)!r} must not be the source folder or inside it")
