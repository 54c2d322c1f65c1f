"""RGB <-> HSV in float64 with scikit-image's exact conventions, vectorised without boolean-mask scatter.

Same formulas and operation order as ``skimage.color.rgb2hsv`` / ``hsv2rgb`` (so results agree bit-for-bit):
V = max, S = (max - min) / V (0 where max == min), H in [0, 1) with ties resolved blue > green > red, H = 0 where
max == min.
"""
from __future__ import annotations

import numpy as np

# hsv2rgb picks (R, G, B) from the planes [v, t, p, q] by sector floor(6 H) mod 6.
_SECTOR_SOURCES = np.array([[0, 1, 2], [3, 0, 2], [2, 0, 1], [2, 3, 0], [1, 2, 0], [0, 2, 3]], dtype=np.intp)


def rgb2hsv(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Float RGB in [0, 1] of shape (..., 3) -> (H, S, V), each a contiguous array of shape (...)."""
    r, g, b = (np.ascontiguousarray(rgb[..., k]) for k in range(3))
    v = np.maximum(np.maximum(r, g), b)
    delta = v - np.minimum(np.minimum(r, g), b)
    grey = delta == 0
    safe_delta = np.where(grey, 1.0, delta)
    s = delta / np.where(grey, 1.0, v)
    h = np.where(g == v, 2.0 + (b - r) / safe_delta, (g - b) / safe_delta)
    h = np.where(b == v, 4.0 + (r - g) / safe_delta, h)
    h = (h / 6.0) % 1.0
    h[grey] = 0.0
    return h, s, v


def hsv2rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """(H, S, V) arrays of equal shape (...) -> float RGB of shape (..., 3)."""
    h6 = h * 6
    hi = np.floor(h6)
    f = np.subtract(h6, hi, out=h6)
    n = h.size
    planes = np.empty(4 * n)  # [v, t, p, q] back to back, gathered by sector below
    v_, t, p, q = (planes[k * n:(k + 1) * n].reshape(h.shape) for k in range(4))
    v_[...] = v
    np.multiply(v, 1 - f * s, out=q)
    np.multiply(v, 1 - (1 - f) * s, out=t)
    np.multiply(v, 1 - s, out=p)
    sector = hi.astype(np.intp).ravel() % 6
    base = np.arange(n)
    out = np.empty(h.shape + (3,))
    for c in range(3):  # one gather per output channel
        idx = _SECTOR_SOURCES[:, c][sector]
        idx *= n
        idx += base
        out[..., c] = planes[idx].reshape(h.shape)
    return out
