"""Public entry points of the CPU corruption engine: input validation, profile/seed resolution and dispatch.

Every corruption function has the signature ``fn(x, severity, rng, profile) -> np.ndarray`` where ``x`` is a
C-contiguous uint8 (H, W, 3) array, ``severity`` is 1..5, ``rng`` a ``np.random.Generator`` and ``profile`` one of
``PROFILES``; it returns float values in [0, 255] (or uint8 where exact). ``corrupt`` applies the reference's final
step: clip to [0, 255] and a *truncating* uint8 cast (``np.uint8(float)``).
"""
from __future__ import annotations

import hashlib
import importlib
import numbers
from collections.abc import Callable, Sequence

import numpy as np

from ._params import AUTO_CIFAR_MAX, AUTO_TINY_MAX, CORRUPTIONS, PROFILES, SUBSETS

CorruptionFn = Callable[[np.ndarray, int, np.random.Generator, str], np.ndarray]

MIN_SIZE = 32
"""Smallest supported height and width (as imagecorruptions)."""

_MODULES: dict[str, str] = {
    "gaussian_noise": "noise", "shot_noise": "noise", "impulse_noise": "noise", "speckle_noise": "noise",
    "defocus_blur": "blur", "glass_blur": "blur", "zoom_blur": "blur", "gaussian_blur": "blur",
    "motion_blur": "motion", "snow": "weather", "frost": "weather", "fog": "weather", "spatter": "weather",
    "elastic_transform": "elastic",
    "brightness": "digital", "contrast": "digital", "pixelate": "digital", "jpeg_compression": "digital",
    "saturate": "digital",
}


def get_corruption_function(name: str) -> CorruptionFn:
    """The function implementing corruption ``name`` (imported on first use, so ``import vqsa`` stays light)."""
    if name not in _MODULES:
        raise ValueError(f"unknown corruption {name!r}; expected one of {list(CORRUPTIONS)}")
    return getattr(importlib.import_module(f"vqsa.corruptions.{_MODULES[name]}"), name)


def get_corruption_names(subset: str = "common") -> list[str]:
    """Corruption names of ``subset`` in ImageNet-C order, as ``imagecorruptions.get_corruption_names``.

    Subsets: common (15, used for mCE), validation (4 held-out), all (19), noise, blur, weather, digital.
    """
    if subset not in SUBSETS:
        raise ValueError(f"subset must be one of {list(SUBSETS)}, got {subset!r}")
    return list(SUBSETS[subset])


#: Other names of subsets: the paper's "known" / "unknown" corruptions, and "none" for clean training.
SUBSET_ALIASES: dict[str, tuple[str, ...]] = {"known": SUBSETS["common"], "unknown": SUBSETS["validation"],
                                              "none": ()}


def resolve_corruptions(spec: str | Sequence[str]) -> tuple[str, ...]:
    """Corruption names from a name, a subset (common / known, validation / unknown, all, noise, blur, weather,
    digital, none) or a sequence of both; the order follows the tokens, duplicates are dropped, ``[]`` and
    ``"none"`` give ``()``. An unknown token is a ValueError naming it."""
    tokens = [spec] if isinstance(spec, str) else list(spec)
    names: list[str] = []
    for token in tokens:
        if not isinstance(token, str):
            raise TypeError(f"corruption names must be strings, got {token!r}")
        found = (token,) if token in CORRUPTIONS else SUBSETS.get(token, SUBSET_ALIASES.get(token))
        if found is None:
            raise ValueError(f"unknown corruption or subset {token!r}; subsets: "
                             f"{', '.join([*SUBSETS, *SUBSET_ALIASES])}; names: {', '.join(CORRUPTIONS)}")
        names.extend(n for n in found if n not in names)
    return tuple(names)


def resolve_profile(profile: str, height: int, width: int) -> str:
    """Parameter table for an image: ``"auto"`` picks cifar if min(H, W) <= 40, tinyimagenet if <= 80, else imagenet."""
    if profile == "auto":
        side = min(height, width)
        return "cifar" if side <= AUTO_CIFAR_MAX else "tinyimagenet" if side <= AUTO_TINY_MAX else "imagenet"
    if profile not in PROFILES:
        raise ValueError(f"profile must be 'auto' or one of {list(PROFILES)}, got {profile!r}")
    return profile


def as_generator(rng: None | int | np.random.Generator) -> np.random.Generator:
    """``None`` -> fresh OS-seeded generator, int -> ``np.random.default_rng(seed)``, Generator -> itself."""
    if rng is None or isinstance(rng, np.random.Generator):
        return np.random.default_rng(rng)
    if isinstance(rng, numbers.Integral) and not isinstance(rng, bool):
        if rng < 0:
            raise ValueError(f"rng seed must be >= 0, got {rng}")
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng must be None, an int seed or a numpy.random.Generator, got {type(rng).__name__}")


def global_generator() -> np.random.Generator:
    """A generator seeded by one draw from numpy's global RNG: after ``np.random.seed(s)`` the same calls give the
    same corruptions, the only seeding imagecorruptions users have."""
    return np.random.default_rng(int(np.random.randint(0, 2**63 - 1, dtype=np.int64)))


def check_severity(severity: object) -> None:
    """Raise unless ``severity`` is an int in 1..5."""
    if not isinstance(severity, numbers.Integral) or isinstance(severity, bool):
        raise TypeError(f"severity must be an int in [1, 5], got {type(severity).__name__}")
    if not 1 <= severity <= 5:
        raise ValueError(f"severity must be in [1, 5], got {severity}")


def check_severities(severities: int | Sequence[int]) -> tuple[int, ...]:
    """Severities (an int is one) as a tuple in the given order, each checked by :func:`check_severity`; none or
    duplicates are refused."""
    sev = (severities,) if isinstance(severities, numbers.Integral) else tuple(severities)
    if not sev:
        raise ValueError("no severities requested")
    for s in sev:
        check_severity(s)
    if len(set(sev)) != len(sev):
        raise ValueError(f"duplicate severities in {list(sev)}")
    return tuple(int(s) for s in sev)


def derive_rng(seed: int, *key: object) -> np.random.Generator:
    """A generator that depends only on ``seed`` and ``key`` (stable across runs, processes and platforms).

    Every place that corrupts an item of a dataset seeds with ``derive_rng(seed, item_key, corruption, severity)``
    (item_key: the index for arrays, the relative path for folders), so ``vqsa corrupt`` files and on-the-fly
    evaluation sets with the same seed hold the same pixels whatever the worker count or order.
    """
    text = "\x1f".join(str(k) for k in (int(seed), *key))
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(int.from_bytes(digest[:16], "little"))))


def _as_rgb(image: np.ndarray) -> np.ndarray:
    """Validate ``image`` and return it as a C-contiguous uint8 (H, W, 3) array (grey is replicated)."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image must be a numpy.ndarray, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise TypeError(f"image dtype must be uint8, got {image.dtype}")
    if image.ndim not in (2, 3):
        raise ValueError(f"image must have shape (H, W), (H, W, 1) or (H, W, 3), got {image.shape}")
    if image.ndim == 3 and image.shape[2] not in (1, 3):
        raise ValueError(f"image must have 1 or 3 channels (last axis), got {image.shape[2]}")
    height, width = image.shape[:2]
    if height < MIN_SIZE or width < MIN_SIZE:
        raise ValueError(f"image height and width must be at least {MIN_SIZE} pixels, got {height}x{width}")
    if image.ndim == 2 or image.shape[2] == 1:
        image = np.repeat(image.reshape(height, width, 1), 3, axis=2)
    return np.ascontiguousarray(image)


def _resolve_name(corruption_name: str | None, corruption_number: int) -> str:
    if corruption_name is not None:
        if not isinstance(corruption_name, str) or corruption_name not in _MODULES:
            raise ValueError(f"unknown corruption_name {corruption_name!r}; expected one of {list(CORRUPTIONS)}")
        return corruption_name
    if not isinstance(corruption_number, numbers.Integral) or isinstance(corruption_number, bool):
        raise TypeError(f"corruption_number must be an int, got {type(corruption_number).__name__}")
    if corruption_number == -1:
        raise ValueError("either corruption_name or corruption_number must be given")
    if not 0 <= corruption_number < len(CORRUPTIONS):
        raise ValueError(f"corruption_number must be in [0, {len(CORRUPTIONS) - 1}], got {corruption_number}")
    return CORRUPTIONS[int(corruption_number)]


def corrupt(image: np.ndarray, severity: int = 1, corruption_name: str | None = None, corruption_number: int = -1,
            *, rng: None | int | np.random.Generator = None, profile: str = "auto") -> np.ndarray:
    """Corrupt one image; a drop-in for ``imagecorruptions.corrupt`` with seeding and per-dataset parameter tables.

    Args:
        image: uint8 array (H, W), (H, W, 1) or (H, W, 3) with H, W >= 32. Grey images are replicated to RGB,
            corrupted, and converted back to grey with ITU-R 601 luma (PIL's ``convert("L")``).
        severity: 1..5.
        corruption_name: one of ``get_corruption_names("all")``; takes precedence over ``corruption_number``.
        corruption_number: index 0..18 into that list (used when ``corruption_name`` is None).
        rng: None (a draw from numpy's global RNG, so ``np.random.seed`` makes calls reproducible, as in
            imagecorruptions), an int seed (same output on every call and platform) or a ``np.random.Generator``
            (advanced in place).
        profile: parameter table: "imagenet" (ImageNet-C, 224 px), "cifar" (CIFAR-10-C, 32 px), "tinyimagenet"
            (Tiny-ImageNet-C, 64 px) or "auto" (by min(H, W): <= 40 cifar, <= 80 tinyimagenet, else imagenet).

    Returns:
        A new uint8 array (C-contiguous, writable) of the input's shape: the corrupted image, clipped to [0, 255]
        and truncated like the reference. (imagecorruptions documents "same shape as input" but returns (H, W, 3)
        for grey input.)
    """
    name = _resolve_name(corruption_name, corruption_number)
    check_severity(severity)
    x = _as_rgb(image)
    resolved = resolve_profile(profile, x.shape[0], x.shape[1])
    generator = global_generator() if rng is None else as_generator(rng)
    out = get_corruption_function(name)(x, int(severity), generator, resolved)
    if out.dtype != np.uint8:
        out = np.clip(out, 0, 255).astype(np.uint8, order="C")
    if image.ndim == 3 and image.shape[2] == 3:  # a fresh, writable, C-contiguous array, ready for cv2 or torch
        return out if out.flags.c_contiguous and out.flags.writeable else out.copy(order="C")
    return _luma(out).reshape(image.shape)


def _luma(rgb: np.ndarray) -> np.ndarray:
    """ITU-R 601-2 luma of a uint8 RGB image, rounded as PIL's ``Image.convert("L")``."""
    weights = np.array([19595, 38470, 7471], dtype=np.uint32)  # 0.299, 0.587, 0.114 in 16-bit fixed point
    return ((rgb.astype(np.uint32) @ weights + 32768) >> 16).astype(np.uint8)
