"""Separable linear filters as small dense matrices, cached per device.

A 1-D filter with a fixed border rule is a linear map on one image axis, so it is an ``(n_out, n_in)`` matrix:
``out = A_h @ x @ A_w.T`` filters a batch (N, C, H, W) along both axes. The matrices are built once in float64 on
the host (scipy's own ``gaussian_filter1d`` applied to the identity, so border modes and truncation are exactly
scipy's; Pillow's BOX resampling coefficients) and moved to each device once. This handles any sigma, including
kernels larger than the image (elastic sigma 170.8 at 224 px), with no padding special cases.
"""
from __future__ import annotations

import functools
import math

import numpy as np
import torch
from scipy.ndimage import gaussian_filter1d

_DEVICE_CACHE: dict[tuple, torch.Tensor] = {}
_DEVICE_CACHE_MAX = 512


def on_device(key: tuple, build, device: torch.device) -> torch.Tensor:
    """``build()`` (a float64 numpy array) as a float32 tensor on ``device``, cached by ``(key, device)``."""
    ck = (key, str(device))
    t = _DEVICE_CACHE.get(ck)
    if t is None:
        if len(_DEVICE_CACHE) >= _DEVICE_CACHE_MAX:
            _DEVICE_CACHE.clear()
        t = torch.tensor(np.asarray(build()), dtype=torch.float32).to(device)
        _DEVICE_CACHE[ck] = t
    return t


@functools.lru_cache(maxsize=256)
def _gaussian_matrix_np(n: int, sigma: float, mode: str, truncate: float) -> np.ndarray:
    if sigma <= 1e-15:  # scipy's gaussian_filter skips such axes: identity
        return np.eye(n)
    return gaussian_filter1d(np.eye(n), sigma, axis=0, mode=mode, truncate=truncate)


def gaussian_matrix(n: int, sigma: float, mode: str, truncate: float, device: torch.device) -> torch.Tensor:
    """(n, n) matrix of scipy ``gaussian_filter1d(., sigma, mode=mode, truncate=truncate)`` on a length-n axis."""
    key = ("gauss", n, float(sigma), mode, float(truncate))
    return on_device(key, lambda: _gaussian_matrix_np(n, float(sigma), mode, float(truncate)), device)


def gaussian_blur2d(x: torch.Tensor, sigma: float, mode: str = "nearest", truncate: float = 4.0) -> torch.Tensor:
    """scipy/skimage Gaussian filter over the last two axes of ``x`` (any leading shape), same sigma on both."""
    h, w = x.shape[-2:]
    a_h = gaussian_matrix(h, sigma, mode, truncate, x.device)
    a_w = gaussian_matrix(w, sigma, mode, truncate, x.device)
    return a_h @ x @ a_w.T


@functools.lru_cache(maxsize=256)
def _pil_box_matrix_np(n_in: int, n_out: int) -> np.ndarray:
    # Pillow's precompute_coeffs (Resample.c) for the BOX filter (support 0.5, box(t) = 1 on (-0.5, 0.5]).
    scale = n_in / n_out
    filterscale = max(scale, 1.0)
    support = 0.5 * filterscale
    out = np.zeros((n_out, n_in))
    for i in range(n_out):  # loop over output coefficients only (<= image side), not pixels
        center = (i + 0.5) * scale
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), n_in)
        t = (np.arange(lo, hi) - center + 0.5) / filterscale
        wts = ((t > -0.5) & (t <= 0.5)).astype(np.float64)
        out[i, lo:hi] = wts / wts.sum()
    return out


def pil_box_matrix(n_in: int, n_out: int, device: torch.device) -> torch.Tensor:
    """(n_out, n_in) matrix of Pillow's ``resize(..., Image.BOX)`` along one axis (before 8-bit rounding)."""
    return on_device(("box", n_in, n_out), lambda: _pil_box_matrix_np(n_in, n_out), device)


def zoom_geometry(n: int, zoom: float) -> tuple[int, int, int, int]:
    """Geometry of the reference ``clipped_zoom`` on one axis: ``(top, crop, out, trim)``.

    Centre crop ``crop = ceil(n / zoom)`` at ``top = (n - crop) // 2``, scipy ``zoom`` (order 1, corner-aligned) to
    ``out = round(crop * zoom)``, then the centre ``n`` values starting at ``trim = (out - n) // 2``.
    """
    crop = int(math.ceil(n / float(zoom)))
    top = (n - crop) // 2
    out = int(round(crop * float(zoom)))
    trim = (out - n) // 2
    return top, crop, out, trim
