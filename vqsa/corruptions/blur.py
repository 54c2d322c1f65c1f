"""Blur corruptions: defocus_blur, glass_blur, zoom_blur, gaussian_blur (motion_blur lives in ``motion.py``).

* defocus_blur: the reference's anti-aliased disk kernel (OpenCV Gaussian-smoothed aliased disk), ``cv2.filter2D``.
* gaussian_blur: ``skimage.filters.gaussian`` semantics (mode "nearest", truncate 4) via ``_util.gaussian``, in
  float32 (the reference: float64; a truncated 8-bit value moves by one level in rare cases).
* zoom_blur: the mean of the image and its clipped zooms. The whole blur is one linear operator; for images up to
  ``_ZOOM_OPERATOR_MAX_PIXELS`` it is built once per (H, W, severity table) as a sparse matrix (~30 non-zeros per
  pixel, ~18 MB at 224 px, cached) and applied in float32, one product per channel (~3 ms at 224 px vs ~42 ms for
  the reference's sum of ``scipy.ndimage.zoom`` calls; a truncated 8-bit value moves by one level in rare cases);
  larger images sum separable per-zoom resamplings in float64.
* glass_blur: Gaussian blur, truncating 8-bit cast, the reference's sequential "local pixel shuffle", Gaussian blur.
  The shuffle is the reference's exact process, vectorised: in loop order (rows then columns, both descending) pixel
  p takes the *current* value of p + (dy, dx), dx, dy ~ U{-d, ..., d-1}. A source already visited in this iteration
  carries the value it copied, so the value p ends up with is found by following the chain of earlier-visited
  sources; the chains are resolved by pointer jumping (O(log chain length) vectorised steps). Given the same offsets
  the result equals the sequential loop bit-for-bit; only the random stream differs: one uniform code in
  [0, 4 d^2) per visited pixel in loop order, encoding the independent pair (dx, dy), drawn from a
  ``np.random.Generator`` instead of two ``randint`` calls on the legacy global ``np.random``.
"""
from __future__ import annotations

import functools

import cv2
import numpy as np
import scipy.sparse as sp

from ._params import get_params
from ._util import clipped_zoom, gaussian, to_uint8, zoom_axis_matrix

_ZOOM_OPERATOR_MAX_PIXELS = 256 * 256


@functools.lru_cache(maxsize=32)
def disk_kernel(radius: float, alias_blur: float) -> np.ndarray:
    """The reference's defocus kernel: aliased disk of ``radius`` (normalised) smoothed by a Gaussian ``alias_blur``.

    The grid is 17 x 17 with a 3 x 3 smoothing kernel for radius <= 8, else (2 radius + 1)^2 with 5 x 5 (float32).
    """
    half, ksize = (8, (3, 3)) if radius <= 8 else (int(radius), (5, 5))
    grid = np.arange(-half, half + 1)
    disk = ((grid[:, None] ** 2 + grid[None, :] ** 2) <= radius**2).astype(np.float32)
    disk /= np.sum(disk)
    kernel = cv2.GaussianBlur(disk, ksize=ksize, sigmaX=alias_blur)
    kernel.flags.writeable = False
    return kernel


def defocus_blur(x: np.ndarray, severity: int, rng: np.random.Generator, profile: str) -> np.ndarray:
    """Convolution with the anti-aliased disk (border reflect-101, as OpenCV's default); deterministic, uint8."""
    radius, alias_blur = get_params("defocus_blur", severity, profile)
    out = cv2.filter2D(x / 255.0, -1, disk_kernel(radius, alias_blur))
    return to_uint8(out)


def gaussian_blur(x: np.ndarray, severity: int, rng: np.random.Generator, profile: str) -> np.ndarray:
    """Gaussian blur with sigma ``c`` px (mode nearest, truncate 4); deterministic, uint8."""
    sigma = get_params("gaussian_blur", severity, profile)
    return to_uint8(gaussian(x / np.float32(255), sigma))


@functools.lru_cache(maxsize=5)
def _zoom_blur_operator(height: int, width: int, zooms: tuple[float, ...]) -> sp.csr_matrix:
    """Sparse (H*W, H*W) matrix of ``(x + sum_z clipped_zoom(x, z)) / (len(zooms) + 1)`` on row-major pixels."""
    total = sp.identity(height * width, format="csr")
    for z in zooms:
        total = total + sp.kron(zoom_axis_matrix(height, z), zoom_axis_matrix(width, z), format="csr")
    total = (total / (len(zooms) + 1)).tocsr()
    total.sum_duplicates()
    return total


@functools.lru_cache(maxsize=5)
def _zoom_blur_operator_f32(height: int, width: int, zooms: tuple[float, ...]) -> sp.csr_matrix:
    """``_zoom_blur_operator`` rounded to float32 (applied in float32: a third less memory traffic per product)."""
    operator = _zoom_blur_operator(height, width, zooms).astype(np.float32)
    for a in (operator.data, operator.indices, operator.indptr):
        a.flags.writeable = False
    return operator


def zoom_blur(x: np.ndarray, severity: int, rng: np.random.Generator, profile: str) -> np.ndarray:
    """Average of the image and its centre zooms by the reference's factors; deterministic, uint8."""
    zooms = tuple(float(z) for z in get_params("zoom_blur", severity, profile))
    height, width = x.shape[:2]
    if height * width <= _ZOOM_OPERATOR_MAX_PIXELS:
        # One matrix-vector product per channel plane (scipy's multi-vector product is ~1.5x slower).
        operator = _zoom_blur_operator_f32(height, width, zooms)
        planes = x.reshape(height * width, -1).T
        out = np.empty(planes.shape, np.float32)
        for plane, target in zip(planes, out):
            target[...] = operator @ (plane / np.float32(255))
        return np.ascontiguousarray(to_uint8(out).T).reshape(x.shape)
    img = x / 255.0
    out = img.copy()
    for z in zooms:
        out += clipped_zoom(img, z)
    out /= len(zooms) + 1
    return to_uint8(out)


@functools.lru_cache(maxsize=16)
def _shuffle_grid(height: int, width: int, delta: int) -> tuple[np.ndarray, ...]:
    """Static tables of one shuffle pass over the (H - 2 delta) x (W - 2 delta) visited pixels, in loop order.

    Returns (pixel: flat image index of each visited pixel, order: its loop index, padded: its flat index in the
    loop-order grid padded by ``delta`` on every side, loop_of_padded: padded grid -> loop index or -1 outside,
    pixel_step / padded_step: per offset code, the flat index step to the source in the image / padded grid).
    """
    nh, nw = height - 2 * delta, width - 2 * delta
    i = np.arange(nh, dtype=np.int32)[:, None]
    j = np.arange(nw, dtype=np.int32)[None, :]
    pixel = ((height - delta - i) * width + (width - delta - j)).ravel()
    order = (i * nw + j).ravel()
    pw = nw + 2 * delta
    padded = ((i + delta) * pw + (j + delta)).ravel()
    loop_of_padded = np.full((nh + 2 * delta, pw), -1, np.int32)
    loop_of_padded[delta:delta + nh, delta:delta + nw] = order.reshape(nh, nw)
    code = np.arange(4 * delta * delta, dtype=np.int32)
    dx, dy = code % (2 * delta) - delta, code // (2 * delta) - delta
    pixel_step = dy * width + dx  # image row h + dy, column w + dx
    padded_step = -(dy * pw + dx)  # loop index i - dy, j - dx
    tables = (pixel, order, padded, loop_of_padded.ravel(), pixel_step, padded_step)
    for a in tables:
        a.flags.writeable = False
    return tables


def shuffle_sources(height: int, width: int, delta: int, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Resolve one pass of the reference's sequential copy loop into one gather.

    ``codes`` (H - 2 delta, W - 2 delta) holds one offset code per visited pixel in loop order: entry [i, j] belongs
    to row ``H - delta - i`` and column ``W - delta - j`` and encodes ``dx = code % (2 delta) - delta``,
    ``dy = code // (2 delta) - delta``. Returns flat pixel indices (targets, sources) such that
    ``new[targets] = old[sources]`` equals running the loop on ``old``.
    """
    pixel, order, padded, loop_of_padded, pixel_step, padded_step = _shuffle_grid(height, width, delta)
    codes = codes.ravel()
    term = pixel + pixel_step[codes]  # the pixel whose start-of-pass value a chain ends on
    nxt = loop_of_padded[padded + padded_step[codes]]  # loop index of the source, -1 if it is never visited
    earlier = (nxt >= 0) & (nxt < order)  # the source was visited (and overwritten) before this pixel
    # Pointer jumping: each round replaces p's link by its link's link, halving every chain.
    pending = np.flatnonzero(earlier)
    while pending.size:
        q = nxt[pending]
        term[pending] = term[q]
        nxt[pending] = nxt[q]
        linked = earlier[q]
        earlier[pending] = linked
        pending = pending[linked]
    return pixel, term


def glass_blur(x: np.ndarray, severity: int, rng: np.random.Generator, profile: str) -> np.ndarray:
    """Gaussian blur, local pixel shuffle (``iterations`` passes, max offset ``delta``), Gaussian blur; uint8."""
    sigma, delta, iterations = get_params("glass_blur", severity, profile)
    height, width = x.shape[:2]
    packed = np.zeros((height, width, 4), np.uint8)  # RGB + pad byte, moved as one uint32 per pixel
    packed[..., :3] = (gaussian(x.astype(np.float32) / np.float32(255), sigma) * 255).astype(np.uint8)
    flat = packed.view(np.uint32).reshape(-1)
    for _ in range(iterations):
        codes = rng.integers(0, 4 * delta * delta, size=(height - 2 * delta, width - 2 * delta), dtype=np.uint8)
        targets, sources = shuffle_sources(height, width, delta, codes)
        flat[targets] = flat[sources]
    return to_uint8(gaussian(packed[..., :3] / np.float32(255), sigma))
