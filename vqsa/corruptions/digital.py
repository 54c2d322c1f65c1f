"""Digital corruptions: brightness, contrast, pixelate, jpeg_compression, saturate (all deterministic).

brightness and saturate use scikit-image's HSV maths in float64 (``_color``), contrast the reference's per-channel
mean, pixelate PIL BOX down- and up-sampling, jpeg_compression a PIL JPEG round trip (libjpeg, 4:2:0).
"""
from __future__ import annotations

import io

import cv2
import numpy as np
from PIL import Image

from ._color import hsv2rgb, rgb2hsv
from ._params import get_params
from ._util import to_uint8


def brightness(x: np.ndarray, severity: int, rng: np.random.Generator, profile: str) -> np.ndarray:
    """Add ``c`` to the HSV value channel (clipped to 1); returns uint8."""
    c = get_params("brightness", severity, profile)
    h, s, v = rgb2hsv(x / 255.0)
    return to_uint8(hsv2rgb(h, s, np.clip(v + c, 0, 1)))


def saturate(x: np.ndarray, severity: int, rng: np.random.Generator, profile: str) -> np.ndarray:
    """Scale and offset the HSV saturation, ``S * c0 + c1`` clipped to [0, 1]; returns uint8."""
    scale, offset = get_params("saturate", severity, profile)
    h, s, v = rgb2hsv(x / 255.0)
    return to_uint8(hsv2rgb(h, np.clip(s * scale + offset, 0, 1), v))


def contrast(x: np.ndarray, severity: int, rng: np.random.Generator, profile: str) -> np.ndarray:
    """Pull each channel towards its spatial mean by factor ``c``; returns uint8.

    The reference's float64 maths is evaluated once per grey level and channel and applied as a lookup table; the
    channel means come from exact integer sums (the reference sums floats: equal up to ~1e-16).
    """
    c = get_params("contrast", severity, profile)
    means = np.array(cv2.sumElems(x)[:3]) / (255.0 * x.shape[0] * x.shape[1])
    levels = (np.arange(256) / 255.0)[:, None]
    table = (np.clip((levels - means) * c + means, 0, 1) * 255).astype(np.uint8)
    return cv2.LUT(x, table.reshape(256, 1, 3))


def pixelate(x: np.ndarray, severity: int, rng: np.random.Generator, profile: str) -> np.ndarray:
    """BOX down-sampling to ``int(side * c)`` per axis and BOX up-sampling back; returns uint8."""
    c = get_params("pixelate", severity, profile)
    height, width = x.shape[:2]
    small = Image.fromarray(x).resize((int(width * c), int(height * c)), Image.Resampling.BOX)
    return np.asarray(small.resize((width, height), Image.Resampling.BOX))


def jpeg_compression(x: np.ndarray, severity: int, rng: np.random.Generator, profile: str) -> np.ndarray:
    """Encode and decode as JPEG with PIL quality ``c`` (default 4:2:0 chroma subsampling); returns uint8."""
    quality = get_params("jpeg_compression", severity, profile)
    buffer = io.BytesIO()
    Image.fromarray(x).save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return np.asarray(decoded.convert("RGB"))
