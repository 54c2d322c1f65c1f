"""ImageNet-C elastic transform (hendrycks/robustness ``make_*_c.py``; NOT imagecorruptions' variant).

Reference algorithm, random draws in this order:

1. random affine: three control points around the centre (half-side ``min(H, W) // 3``) each moved by
   ``U(-c2, c2)`` (x and y), ``cv2.getAffineTransform`` + ``cv2.warpAffine`` (bilinear, ``BORDER_REFLECT_101``);
2. displacement fields ``dx``, ``dy``: ``U(-1, 1)`` per pixel (dx first), Gaussian-smoothed (sigma ``c1``, scipy
   ``'reflect'``, truncate 3) and scaled by ``c0``, cast to float32;
3. bilinear resampling at ``(row + dy, col + dx)`` with half-sample-symmetric (``'reflect'``) borders.

The parameters keep the reference's "244 * k" typo (ImageNet table) exactly. Large sigmas (ImageNet severity 1:
170.8 px, a 1025-tap kernel) are applied as a cached dense matrix per axis, which equals scipy's filter with its
reflect border but costs two small matrix products instead of ~100 ms of direct convolution.
"""
from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter1d

from ._params import get_params
from ._util import gaussian

_TRUNCATE = 3.0
_DIRECT_MAX_TAPS = 64
"""Kernels with at most this many taps are applied directly (scipy); longer ones as a dense per-axis matrix."""


@lru_cache(maxsize=16)
def _reflect_gaussian_matrix(n: int, sigma: float) -> np.ndarray:
    """The (n, n) matrix ``A`` with ``A @ v == gaussian_filter1d(v, sigma, mode='reflect', truncate=3)``."""
    a = gaussian_filter1d(np.eye(n), sigma, axis=0, mode="reflect", truncate=_TRUNCATE)
    a.flags.writeable = False
    return a


def smooth_fields(fields: np.ndarray, sigma: float) -> np.ndarray:
    """skimage ``gaussian(f, sigma, mode='reflect', truncate=3)`` of each 2-D float64 field in ``fields`` (H, W, K).

    Short kernels use the shared separable filter; kernels longer than ``_DIRECT_MAX_TAPS`` or than the image apply
    a cached dense matrix per axis (the same linear operator as scipy's filter with its repeated reflections).
    """
    h, w = fields.shape[:2]
    radius = int(_TRUNCATE * sigma + 0.5)
    if 2 * radius + 1 <= _DIRECT_MAX_TAPS:
        return gaussian(fields, sigma, mode="reflect", truncate=_TRUNCATE)
    rows = _reflect_gaussian_matrix(h, float(sigma))
    cols = _reflect_gaussian_matrix(w, float(sigma))
    return np.einsum("ij,jlk,ml->imk", rows, fields, cols, optimize=True)


def random_affine(image: np.ndarray, max_shift: float, rng: np.random.Generator) -> np.ndarray:
    """Step 1: warp ``image`` (float32, H x W x C) by the reference's random three-point affine."""
    h, w = image.shape[:2]
    # The reference writes centre = (H // 2, W // 2) as cv2 (x, y); the same for its square images. For non-square
    # images the points are placed around the true centre (x = W // 2, y = H // 2).
    centre = np.float32((w, h)) // 2
    half = min(h, w) // 3
    pts1 = np.float32([centre + half, [centre[0] + half, centre[1] - half], centre - half])
    pts2 = pts1 + rng.uniform(-max_shift, max_shift, size=pts1.shape).astype(np.float32)
    matrix = cv2.getAffineTransform(pts1, pts2)
    return cv2.warpAffine(image, matrix, (w, h), borderMode=cv2.BORDER_REFLECT_101)


def _reflect_index(i: np.ndarray, n: int) -> np.ndarray:
    """Half-sample-symmetric index map (scipy 'reflect': ``d c b a | a b c d | d c b a``), in place when possible."""
    if i.min() >= -1 and i.max() <= n:  # at most one sample outside: reflecting equals clamping
        return np.clip(i, 0, n - 1, out=i)
    i = np.mod(i, 2 * n)
    return np.where(i >= n, 2 * n - 1 - i, i)


def bilinear_reflect(image: np.ndarray, rows: np.ndarray, cols: np.ndarray, block: int = 32) -> np.ndarray:
    """``scipy.ndimage.map_coordinates(image[..., c], (rows, cols), order=1, mode='reflect')`` for every channel.

    ``image``: (H, W, C) float32; ``rows``/``cols``: (H', W') float64 sample positions. Returns float32 (H', W', C),
    bit-identical to scipy (same float64 products and summation order). Works on blocks of ``block`` output rows so
    the temporaries stay in cache.
    """
    h, w, ch = image.shape
    planes = np.ascontiguousarray(image.transpose(2, 0, 1)).reshape(ch, -1)
    out = np.empty((ch,) + rows.shape, np.float32)
    for start in range(0, rows.shape[0], block):
        r, c = rows[start:start + block], cols[start:start + block]
        r0, c0 = np.floor(r), np.floor(c)
        fr, fc = (r - r0).ravel(), (c - c0).ravel()
        gr, gc = 1 - fr, 1 - fc
        r0, c0 = r0.astype(np.intp).ravel(), c0.astype(np.intp).ravel()
        ra, rb = _reflect_index(r0 + 0, h) * w, _reflect_index(r0 + 1, h) * w
        ca, cb = _reflect_index(c0 + 0, w), _reflect_index(c0 + 1, w)
        acc = planes.take(ra + ca, axis=1) * (gr * gc)
        acc += planes.take(ra + cb, axis=1) * (gr * fc)
        acc += planes.take(rb + ca, axis=1) * (fr * gc)
        acc += planes.take(rb + cb, axis=1) * (fr * fc)
        out[:, start:start + block] = acc.reshape((ch,) + r.shape)
    return out.transpose(1, 2, 0)


def elastic_transform(x: np.ndarray, severity: int, rng: np.random.Generator, profile: str) -> np.ndarray:
    """ImageNet-C elastic transform (random affine + smoothed displacement field); float in [0, 255]."""
    alpha, sigma, max_shift = get_params("elastic_transform", severity, profile)
    h, w = x.shape[:2]
    image = random_affine(x.astype(np.float32) / 255.0, max_shift, rng)
    noise = np.stack([rng.uniform(-1, 1, size=(h, w)), rng.uniform(-1, 1, size=(h, w))], axis=-1)  # dx, then dy
    field = (smooth_fields(noise, sigma) * alpha).astype(np.float32)
    dx, dy = field[..., 0], field[..., 1]
    rows = np.arange(h)[:, None] + dy  # int64 + float32 -> float64 sample positions, as in the reference
    cols = np.arange(w)[None, :] + dx
    out = bilinear_reflect(image, rows, cols)
    np.clip(out, 0, 1, out=out)
    out *= 255
    return out
