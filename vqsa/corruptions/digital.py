"""Digital corruptions: brightness, contrast, pixelate, jpeg_compression, saturate (all deterministic).

brightness and saturate use scikit-image's HSV maths in float64 (with the hue unchanged, applied as a per-channel
rescaling: ``_hsv_weights``), contrast the reference's per-channel mean, pixelate PIL BOX down- and up-sampling,
jpeg_compression a PIL JPEG round trip (libjpeg, 4:2:0).
"""
from __future__ import annotations

import io

import cv2
import numpy as np
from PIL import Image

from ._params import get_params
from ._util import to_uint8


def _hsv_weights(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """skimage's S and V of uint8 RGB ``x`` and each channel's position ``w`` between V (0) and the minimum (1).

    skimage's ``hsv2rgb`` returns, per channel, one of ``v``, ``p = v (1 - s)``, ``q = v (1 - f s)``,
    ``t = v (1 - (1 - f) s)``; with H unchanged this is ``v' (1 - s' w)`` where ``w = (V - channel) / (V - min)``
    is exactly 0 for the maximum and 1 for the minimum channel (so those equal skimage's ``v`` and ``p``
    bit-for-bit) and ``f`` or ``1 - f`` for the middle one (equal up to float64 rounding of the hue round trip).
    Grey pixels (H = 0, sector 0) get ``w = (0, 1, 1)``, as skimage's (v, t, p) with f = 0. Returns
    (s (N,), v (N,), w (3, N)) in float64.
    """
    rgb = np.empty((3, x.shape[0] * x.shape[1]))  # channel planes: broadcasts over long rows
    np.divide(x.reshape(-1, 3).T, 255.0, out=rgb)
    r, g, b = rgb
    v = np.maximum(np.maximum(r, g), b)
    delta = v - np.minimum(np.minimum(r, g), b)
    grey = (delta == 0).astype(np.float64)
    s = delta / (v + grey)  # 0 where grey, delta / v elsewhere (adding 0.0 is exact)
    delta += grey
    w = np.subtract(v, rgb)
    w[1:] += grey
    w /= delta
    return s, v, w


def _hsv_apply(shape: tuple[int, ...], w: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``uint8(clip(v (1 - s w), 0, 1) * 255)`` per channel (the reference's output step), reshaped to ``shape``."""
    w *= s
    np.subtract(1.0, w, out=w)
    w *= v
    return np.ascontiguousarray(to_uint8(w).T).reshape(shape)


def brightness(x: np.ndarray, severity: int, rng: np.random.Generator, profile: str) -> np.ndarray:
    """Add ``c`` to the HSV value channel (clipped to 1); returns uint8."""
    c = get_params("brightness", severity, profile)
    s, v, w = _hsv_weights(x)
    return _hsv_apply(x.shape, w, s, np.clip(v + c, 0, 1, out=v))


def saturate(x: np.ndarray, severity: int, rng: np.random.Generator, profile: str) -> np.ndarray:
    """Scale and offset the HSV saturation, ``S * c0 + c1`` clipped to [0, 1]; returns uint8."""
    scale, offset = get_params("saturate", severity, profile)
    s, v, w = _hsv_weights(x)
    s *= scale
    s += offset
    return _hsv_apply(x.shape, w, np.clip(s, 0, 1, out=s), v)


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
