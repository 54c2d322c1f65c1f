"""Motion blur with ImageMagick semantics (``MagickMotionBlurImage``), without Wand or ImageMagick.

The reference (hendrycks/robustness ``make_imagenet_c.py``) blurs through Wand: PNG -> ImageMagick 6 -> PNG. The
kernel is a one-sided Gaussian trail of ``2 * ceil(radius) + 1`` taps with weights ``exp(-i^2 / (2 sigma^2))``
(normalised); tap ``i`` reads the pixel at ``(dx, dy) = (ceil(i cos a - 1/2), ceil(i sin a - 1/2))`` (x = column,
y = row), edge-replicated outside the image. ImageMagick Q16 rounds the weighted sum to a 16-bit quantum and the 8-bit
PNG then keeps the floor, i.e. the 8-bit value is ``floor(s + 0.5 / 257)``; this matches ImageMagick 6.9.11-60 Q16 on
all but ~1e-5 of the values (plain ``floor``, as in imagecorruptions, differs on 0.2-0.3 %).
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from ._params import get_params

HALF_Q16 = 0.5 / 257.0
"""Half a 16-bit quantum in 8-bit grey levels: ImageMagick Q16 rounds to it before the 8-bit truncation."""


def motion_kernel(radius: float, sigma: float, angle: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ImageMagick's motion-blur taps: ``(weights, dy, dx)``, one entry per tap (weights sum to 1).

    ``angle`` is in degrees (0 = trail to the right, 90 = trail downwards); offsets are integers in pixels.
    """
    if not (math.isfinite(radius) and radius >= 0):
        raise ValueError(f"motion blur radius must be a finite number >= 0, got {radius!r}")
    if not (math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"motion blur sigma must be a finite number > 0, got {sigma!r}")
    if not math.isfinite(angle):
        raise ValueError(f"motion blur angle must be finite, got {angle!r}")
    width = 2 * math.ceil(radius) + 1
    i = np.arange(width, dtype=np.float64)
    weights = np.exp(-(i**2) / (2.0 * sigma**2))
    weights /= weights.sum()
    # Same float expression as ImageMagick: i * (width*cos a) / hypot(width*sin a, width*cos a).
    py, px = width * math.sin(math.radians(angle)), width * math.cos(math.radians(angle))
    hyp = math.hypot(py, px)
    dy = np.ceil(i * py / hyp - 0.5).astype(np.intp)
    dx = np.ceil(i * px / hyp - 0.5).astype(np.intp)
    return weights, dy, dx


def magick_motion_blur(x: np.ndarray, radius: float, sigma: float, angle: float) -> np.ndarray:
    """Motion-blur an 8-bit image (H, W) or (H, W, C) like ImageMagick 6 Q16 + 8-bit PNG; returns uint8, same shape.

    Vectorised as a weighted sum of shifted copies of an edge-replicated padding (one ``cv2.scaleAdd`` per tap).
    """
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim not in (2, 3):
        raise TypeError(f"expected a uint8 array of shape (H, W) or (H, W, C), got {getattr(x, 'dtype', type(x))} "
                        f"{getattr(x, 'shape', '')}")
    weights, dy, dx = motion_kernel(radius, sigma, angle)
    h, w = x.shape[:2]
    top, bottom = max(0, -int(dy.min())), max(0, int(dy.max()))
    left, right = max(0, -int(dx.min())), max(0, int(dx.max()))
    padded = cv2.copyMakeBorder(np.ascontiguousarray(x), top, bottom, left, right, cv2.BORDER_REPLICATE)
    padded = padded.reshape(padded.shape[0], padded.shape[1], -1).astype(np.float32)
    out = np.zeros((h, w, padded.shape[2]), np.float32)
    for wt, oy, ox in zip(weights.tolist(), dy.tolist(), dx.tolist()):
        cv2.scaleAdd(padded[top + oy:top + oy + h, left + ox:left + ox + w], wt, out, dst=out)
    out += HALF_Q16
    np.clip(out, 0, 255, out=out)
    return out.astype(np.uint8).reshape(x.shape)


def motion_blur(x: np.ndarray, severity: int, rng: np.random.Generator, profile: str) -> np.ndarray:
    """ImageNet-C motion blur: ImageMagick motion blur with ``angle ~ U(-45, 45)`` (one draw); exact uint8 result."""
    radius, sigma = get_params("motion_blur", severity, profile)
    return magick_motion_blur(x, radius, sigma, float(rng.uniform(-45, 45)))
