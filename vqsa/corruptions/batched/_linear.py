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


def on_device(key: tuple, build, device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``build()`` (a numpy array) as a ``dtype`` tensor on ``device``, cached by ``(key, device, dtype)``."""
    ck = (key, str(device), dtype)
    t = _DEVICE_CACHE.get(ck)
    if t is None:
        if len(_DEVICE_CACHE) >= _DEVICE_CACHE_MAX:
            _DEVICE_CACHE.clear()
        t = torch.tensor(np.asarray(build()), dtype=dtype).to(device)
        _DEVICE_CACHE[ck] = t
    return t


@functools.lru_cache(maxsize=256)
def _gaussian_matrix_np(n: int, sigma: float, mode: str, truncate: float) -> np.ndarray:
    if sigma <= 1e-15:  # scipy's gaussian_filter skips such axes: identity
        return np.eye(n)
    return gaussian_filter1d(np.eye(n), sigma, axis=0, mode=mode, truncate=truncate)


def gaussian_stack(n: int, sigmas: tuple[float, ...], mode: str, truncate: float,
                   device: torch.device) -> torch.Tensor:
    """(len(sigmas), n, n): scipy ``gaussian_filter1d(., sigma, mode=mode, truncate=truncate)`` per sigma."""
    sigmas = tuple(float(s) for s in sigmas)
    key = ("gauss", n, sigmas, mode, float(truncate))
    return on_device(key, lambda: np.stack([_gaussian_matrix_np(n, s, mode, float(truncate)) for s in sigmas]),
                     device)


def apply_rows_cols(rows: torch.Tensor, x: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """``rows @ x @ cols.T`` over the last two axes of ``x`` (N, H, W) or (N, C, H, W); ``rows``/``cols`` are one
    matrix for the whole batch (2-D) or one per sample (3-D, leading N)."""
    if rows.ndim == 3 and x.ndim == 4:
        rows, cols = rows[:, None], cols[:, None]
    return rows @ x @ cols.transpose(-1, -2)


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


def pil_box_stack(n: int, sizes: tuple[int, ...], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Pillow ``resize(..., Image.BOX)`` along one axis of length ``n`` down to each of ``sizes`` and back up.

    Returns ``down`` (len(sizes), max(sizes), n) and ``up`` (len(sizes), n, max(sizes)), zero-padded beyond each
    size, so that one batched product handles samples with different target sizes.
    """
    m = max(sizes)

    def build(down: bool) -> np.ndarray:
        out = np.zeros((len(sizes), m, n) if down else (len(sizes), n, m))
        for i, s in enumerate(sizes):
            if down:
                out[i, :s, :] = _pil_box_matrix_np(n, s)
            else:
                out[i, :, :s] = _pil_box_matrix_np(s, n)
        return out

    key = ("box", n, tuple(sizes))
    return on_device(key + ("down",), lambda: build(True), device), on_device(key + ("up",), lambda: build(False),
                                                                              device)


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
