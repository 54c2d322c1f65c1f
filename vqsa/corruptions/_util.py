"""Shared numeric helpers of the CPU corruption engine: Gaussian smoothing and the reference's clipped zoom.

Both reproduce the semantics the reference relies on (``skimage.filters.gaussian`` and ``clipped_zoom`` built on
``scipy.ndimage.zoom(order=1)``) but are implemented for speed: separable OpenCV filtering with scipy's exact kernel,
and cached sparse interpolation matrices instead of re-deriving the resampling on every call.
"""
from __future__ import annotations

import functools
import math

import cv2
import numpy as np
import scipy.ndimage as ndi
import scipy.sparse as sp

_CV2_BORDER = {"nearest": cv2.BORDER_REPLICATE, "reflect": cv2.BORDER_REFLECT}


@functools.lru_cache(maxsize=64)
def _gaussian_kernel(sigma: float, truncate: float) -> np.ndarray:
    """scipy.ndimage's 1-D Gaussian kernel: radius ``int(truncate * sigma + 0.5)``, normalised to sum 1."""
    radius = int(truncate * float(sigma) + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 / (float(sigma) * float(sigma)) * x * x)
    k /= k.sum()
    k.flags.writeable = False
    return k


def gaussian(x: np.ndarray, sigma: float, *, mode: str = "nearest", truncate: float = 4.0) -> np.ndarray:
    """Gaussian smoothing over the first two axes, like ``skimage.filters.gaussian(x, sigma, channel_axis=-1)``.

    ``x`` is a float array (H, W) or (H, W, C); channels are filtered independently. ``mode`` is scipy's boundary
    mode ("nearest" = skimage's default, "reflect" = half-sample symmetric). ``sigma == 0`` returns a copy (identity,
    as in skimage). Float32 input stays float32, everything else is computed in float64.
    """
    if mode not in _CV2_BORDER:
        raise ValueError(f"gaussian: mode must be one of {sorted(_CV2_BORDER)}, got {mode!r}")
    if sigma < 0:
        raise ValueError(f"gaussian: sigma must be >= 0, got {sigma}")
    x = np.asarray(x)
    if x.dtype != np.float32:
        x = x.astype(np.float64, copy=False)
    if sigma == 0:
        return x.copy()
    kernel = _gaussian_kernel(float(sigma), float(truncate))
    radius = kernel.size // 2
    channels = 1 if x.ndim == 2 else x.shape[2]
    if radius < min(x.shape[:2]) and channels <= 4:
        # OpenCV's separable filter = scipy's correlate1d on both axes when the border is reached only once.
        out = cv2.sepFilter2D(x, -1, kernel.astype(x.dtype), kernel.astype(x.dtype), borderType=_CV2_BORDER[mode])
        return out.reshape(x.shape)
    sigmas = (sigma, sigma) if x.ndim == 2 else (sigma, sigma) + (0,) * (x.ndim - 2)
    return ndi.gaussian_filter(x, sigmas, mode=mode, truncate=truncate)


def to_uint8(y: np.ndarray) -> np.ndarray:
    """The reference's output step ``np.uint8(np.clip(y, 0, 1) * 255)`` (truncation), done in place on ``y``.

    ``y`` must be a float array owned by the caller (it is overwritten); the values equal the out-of-place maths.
    """
    np.clip(y, 0, 1, out=y)
    y *= 255
    return y.astype(np.uint8)


@functools.lru_cache(maxsize=256)
def zoom_axis_matrix(n: int, zoom: float) -> sp.csr_matrix:
    """The (n x n) linear map of one axis of the reference's ``clipped_zoom(img, zoom)``.

    Centre crop of ``ceil(n / zoom)`` samples starting at ``(n - crop) // 2``, corner-aligned linear resampling to
    ``round(crop * zoom)`` samples (``scipy.ndimage.zoom(order=1)``), then the centre ``n`` samples
    (``trim = (out - n) // 2``). Each row has at most two non-zeros.
    """
    crop = int(math.ceil(n / float(zoom)))
    top = (n - crop) // 2
    out = int(round(crop * zoom))
    trim = (out - n) // 2
    coord = np.arange(trim, trim + n, dtype=np.float64) * ((crop - 1) / (out - 1))
    i0 = np.minimum(np.floor(coord).astype(np.int64), crop - 1)
    frac = coord - i0
    i1 = np.minimum(i0 + 1, crop - 1)
    rows = np.repeat(np.arange(n), 2)
    cols = np.stack([i0, i1], axis=1).ravel() + top
    vals = np.stack([1.0 - frac, frac], axis=1).ravel()
    m = sp.csr_matrix((vals, (rows, cols)), shape=(n, n))
    m.sum_duplicates()
    return m


def clipped_zoom(img: np.ndarray, zoom: float) -> np.ndarray:
    """The reference's ``clipped_zoom``: zoom into the centre of ``img`` (H, W) or (H, W, C) by ``zoom`` >= 1.

    Generalised to non-square images: each axis is cropped to ``ceil(side / zoom)`` around its own centre, resampled
    bilinearly (corner-aligned, as ``scipy.ndimage.zoom(order=1)``) and centre-trimmed back to its side. At square
    sizes this is the reference exactly; output has the shape and (float) dtype of the input.
    """
    if zoom < 1:
        raise ValueError(f"clipped_zoom: zoom must be >= 1, got {zoom}")
    x = np.asarray(img)
    dtype = x.dtype if x.dtype in (np.float32, np.float64) else np.float64
    h, w = x.shape[:2]
    rest = x.shape[2:]
    mh, mw = zoom_axis_matrix(h, float(zoom)), zoom_axis_matrix(w, float(zoom))
    y = mh @ x.reshape(h, -1).astype(np.float64, copy=False)  # (h, w * c)
    y = y.reshape(h, w, -1).transpose(1, 0, 2).reshape(w, -1)  # (w, h * c)
    y = (mw @ y).reshape(w, h, -1).transpose(1, 0, 2)
    return np.ascontiguousarray(y.reshape((h, w) + rest), dtype=dtype)
