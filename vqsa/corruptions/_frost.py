"""The ImageNet-C frost textures: locating, verifying, decoding and caching them (no copies ship with vqsa).

Lookup order: ``set_frost_dir(path)``, then ``$VQSA_FROST_DIR``, then the ``imagecorruptions/frost/`` folder of an
installed ``imagecorruptions-imaug`` or ``imagecorruptions`` wheel (found through ``importlib.metadata`` without
importing that package, whose import breaks on new setuptools). Only frost1-5 are used, as in the reference
(``randint(5)``; frost6 ships but is never drawn). Each file is read, md5-checked and decoded once per process.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import math
import os
import warnings
from pathlib import Path

import cv2
import numpy as np

FROST_FILES: tuple[str, ...] = ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg")
FROST_MD5: dict[str, str] = {
    "frost1.png": "6ead634ace1f366d77e87078b465863c",
    "frost2.png": "98f0d2b1d74a048d3bc9c7ecfd886939",
    "frost3.png": "b3ed8eb147824261888e730f916c0d8b",
    "frost4.jpg": "d70b9d6aa0b1fe7bd8133b113787e078",
    "frost5.jpg": "50984ae2c871b7df2c28f1d71ca460a0",
}
"""md5 of the original ImageNet-C textures (identical in hendrycks/robustness and the imagecorruptions wheels)."""
ENV_VAR = "VQSA_FROST_DIR"
DISTRIBUTIONS: tuple[str, ...] = ("imagecorruptions-imaug", "imagecorruptions")

_user_dir: Path | None = None


def set_frost_dir(path: str | os.PathLike | None) -> None:
    """Use the frost textures in folder ``path`` (takes precedence over ``$VQSA_FROST_DIR``); None resets."""
    global _user_dir
    if path is not None and not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"frost_dir must be a path or None, got {type(path).__name__}")
    _user_dir = None if path is None else Path(path)


@functools.lru_cache(maxsize=1)
def installed_frost_dir() -> Path | None:
    """The ``imagecorruptions/frost`` folder of an installed imagecorruptions(-imaug) wheel, or None."""
    for dist_name in DISTRIBUTIONS:
        try:
            dist = importlib.metadata.distribution(dist_name)
        except importlib.metadata.PackageNotFoundError:
            continue
        for entry in dist.files or ():
            if entry.parts[-3:] == ("imagecorruptions", "frost", FROST_FILES[0]):
                folder = Path(dist.locate_file(entry)).parent
                if all((folder / name).is_file() for name in FROST_FILES):
                    return folder
    return None


def _missing(folder: Path) -> list[str]:
    return [name for name in FROST_FILES if not (folder / name).is_file()]


def frost_dir() -> Path:
    """The folder the frost textures are read from (see the module docstring for the lookup order).

    Raises:
        FileNotFoundError: no folder holds frost1.png ... frost5.jpg; the message lists the ways to provide them.
    """
    how = (f"install them with `pip install \"vqsa[frost]\"` (the imagecorruptions-imaug wheel ships them), set "
           f"${ENV_VAR} to a folder holding them, or call vqsa.corruptions.set_frost_dir(path)")
    for source, folder in (("set_frost_dir()", _user_dir), (f"${ENV_VAR}", os.environ.get(ENV_VAR) or None)):
        if folder is not None:
            folder = Path(folder)
            missing = _missing(folder)
            if missing:
                raise FileNotFoundError(f"frost textures {missing} not found in {str(folder)!r} (from {source}); {how}")
            return folder
    folder = installed_frost_dir()
    if folder is None:
        raise FileNotFoundError(f"frost textures ({', '.join(FROST_FILES)}) not found; {how}")
    return folder


@functools.lru_cache(maxsize=len(FROST_FILES) * 2)
def _original(folder: Path, index: int) -> np.ndarray:
    """Texture ``index`` of ``folder``, md5-checked (a mismatch warns), as read-only RGB uint8."""
    name = FROST_FILES[index]
    data = (folder / name).read_bytes()
    digest = hashlib.md5(data).hexdigest()
    if digest != FROST_MD5[name]:
        warnings.warn(f"frost texture {folder / name} has md5 {digest}, expected {FROST_MD5[name]} (the ImageNet-C "
                      "file); frost results will not match ImageNet-C", RuntimeWarning, stacklevel=2)
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"cannot decode frost texture {folder / name}")
    rgb = np.ascontiguousarray(bgr[..., ::-1])
    rgb.flags.writeable = False
    return rgb


@functools.lru_cache(maxsize=len(FROST_FILES) * 3)
def _decoded(folder: Path, index: int, scale: float) -> np.ndarray:
    """Texture ``index`` resized by ``scale`` with cv2 INTER_LINEAR (``fx = fy = scale``, as the reference)."""
    tex = _original(folder, index)
    if scale == 1:
        return tex
    out = cv2.resize(tex, (0, 0), fx=scale, fy=scale)
    out.flags.writeable = False
    return out


@functools.lru_cache(maxsize=16)
def _enlarged(folder: Path, index: int, scale: float, min_h: int, min_w: int) -> np.ndarray:
    tex = _decoded(folder, index, scale)
    factor = max(min_h / tex.shape[0], min_w / tex.shape[1])
    size = (max(min_w, math.ceil(tex.shape[1] * factor)), max(min_h, math.ceil(tex.shape[0] * factor)))
    out = cv2.resize(tex, size, interpolation=cv2.INTER_CUBIC)
    out.flags.writeable = False
    return out


def frost_texture(index: int, scale: float, height: int, width: int) -> np.ndarray:
    """Read-only RGB uint8 texture ``index`` (0..4) scaled by ``scale``, large enough for a ``height x width`` crop.

    The reference draws the crop corner with ``randint(0, side - size)`` (exclusive), so the texture must exceed the
    image by at least one pixel on both axes. Textures that are too small are enlarged minimally (keeping the aspect
    ratio, bicubic) to ``>= (height + 1, width + 1)``; at the reference sizes this never happens.
    """
    if not 0 <= index < len(FROST_FILES):
        raise ValueError(f"frost texture index must be in [0, {len(FROST_FILES) - 1}], got {index}")
    folder = frost_dir()
    tex = _decoded(folder, index, float(scale))
    if tex.shape[0] > height and tex.shape[1] > width:
        return tex
    return _enlarged(folder, index, float(scale), height + 1, width + 1)
