"""Weather corruptions, batched: snow, fog, brightness and spatter (frost is in :mod:`.frost`).

Op signature: see :mod:`.noise`.

Spatter's water mode (severities 1-3) turns the liquid layer into the reference's "wet edge" map (``cv2.Canny`` +
``cv2.distanceTransform`` + histogram equalisation + filters). On CPU tensors that map comes from OpenCV itself, per
image on a thread pool (the fastest there); on other devices from :mod:`.edges`, batched torch ops with the same
values, so the whole corruption stays on the device.
"""
from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..weather import plasma_mapsize
from . import edges
from ._linear import on_device
from ._ops import (HALF_Q16, clipped_zoom, gaussian_blur, host_tensor, hsv_to_rgb, line_blur, motion_kernels,
                   motion_offsets, per_sample, per_sample_columns, rgb_to_hsv, uniform)

_GRAY = (0.299, 0.587, 0.114)  # cv2 RGB2GRAY weights for float images
_WATER = (175 / 255, 238 / 255, 238 / 255)
_MUD = (63 / 255, 42 / 255, 20 / 255)
_EDGE_KERNEL = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]])


def _gray(x: torch.Tensor) -> torch.Tensor:
    w = on_device(("gray",), lambda: np.reshape(_GRAY, (1, 3, 1, 1)), x.device, x.dtype)
    return (x * w).sum(1, keepdim=True)


def snow(x: torch.Tensor, sevs: list[int], table: tuple, gen: torch.Generator | None,
         profile: str) -> torch.Tensor:
    """Zoomed, thresholded Gaussian snow layer, motion-blurred (angle U(-135, -45)), added twice (once rotated 180)."""
    n, _, h, w = x.shape
    loc, scale, threshold, blend = per_sample_columns(table, (0, 1, 3, 6), sevs, x.device)
    layer = torch.randn((n, 1, h, w), generator=gen, device=x.device) * scale + loc
    layer = clipped_zoom(layer, [[float(table[s - 1][2])] for s in sevs])
    layer = torch.where(layer < threshold, 0.0, layer)
    layer8 = torch.floor(layer.clamp(0, 1) * 255)  # the reference's 8-bit hand-off to ImageMagick
    weights, widths = motion_kernels([c[4] for c in table], [c[5] for c in table], sevs, x.device)
    angle = uniform((n,), -135.0, -45.0, gen, x.device)
    dy, dx = motion_offsets(angle, widths, weights.shape[1])
    flakes = torch.floor((line_blur(layer8, weights, dy, dx) + HALF_Q16).clamp_(0, 255)) / 255
    x = blend * x + (1 - blend) * torch.maximum(x, _gray(x) * 1.5 + 0.5)
    return (x + flakes + flakes.flip(-1, -2)).clamp_(0, 1).mul_(255)


_PLASMA_PAD = 2
"""Toroidal padding (each side) of the plasma grids: a 3 x 3 conv of a grid padded by 2 gives the next level's grid
padded by 2 again (after the 2x pixel shuffle)."""


def _plasma_kernel() -> np.ndarray:
    """``conv2d`` weight (4, 4, 3, 3) of one diamond-square level: its polyphase stencils.

    Input channels at (r, c): the corners G, then the square, row-diamond and column-diamond noise of cell (r, c).
    Output channel 2a + b is the next grid's value at (2r + a, 2c + b): the corner itself (0, 0), the diamonds (0, 1)
    and (1, 0) (mean of 2 centres and 2 corners + noise) and the square centre (1, 1) (mean of 4 corners + noise),
    as the reference computes them.
    """
    def unit(ch: int, dy: int, dx: int) -> np.ndarray:
        s = np.zeros((4, 3, 3))
        s[ch, dy + 1, dx + 1] = 1.0
        return s

    def corner(dy: int, dx: int) -> np.ndarray:
        return unit(0, dy, dx)

    def centre(dy: int, dx: int) -> np.ndarray:
        return (corner(dy, dx) + corner(dy + 1, dx) + corner(dy, dx + 1) + corner(dy + 1, dx + 1)) / 4 + unit(1, dy, dx)

    return np.stack([
        corner(0, 0),
        (centre(0, 0) + centre(-1, 0) + corner(0, 0) + corner(0, 1)) / 4 + unit(2, 0, 0),
        (centre(0, 0) + centre(0, -1) + corner(0, 0) + corner(1, 0)) / 4 + unit(3, 0, 0),
        centre(0, 0),
    ])


@functools.lru_cache(maxsize=8)
def _plasma_noise_layout(mapsize: int) -> tuple[np.ndarray, np.ndarray]:
    """For the flat draws of one map (the reference's order: per level the square, then the two diamond draws):
    the exponent of ``wibbledecay`` scaling each draw (-2 x level) and, per level, the indices of its three (k, k)
    noise grids toroidally padded to (k + 4, k + 4), concatenated."""
    exponents, index = [], []
    for level in range(mapsize.bit_length() - 1):
        k = 1 << level
        exponents.append(np.full(3 * k * k, -2.0 * level))
        wrap = (np.arange(k + 2 * _PLASMA_PAD) - _PLASMA_PAD) % k
        start = k * k - 1  # draws of the coarser levels: 3 (1 + 4 + ... + (k / 2)^2)
        channel = np.arange(3)[:, None, None]
        index.append((start + channel * k * k + wrap[:, None] * k + wrap[None, :]).ravel())
    return np.concatenate(exponents), np.concatenate(index)


def plasma_fractal(wibbledecay: torch.Tensor, mapsize: int, gen: torch.Generator | None) -> torch.Tensor:
    """Diamond-square height maps (N, mapsize, mapsize) in [0, 1], toroidal, as the reference builds them, one per
    entry of ``wibbledecay`` (N,).

    All uniforms of a map are drawn at once, in float64 as the reference. Each new value is the mean of its 4
    neighbours plus ``wibble * U(-wibble, wibble)`` with ``wibble = 100 / wibbledecay^level``; the map is linear in
    the draws and min-max normalised, so the constant factor 2 x 100^2 is dropped. A level (square and diamond steps)
    is one 3 x 3 ``conv2d`` of the padded corners and the level's noise, then a 2x pixel shuffle.
    """
    if mapsize < 2 or mapsize & (mapsize - 1):
        raise ValueError(f"plasma map size must be a power of two >= 2, got {mapsize}")
    n, device, f64 = wibbledecay.shape[0], wibbledecay.device, torch.float64
    exponents = on_device(("plasma_exp", mapsize), lambda: _plasma_noise_layout(mapsize)[0], device, f64)
    index = on_device(("plasma_index", mapsize), lambda: _plasma_noise_layout(mapsize)[1], device, torch.long)
    kernel = on_device(("plasma_kernel",), _plasma_kernel, device, f64)
    u = torch.rand((n, mapsize * mapsize - 1), generator=gen, device=device, dtype=f64)
    noise = ((u - 0.5) * wibbledecay.to(f64)[:, None].pow(exponents)).index_select(1, index)
    side = 1 + 2 * _PLASMA_PAD
    grid = torch.zeros((n, 1, side, side), dtype=f64, device=device)  # the 1 x 1 corner grid (value 0), padded
    start = 0
    for _ in range(mapsize.bit_length() - 1):
        level_noise = noise[:, start:start + 3 * side * side].reshape(n, 3, side, side)
        start += 3 * side * side
        grid = F.pixel_shuffle(F.conv2d(torch.cat([grid, level_noise], 1), kernel), 2)
        side = grid.shape[-1]
    m = grid[:, 0, _PLASMA_PAD:_PLASMA_PAD + mapsize, _PLASMA_PAD:_PLASMA_PAD + mapsize]
    m = m - m.amin((1, 2), keepdim=True)
    return (m / m.amax((1, 2), keepdim=True)).float()


def fog(x: torch.Tensor, sevs: list[int], table: tuple, gen: torch.Generator | None,
        profile: str) -> torch.Tensor:
    """Grey plasma fog added to all channels, then rescaled by ``max / (max + strength)`` per image."""
    _, _, h, w = x.shape
    strength, decay = per_sample_columns(table, (0, 1), sevs, x.device, torch.float64)
    strength = strength.float()
    max_val = x.amax((1, 2, 3), keepdim=True)
    plasma = plasma_fractal(decay.reshape(-1), plasma_mapsize(h, w, profile), gen)[:, None, :h, :w]
    return ((x + strength * plasma) * max_val / (max_val + strength)).clamp_(0, 1).mul_(255)


def brightness(x: torch.Tensor, sevs: list[int], table: tuple, gen: torch.Generator | None,
               profile: str) -> torch.Tensor:
    """HSV value ``V + c`` (clipped), skimage colour maths."""
    h, s, v = rgb_to_hsv(x)
    v = (v + per_sample(table, sevs, x.device).reshape(-1, 1, 1)).clamp_(0, 1)
    return hsv_to_rgb(h, s, v).clamp_(0, 1).mul_(255)


def _wet_edges_one(l8: np.ndarray) -> np.ndarray:
    dist = cv2.distanceTransform(255 - cv2.Canny(l8, 50, 150), cv2.DIST_L2, 5)
    _, dist = cv2.threshold(dist, 20, 20, cv2.THRESH_TRUNC)
    dist = cv2.equalizeHist(cv2.blur(dist, (3, 3)).astype(np.uint8))
    dist = cv2.filter2D(dist, cv2.CV_8U, _EDGE_KERNEL)
    return cv2.blur(dist, (3, 3)).astype(np.float32)


@functools.lru_cache(maxsize=1)
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=min(16, os.cpu_count() or 1), thread_name_prefix="vqsa-spatter")


def _wet_edges_cpu(layer8: np.ndarray) -> np.ndarray:
    """The reference's water-spatter edge map of each 8-bit liquid layer (N, H, W) uint8 -> (N, H, W) float32.

    One OpenCV chain per image (OpenCV releases the GIL, so the images run on a thread pool).
    """
    if len(layer8) == 1:
        return _wet_edges_one(layer8[0])[None]
    return np.stack(list(_pool().map(_wet_edges_one, layer8)))


def _wet_edges(layer8: torch.Tensor) -> torch.Tensor:
    """The wet-edge map of (N, H, W) 8-bit layers: OpenCV on a host thread pool for CPU tensors (about 4x faster
    there), the same values as batched torch ops elsewhere (:mod:`.edges`: no host round trip), unless this OpenCV
    build's distance transform is one those ops do not reproduce."""
    if layer8.device.type != "cpu" and edges.matches_opencv():
        return edges.wet_edges(layer8)
    return torch.from_numpy(_wet_edges_cpu(layer8.to(torch.uint8).cpu().numpy())).to(layer8.device)


def spatter(x: torch.Tensor, sevs: list[int], table: tuple, gen: torch.Generator | None,
            profile: str) -> torch.Tensor:
    """Smoothed, thresholded liquid layer; water (turquoise wet edges) or mud (brown blobs), by severity."""
    n, _, h, w = x.shape
    columns = per_sample_columns(table, (0, 1, 3, 4), sevs, x.device)
    loc, scale, threshold, intensity = (c.reshape(n, 1, 1) for c in columns)
    liquid = gaussian_blur(torch.randn((n, h, w), generator=gen, device=x.device) * scale + loc,
                           [c[2] for c in table], sevs)
    liquid = torch.where(liquid < threshold, 0.0, liquid)
    water = [table[s - 1][5] == 0 for s in sevs]
    out = torch.empty_like(x)
    for is_water in (True, False):
        idx = [i for i, wt in enumerate(water) if wt == is_water]
        if not idx:
            continue
        sub = slice(None) if len(idx) == n else host_tensor(idx, x.device, torch.long)
        if is_water:
            out[sub] = _water(x[sub], liquid[sub], intensity[sub])
        else:
            out[sub] = _mud(x[sub], liquid[sub], threshold[sub], [c[4] for c in table], [sevs[i] for i in idx])
    return out.clamp_(0, 1).mul_(255)


def _water(x: torch.Tensor, liquid: torch.Tensor, intensity: torch.Tensor) -> torch.Tensor:
    # numpy's float -> uint8 cast of the reference keeps the low 8 bits of the truncated value
    layer8 = torch.remainder(torch.floor(liquid * 255), 256)
    m = layer8 * _wet_edges(layer8)
    peak = m.amax((1, 2), keepdim=True)
    m = m / torch.where(peak > 0, peak, 1.0)  # m >= 0, so an all-zero map stays 0
    color = on_device(("water",), lambda: np.reshape(_WATER, (1, 3, 1, 1)), x.device)
    return x + (m * intensity)[:, None] * color


def _mud(x: torch.Tensor, liquid: torch.Tensor, threshold: torch.Tensor, sigmas: list[float],
         sevs: list[int]) -> torch.Tensor:
    m = gaussian_blur((liquid > threshold).to(x.dtype), sigmas, sevs)
    m = torch.where(m < 0.8, 0.0, m)[:, None]
    color = on_device(("mud",), lambda: np.reshape(_MUD, (1, 3, 1, 1)), x.device)
    return x * (1 - m) + m * color


OPS = {
    "snow": snow,
    "fog": fog,
    "brightness": brightness,
    "spatter": spatter,
}
