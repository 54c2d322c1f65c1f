"""Write corrupted datasets to disk: ImageNet-C style folder trees and CIFAR-10-C style ``.npy`` files.

Both writers are deterministic per (item, corruption, severity) whatever the number of worker processes: the
random generator of every output is derived from ``(seed, item key, corruption, severity)`` with a stable hash,
never from the order in which work is done. Both are resumable: outputs that already exist are skipped, and every
file is written atomically, so an interrupted run leaves only complete files (plus, at worst, stale temporary
files that the next run removes). A ``vqsa_corrupt.json`` manifest in the destination records the settings; a run
with different settings into the same destination is refused instead of mixing two datasets.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import multiprocessing
import os
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Callable

import numpy as np
from PIL import Image

from vqsa.corruptions._api import derive_rng, resolve_corruptions
from vqsa.utils.io import (  # noqa: F401  (BadImageError: raised here, and importable from here)
    BadImageError,
    atomic_open,
    atomic_write_bytes,
    atomic_write_checked_json,
    read_checked_json,
)
from vqsa.utils.lock import LOCK_NAME, folder_lock
from vqsa.utils.paths import walk_tree

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
MANIFEST_NAME = "vqsa_corrupt.json"
PROFILES = ("auto", "imagenet", "cifar", "tinyimagenet")
SEVERITIES = (1, 2, 3, 4, 5)
_MANIFEST_FORMAT = "vqsa-corrupt/1"
_THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


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


# ----------------------------------------------------------------------------------------------------------------
# argument helpers


def requested_corruptions(spec: str | Sequence[str]) -> tuple[str, ...]:
    """:func:`vqsa.corruptions.resolve_corruptions`, refusing an empty request (a writer must write something)."""
    names = resolve_corruptions(spec)
    if not names:
        raise ValueError("no corruptions requested")
    return names


def check_severities(severities: Sequence[int]) -> tuple[int, ...]:
    """Validate severities (integers in 1..5, no duplicates); returns them as a tuple in the given order."""
    sev = tuple(severities)
    if not sev:
        raise ValueError("no severities requested")
    for s in sev:
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)):
            raise TypeError(f"severity must be an integer in 1..5, got {s!r}")
        if not 1 <= s <= 5:
            raise ValueError(f"severity must be in 1..5, got {s}")
    if len(set(sev)) != len(sev):
        raise ValueError(f"duplicate severities in {list(sev)}")
    return tuple(int(s) for s in sev)


def check_profile(profile: str) -> str:
    """Validate a corruption parameter profile name."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; expected one of {', '.join(PROFILES)}")
    return profile


def _check_size(name: str, value: int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
    return int(value)


# ----------------------------------------------------------------------------------------------------------------
# images


def load_rgb(path: str | os.PathLike) -> Image.Image:
    """Decode an image file fully and convert it to RGB (grey, RGBA, palette, CMYK, ...: like torchvision).

    Raises:
        BadImageError: the file is unreadable, truncated or not an image; the message names the file.
    """
    try:
        with Image.open(path) as im:
            im.load()  # decodes everything: a truncated file fails here, not later
            return im.convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise BadImageError(f"cannot read image {os.fspath(path)!r}: {e}") from e


def imagenet_c_preprocess(image: Image.Image, resize: int | None = 256, center_crop: int | None = 224) -> np.ndarray:
    """torchvision ``Resize(resize)`` (PIL bilinear, short side) then ``CenterCrop(center_crop)``, as uint8 HWC.

    Either step is skipped when its size is None. Matches torchvision pixel for pixel, including the zero padding
    of ``CenterCrop`` on images smaller than the crop.
    """
    if not isinstance(image, Image.Image):
        raise TypeError(f"image must be a PIL image, got {type(image).__name__}")
    resize, center_crop = _check_size("resize", resize), _check_size("center_crop", center_crop)
    image = image.convert("RGB")
    if resize is not None:
        w, h = image.size
        short, long = min(w, h), max(w, h)
        new_short, new_long = resize, int(resize * long / short)
        size = (new_short, new_long) if w <= h else (new_long, new_short)
        if size != (w, h):
            image = image.resize(size, Image.BILINEAR)
    arr = np.asarray(image, dtype=np.uint8)
    if center_crop is None:
        return np.ascontiguousarray(arr)
    h, w = arr.shape[:2]
    c = center_crop
    if c > h or c > w:  # zero padding, split as torchvision does (extra pixel on the right/bottom)
        top, left = max(c - h, 0) // 2, max(c - w, 0) // 2
        padded = np.zeros((max(h, c), max(w, c), 3), np.uint8)
        padded[top : top + h, left : left + w] = arr
        arr, (h, w) = padded, padded.shape[:2]
    top, left = int(round((h - c) / 2.0)), int(round((w - c) / 2.0))
    return np.ascontiguousarray(arr[top : top + c, left : left + c])


def encode_image(array: np.ndarray, jpeg_quality: int | None = None) -> bytes:
    """PNG (lossless) bytes, or JPEG bytes at ``jpeg_quality`` with ``optimize=True`` (as the ImageNet-C release).

    PNG uses zlib level 1: about 4x faster than Pillow's default level 6 for files only ~6 % larger (at 224 px the
    default level costs more than most corruptions).
    """
    buf = io.BytesIO()
    img = Image.fromarray(array)
    if jpeg_quality is None:
        img.save(buf, format="PNG", compress_level=1)
    else:
        img.save(buf, format="JPEG", quality=jpeg_quality, optimize=True)
    return buf.getvalue()


# ----------------------------------------------------------------------------------------------------------------
# folder trees


def list_images(src: str | os.PathLike) -> list[PurePosixPath]:
    """Image files under ``src`` as sorted relative POSIX paths (hidden files and folders are ignored).

    Works for an ImageFolder layout (``src/<class>/.../<file>``) and a flat folder alike.

    Raises:
        FileNotFoundError: ``src`` does not exist.  ValueError: ``src`` is not a folder or holds no images.
    """
    root = Path(src)
    if not root.exists():
        raise FileNotFoundError(f"source folder {str(root)!r} does not exist")
    if not root.is_dir():
        raise ValueError(f"source {str(root)!r} is not a folder (for a single image use --gallery)")
    found: list[PurePosixPath] = []
    for dirpath, _, filenames in walk_tree(root, skip_hidden=True):
        rel_dir = Path(dirpath).relative_to(root)
        found.extend(
            PurePosixPath(rel_dir.as_posix()) / f
            for f in filenames
            if not f.startswith(".") and f.lower().endswith(IMAGE_EXTENSIONS)
        )
    if not found:
        raise ValueError(f"no images in {str(root)!r} (looked for {', '.join(IMAGE_EXTENSIONS)}, any case)")
    return sorted(found)


def output_relpath(rel: PurePosixPath, jpeg_quality: int | None) -> PurePosixPath:
    """Output name of a source file: same stem, ``.png``; with JPEG output ``.jpg`` (a JPEG source keeps its suffix,
    e.g. ImageNet's ``.JPEG``, as in the released ImageNet-C)."""
    if jpeg_quality is None:
        return rel.with_suffix(".png")
    return rel if rel.suffix.lower() in (".jpg", ".jpeg") else rel.with_suffix(".jpg")


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


_PNG_END = b"IEND\xaeB`\x82"  # the last 8 bytes of every PNG file
_JPEG_END = b"\xff\xd9"


def _output_complete(path: Path) -> bool:
    """Whether an output file exists and ends as a complete PNG / JPEG does (a file truncated after it was written,
    by a full disk or a copy, is written again on rerun)."""
    try:
        with open(path, "rb") as f:
            f.seek(-8, os.SEEK_END)
            tail = f.read()
    except OSError:  # missing, or shorter than 8 bytes
        return False
    return tail.endswith(_JPEG_END if path.suffix.lower() in (".jpg", ".jpeg") else _PNG_END)


def _corrupt_file(job: _FolderJob, rel: PurePosixPath) -> tuple[int, int, str | None]:
    """Write all missing outputs of one source file; returns (written, skipped, bad-file message or None)."""
    from vqsa.corruptions import MIN_SIZE, corrupt

    out_rel = output_relpath(rel, job.jpeg_quality)
    todo = [
        (c, s, job.dst / c / str(s) / out_rel)
        for c in job.corruptions
        for s in job.severities
        if not _output_complete(job.dst / c / str(s) / out_rel)
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
        resize=_check_size("resize", resize),
        center_crop=_check_size("center_crop", center_crop),
        jpeg_quality=_check_quality(jpeg_quality),
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
        _claim_destination(job.dst, "folder", settings, {"source": str(job.src.resolve())})
        start, stale = time.perf_counter(), _remove_stale_temporaries(job.dst)
        written = skipped = 0
        bad: list[str] = []
        with _progress_bar(len(files), "images", progress) as bar:
            for _, (w, s, b) in _run_tasks(_corrupt_file, [(job, rel) for rel in files], jobs):
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


# ----------------------------------------------------------------------------------------------------------------
# CIFAR-10-C style arrays


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
        _claim_destination(dst, "arrays", settings, info or {})
        start, stale = time.perf_counter(), _remove_stale_temporaries(dst)
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
        with _progress_bar(len(todo) * len(images), "images", progress) as bar:
            for i, result in _run_tasks(_corrupt_chunk, tasks, jobs):
                name, k = meta[i]
                parts[name][k] = result
                bar.update(result.shape[1])
                if all(p is not None for p in parts[name]):
                    _save_npy(dst / f"{name}.npy", np.concatenate(parts.pop(name), axis=1).reshape(shape))
        return WriteSummary(len(todo), skipped, (), stale, time.perf_counter() - start, "arrays")


def __getattr__(name: str) -> Any:
    if name == "corrupt_cifar10":  # moved to the data layer, which loads CIFAR-10
        import warnings

        warnings.warn("vqsa.corruptions.dataset_writer.corrupt_cifar10 moved to vqsa.data.corrupt_cifar10",
                      DeprecationWarning, stacklevel=2)
        from vqsa.data.cifar10_c import corrupt_cifar10

        return corrupt_cifar10
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ----------------------------------------------------------------------------------------------------------------
# shared plumbing


def _check_quality(q: int | None) -> int | None:
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


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The manifest ``vqsa corrupt`` wrote into ``folder``: None when there is none (or it is not a JSON object);
    ValueError when it cannot be read or parsed."""
    path = folder / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        manifest = read_checked_json(path)  # a damaged one raises, naming itself
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: unreadable manifest ({e})") from e
    return manifest if isinstance(manifest, dict) else None


def _claim_destination(dst: Path, kind: str, settings: dict[str, Any], info: dict[str, Any]) -> None:
    """Create ``dst`` with a manifest, or check that an existing manifest has the same settings."""
    manifest = dst / MANIFEST_NAME
    settings = json.loads(json.dumps(settings))
    if manifest.is_file():
        try:
            old = read_manifest(dst)
            if old is None:
                raise ValueError(f"{manifest}: unreadable manifest (not a JSON object)")
        except ValueError as e:
            raise ValueError(f"{e}; delete it only if {dst} is yours") from e
        if old.get("kind") != kind:
            raise ValueError(f"{dst} holds a {old.get('kind')!r} dataset, not a {kind!r} one; choose another folder")
        if kind == "folder" and old.get("source", info["source"]) != info["source"]:  # both resolved paths
            raise ValueError(f"{dst} was written from {old['source']}, not {info['source']}: its finished files would "
                             "be kept as they are; use that source or a new folder")
        old_settings = old.get("settings", {})
        diff = sorted(k for k in settings.keys() | old_settings.keys() if settings.get(k) != old_settings.get(k))
        if diff:
            raise ValueError(f"{dst} was written with other settings ({_describe_diff(diff, old_settings, settings)});"
                             " use the same options or a new folder")
        return
    if dst.exists() and not dst.is_dir():
        raise ValueError(f"destination {str(dst)!r} exists and is not a folder")
    if dst.is_dir() and any(p.name != LOCK_NAME for p in dst.iterdir()):
        raise ValueError(f"destination {str(dst)!r} is not empty and has no {MANIFEST_NAME}; choose a new folder")
    from vqsa.utils.meta import versions

    atomic_write_checked_json(
        manifest,
        {"format": _MANIFEST_FORMAT, "kind": kind, "settings": settings, **info, "versions": versions()},
    )


_SETTING_NAMES = {"n": "number of images n (--limit)"}


def _describe_diff(keys: list[str], old: dict[str, Any], new: dict[str, Any]) -> str:
    """The differing manifest settings in words; the sha256 of the per-image keys only as "other images"."""
    parts = [f"{_SETTING_NAMES.get(k, k)}: {old.get(k)!r} there vs {new.get(k)!r} now" for k in keys
             if k != "keys_sha256"]
    if "keys_sha256" in keys:
        parts.append("a different selection of source images (another --limit or --seed draws other test images)"
                     if "n" in keys or "seed" in keys or not parts else "a different selection of source images")
    return "; ".join(parts)


def _remove_stale_temporaries(dst: Path) -> int:
    """Delete temporary files left by an interrupted atomic write (``.<name>.<random>.tmp``) under ``dst``."""
    removed = 0
    for dirpath, _, filenames in os.walk(dst):
        for f in filenames:
            if f.startswith(".") and f.endswith(".tmp"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(dirpath, f))
                    removed += 1
    return removed


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


@contextlib.contextmanager
def _progress_bar(total: int, unit: str, enabled: bool) -> Iterator[Any]:
    from tqdm.auto import tqdm

    with tqdm(total=total, unit=unit, disable=not enabled, dynamic_ncols=True, smoothing=0.05) as bar:
        yield bar


@contextlib.contextmanager
def _single_threaded_children() -> Iterator[None]:
    """Child processes started inside this block use one thread each for OpenMP/BLAS/numba (unless set)."""
    added = [k for k in _THREAD_ENV if k not in os.environ]
    os.environ.update({k: "1" for k in added})
    try:
        yield
    finally:
        for k in added:
            os.environ.pop(k, None)


def _init_worker(parent: int) -> None:
    import signal

    import cv2

    cv2.setNumThreads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is handled by the parent, which cancels the queue
    _exit_with_parent(parent)


def _exit_with_parent(parent: int) -> None:
    """Have the kernel kill this worker when the process that started it dies (Linux ``PR_SET_PDEATHSIG``), so a
    killed ``vqsa corrupt`` leaves no workers behind; elsewhere a watcher thread polls the parent."""
    import signal
    import threading

    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(1, signal.SIGKILL, 0, 0, 0) == 0:  # 1 = PR_SET_PDEATHSIG
            if os.getppid() != parent:  # the parent died before the call
                os._exit(1)
            return
    except (OSError, AttributeError):
        pass

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _run_tasks(fn: Callable[..., Any], tasks: Sequence[tuple], jobs: int) -> Iterator[tuple[int, Any]]:
    """Yield ``(task index, fn(*task))`` in completion order, in this process (jobs=1) or in ``jobs`` processes.

    Worker processes are started with ``spawn`` (safe after threads, same on every OS), one thread each. The first
    exception cancels what is still queued and propagates.
    """
    if isinstance(jobs, bool) or not isinstance(jobs, (int, np.integer)) or jobs < 1:
        raise ValueError(f"jobs must be a positive integer, got {jobs!r}")
    if jobs == 1 or len(tasks) <= 1:
        for i, task in enumerate(tasks):
            yield i, fn(*task)
        return
    with _single_threaded_children():
        executor: Executor = ProcessPoolExecutor(
            max_workers=min(jobs, len(tasks)), mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker, initargs=(os.getpid(),),
        )
        try:
            futures: dict[Future, int] = {executor.submit(fn, *task): i for i, task in enumerate(tasks)}
            for fut in as_completed(futures):
                yield futures[fut], fut.result()
        finally:
            executor.shutdown(wait=True, cancel_futures=True)
