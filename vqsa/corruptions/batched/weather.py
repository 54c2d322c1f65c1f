"""Weather corruptions, batched: snow, fog, brightness and spatter (frost is in :mod:`.frost`).

Op signature: see :mod:`.noise`.

Spatter's water mode (severities 1-3) runs one sub-step on the CPU: the reference turns the liquid layer into a
"wet edge" map with ``cv2.Canny`` + ``cv2.distanceTransform`` + histogram equalisation, and no torch formulation of
Canny's hysteresis and OpenCV's 5x5 chamfer distance transform is both faithful and cheap. That 8-bit map is computed
per sample with OpenCV exactly as the reference does (on a thread pool) and moved back to the device; everything
else stays on the device. Spatter is not one of the 15 training corruptions.
"""
from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import torch

from ..weather import plasma_mapsize
from ._ops import (HALF_Q16, clipped_zoom, column, gaussian_blur, host_tensor, hsv_to_rgb, line_blur, motion_kernels,
                   motion_offsets, per_sample, rgb_to_hsv, uniform)

_GRAY = (0.299, 0.587, 0.114)  # cv2 RGB2GRAY weights for float images
_WATER = (175 / 255, 238 / 255, 238 / 255)
_MUD = (63 / 255, 42 / 255, 20 / 255)
_EDGE_KERNEL = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]])


def _gray(x: torch.Tensor) -> torch.Tensor:
    w = torch.tensor(_GRAY, dtype=x.dtype, device=x.device).reshape(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def snow(x: torch.Tensor, sevs: list[int], table: tuple, gen: torch.Generator | None,
         profile: str) -> torch.Tensor:
    """Zoomed, thresholded Gaussian snow layer, motion-blurred (angle U(-135, -45)), added twice (once rotated 180)."""
    n, _, h, w = x.shape
    loc, scale, threshold, blend = (column(per_sample([c[i] for c in table], sevs, x.device)) for i in (0, 1, 3, 6))
    layer = torch.randn((n, 1, h, w), generator=gen, device=x.device) * scale + loc
    layer = clipped_zoom(layer, [[float(table[s - 1][2])] for s in sevs])
    layer = torch.where(layer < threshold, torch.zeros_like(layer), layer)
    layer8 = torch.floor(layer.clamp(0, 1) * 255)  # the reference's 8-bit hand-off to ImageMagick
    weights, widths = motion_kernels([c[4] for c in table], [c[5] for c in table], sevs, x.device)
    angle = uniform((n,), -135.0, -45.0, gen, x.device)
    dy, dx = motion_offsets(angle, widths, weights.shape[1])
    flakes = torch.floor((line_blur(layer8, weights, dy, dx) + HALF_Q16).clamp_(0, 255)) / 255
    x = blend * x + (1 - blend) * torch.maximum(x, _gray(x) * 1.5 + 0.5)
    return (x + flakes + flakes.flip(-1, -2)).clamp_(0, 1).mul_(255)


def plasma_fractal(wibbledecay: torch.Tensor, mapsize: int, gen: torch.Generator | None) -> torch.Tensor:
    """Diamond-square height maps (N, mapsize, mapsize) in [0, 1], toroidal, as the reference builds them, one per
    entry of ``wibbledecay`` (N,)."""
    if mapsize & (mapsize - 1):
        raise ValueError(f"plasma map size must be a power of two, got {mapsize}")
    n, device = wibbledecay.shape[0], wibbledecay.device
    m = torch.zeros((n, mapsize, mapsize), device=device)
    step = mapsize
    wibble = torch.full((n, 1, 1), 100.0, device=device)
    decay = wibbledecay.reshape(n, 1, 1).to(torch.float32)

    def wibbled_mean(total: torch.Tensor) -> torch.Tensor:
        return total / 4 + wibble * uniform(tuple(total.shape), -wibble, wibble, gen, device)

    while step >= 2:
        half = step // 2
        corners = m[:, 0::step, 0::step]
        sq = corners + corners.roll(-1, 1)
        m[:, half::step, half::step] = wibbled_mean(sq + sq.roll(-1, 2))
        dr, ul = m[:, half::step, half::step], m[:, 0::step, 0::step]
        m[:, 0::step, half::step] = wibbled_mean(dr + dr.roll(1, 1) + ul + ul.roll(-1, 2))
        m[:, half::step, 0::step] = wibbled_mean(dr + dr.roll(1, 2) + ul + ul.roll(-1, 1))
        step //= 2
        wibble = wibble / decay
    m -= m.amin((1, 2), keepdim=True)
    return m / m.amax((1, 2), keepdim=True)


def fog(x: torch.Tensor, sevs: list[int], table: tuple, gen: torch.Generator | None,
        profile: str) -> torch.Tensor:
    """Grey plasma fog added to all channels, then rescaled by ``max / (max + strength)`` per image."""
    _, _, h, w = x.shape
    strength = column(per_sample([c[0] for c in table], sevs, x.device))
    decay = per_sample([c[1] for c in table], sevs, x.device)
    max_val = x.amax((1, 2, 3), keepdim=True)
    plasma = plasma_fractal(decay, plasma_mapsize(h, w, profile), gen)[:, None, :h, :w]
    return ((x + strength * plasma) * max_val / (max_val + strength)).clamp_(0, 1).mul_(255)


def brightness(x: torch.Tensor, sevs: list[int], table: tuple, gen: torch.Generator | None,
               profile: str) -> torch.Tensor:
    """HSV value ``V + c`` (clipped), skimage colour maths."""
    hsv = rgb_to_hsv(x)
    hsv[:, 2:] = (hsv[:, 2:] + column(per_sample(table, sevs, x.device))).clamp_(0, 1)
    return hsv_to_rgb(hsv).clamp_(0, 1).mul_(255)


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


def spatter(x: torch.Tensor, sevs: list[int], table: tuple, gen: torch.Generator | None,
            profile: str) -> torch.Tensor:
    """Smoothed, thresholded liquid layer; water (turquoise wet edges) or mud (brown blobs), by severity."""
    n, _, h, w = x.shape
    loc, scale, threshold, intensity = (per_sample([c[i] for c in table], sevs, x.device).reshape(n, 1, 1)
                                        for i in (0, 1, 3, 4))
    liquid = gaussian_blur(torch.randn((n, h, w), generator=gen, device=x.device) * scale + loc,
                           [c[2] for c in table], sevs)
    liquid = torch.where(liquid < threshold, torch.zeros_like(liquid), liquid)
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
    edges = _wet_edges_cpu(layer8.to(torch.uint8).cpu().numpy())
    m = layer8 * torch.from_numpy(edges).to(x.device)
    peak = m.amax((1, 2), keepdim=True)
    m = torch.where(peak > 0, m / torch.where(peak > 0, peak, torch.ones_like(peak)), torch.zeros_like(m))
    color = torch.tensor(_WATER, device=x.device).reshape(1, 3, 1, 1)
    return x + (m * intensity)[:, None] * color


def _mud(x: torch.Tensor, liquid: torch.Tensor, threshold: torch.Tensor, sigmas: list[float],
         sevs: list[int]) -> torch.Tensor:
    m = gaussian_blur((liquid > threshold).to(x.dtype), sigmas, sevs)
    m = torch.where(m < 0.8, torch.zeros_like(m), m)[:, None]
    color = torch.tensor(_MUD, device=x.device).reshape(1, 3, 1, 1)
    return x * (1 - m) + m * color


OPS = {
    "snow": snow,
    "fog": fog,
    "brightness": brightness,
    "spatter": spatter,
}
