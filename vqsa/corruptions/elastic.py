"""ImageNet-C elastic transform (hendrycks/robustness ``make_*_c.py``; NOT imagecorruptions' variant).

Reference algorithm, random draws in this order:

1. random affine: three control points around the centre (half-side ``min(H, W) // 3``) each moved by
   ``U(-c2, c2)`` (x and y), ``cv2.getAffineTransform`` + ``cv2.warpAffine`` (bilinear, ``BORDER_REFLECT_101``);
2. displacement fields ``dx``, ``dy``: ``U(-1, 1)`` per pixel (dx first), Gaussian-smoothed (sigma ``c1``, scipy
   ``'reflect'``, truncate 3) and scaled by ``c0``, cast to float32;
3. bilinear resampling at ``(row + dy, col + dx)`` with half-sample-symmetric (``'reflect'``) borders.

The parameters keep the reference's "244 * k" typo (ImageNet table) exactly. Large sigmas (ImageNet severity 1:
170.8 px, a 1025-tap kernel) are applied by FFT on the periodic reflect extension (see ``smooth_field``).
"""
from __future__ import annotations

import cv2
import numpy as np
from scipy import fft as sp_fft

from ._params import get_params
from ._util import gaussian

_TRUNCATE = 3.0
_DIRECT_MAX_TAPS = 64
"""Kernels with at most this many taps are applied directly; longer ones by FFT on the reflect extension."""


def _wrapped_spectrum(n: int, sigma: float) -> np.ndarray:
    """rfft of scipy's Gaussian kernel (truncate 3) folded onto the period ``2 n`` of the reflect extension."""
    radius = int(_TRUNCATE * sigma + 0.5)
    taps = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 / (sigma * sigma) * taps.astype(np.float64) ** 2)
    folded = np.bincount(taps % (2 * n), weights=kernel / kernel.sum(), minlength=2 * n)
    return sp_fft.rfft(folded)


def smooth_field(field: np.ndarray, sigma: float) -> np.ndarray:
    """skimage ``gaussian(field, sigma, mode='reflect', truncate=3)`` of a 2-D float64 field, for any sigma.

    Short kernels use the shared separable filter. Longer ones (ImageNet severity 1: sigma 170.8 px, 1025 taps, far
    longer than the image) use that the half-sample-symmetric extension is periodic with period 2 n: per axis, a
    circular convolution of ``[v, v[::-1]]`` with the kernel folded modulo 2 n, done by FFT (the same linear
    operator as scipy's direct filter, ~100x faster at 224 px; single-threaded).
    """
    h, w = field.shape
    if 2 * int(_TRUNCATE * sigma + 0.5) + 1 <= _DIRECT_MAX_TAPS:
        return gaussian(field, sigma, mode="reflect", truncate=_TRUNCATE)
    ext = np.concatenate([field, field[::-1]], axis=0)
    out = sp_fft.irfft(sp_fft.rfft(ext, axis=0) * _wrapped_spectrum(h, sigma)[:, None], 2 * h, axis=0)[:h]
    ext = np.concatenate([out, out[:, ::-1]], axis=1)
    return sp_fft.irfft(sp_fft.rfft(ext, axis=1) * _wrapped_spectrum(w, sigma), 2 * w, axis=1)[:, :w]


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
    image = x.astype(np.float32)
    image /= 255.0
    image = random_affine(image, max_shift, rng)
    dx = (smooth_field(rng.uniform(-1, 1, size=(h, w)), sigma) * alpha).astype(np.float32)
    dy = (smooth_field(rng.uniform(-1, 1, size=(h, w)), sigma) * alpha).astype(np.float32)
    rows = np.arange(h)[:, None] + dy  # int64 + float32 -> float64 sample positions, as in the reference
    cols = np.arange(w)[None, :] + dx
    out = bilinear_reflect(image, rows, cols)
    np.clip(out, 0, 1, out=out)
    out *= 255
    return out
