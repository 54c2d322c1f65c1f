"""Weather corruptions, batched: snow, fog, brightness and spatter (frost is in :mod:`.frost`).

Each op maps a float32 batch (N, 3, H, W) in [0, 1] to float32 values in [0, 255] (before the uint8 truncation).

Spatter's water mode (severities 1-3) runs one sub-step on the CPU: the reference turns the liquid layer into a
"wet edge" map with ``cv2.Canny`` + ``cv2.distanceTransform`` + histogram equalisation, and no torch formulation of
Canny's hysteresis and the exact Euclidean distance transform is both faithful and cheap. That 8-bit map is computed
per sample with OpenCV exactly as the reference does (about 0.1 ms per 224 px image) and moved back to the device;
everything else stays on the device. Spatter is not one of the 15 training corruptions.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch

from ..weather import plasma_mapsize
from ._linear import gaussian_blur2d
from ._ops import HALF_Q16, clipped_zoom, hsv_to_rgb, line_blur, motion_offsets, motion_weights, rgb_to_hsv, uniform

_GRAY = (0.299, 0.587, 0.114)  # cv2 RGB2GRAY weights for float images
_WATER = (175 / 255, 238 / 255, 238 / 255)
_MUD = (63 / 255, 42 / 255, 20 / 255)
_EDGE_KERNEL = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]])


def _gray(x: torch.Tensor) -> torch.Tensor:
    w = torch.tensor(_GRAY, dtype=x.dtype, device=x.device).reshape(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def snow(x: torch.Tensor, c: tuple, gen: torch.Generator | None, profile: str) -> torch.Tensor:
    """Zoomed, thresholded Gaussian snow layer, motion-blurred (angle U(-135, -45)), added twice (once rotated 180)."""
    loc, scale, zoom, threshold, radius, sigma, blend = c
    n, _, h, w = x.shape
    layer = torch.randn((n, 1, h, w), generator=gen, device=x.device) * scale + loc
    layer = clipped_zoom(layer, zoom)
    layer = torch.where(layer < threshold, torch.zeros_like(layer), layer)
    layer8 = torch.floor(layer.clamp(0, 1) * 255)
    weights = motion_weights(radius, sigma)
    angle = uniform((n,), -135.0, -45.0, gen, x.device)
    dy, dx = motion_offsets(angle, weights.numel())
    flakes = torch.floor((line_blur(layer8, weights, dy, dx) + HALF_Q16).clamp_(0, 255)) / 255
    x = blend * x + (1 - blend) * torch.maximum(x, _gray(x) * 1.5 + 0.5)
    return (x + flakes + flakes.flip(-1, -2)).clamp_(0, 1).mul_(255)


def plasma_fractal(n: int, mapsize: int, wibbledecay: float, gen: torch.Generator | None,
                   device: torch.device) -> torch.Tensor:
    """``n`` diamond-square height maps (n, mapsize, mapsize) in [0, 1], toroidal, as the reference builds them."""
    if mapsize & (mapsize - 1):
        raise ValueError(f"plasma map size must be a power of two, got {mapsize}")
    m = torch.zeros((n, mapsize, mapsize), device=device)
    step, wibble = mapsize, 100.0

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
        wibble /= wibbledecay
    m -= m.amin((1, 2), keepdim=True)
    return m / m.amax((1, 2), keepdim=True)


def fog(x: torch.Tensor, c: tuple, gen: torch.Generator | None, profile: str) -> torch.Tensor:
    """Grey plasma fog added to all channels, then rescaled by ``max / (max + strength)`` per image."""
    strength, decay = c
    n, _, h, w = x.shape
    max_val = x.amax((1, 2, 3), keepdim=True)
    plasma = plasma_fractal(n, plasma_mapsize(h, w, profile), decay, gen, x.device)[:, None, :h, :w]
    return ((x + strength * plasma) * max_val / (max_val + strength)).clamp_(0, 1).mul_(255)


def brightness(x: torch.Tensor, c: float, gen: torch.Generator | None, profile: str) -> torch.Tensor:
    """HSV value ``V + c`` (clipped), skimage colour maths."""
    hsv = rgb_to_hsv(x)
    hsv[:, 2].add_(c).clamp_(0, 1)
    return hsv_to_rgb(hsv).clamp_(0, 1).mul_(255)


def _wet_edges_cpu(layer8: np.ndarray) -> np.ndarray:
    """The reference's water-spatter edge map of each 8-bit liquid layer (N, H, W) uint8 -> (N, H, W) float32."""
    out = np.empty(layer8.shape, np.float32)
    for i, l8 in enumerate(layer8):  # one small OpenCV chain per image
        dist = cv2.distanceTransform(255 - cv2.Canny(l8, 50, 150), cv2.DIST_L2, 5)
        _, dist = cv2.threshold(dist, 20, 20, cv2.THRESH_TRUNC)
        dist = cv2.equalizeHist(cv2.blur(dist, (3, 3)).astype(np.uint8))
        dist = cv2.filter2D(dist, cv2.CV_8U, _EDGE_KERNEL)
        out[i] = cv2.blur(dist, (3, 3)).astype(np.float32)
    return out


def spatter(x: torch.Tensor, c: tuple, gen: torch.Generator | None, profile: str) -> torch.Tensor:
    """Smoothed, thresholded liquid layer; water (turquoise wet edges) or mud (brown blobs)."""
    loc, scale, sigma, threshold, intensity, mode = c
    n, _, h, w = x.shape
    liquid = gaussian_blur2d(torch.randn((n, h, w), generator=gen, device=x.device) * scale + loc, sigma)
    liquid = torch.where(liquid < threshold, torch.zeros_like(liquid), liquid)
    if mode == 0:
        # numpy's float -> uint8 cast of the reference keeps the low 8 bits of the truncated value
        layer8 = torch.remainder(torch.floor(liquid * 255), 256)
        edges = _wet_edges_cpu(layer8.to(torch.uint8).cpu().numpy())
        m = layer8 * torch.from_numpy(edges).to(x.device)
        peak = m.amax((1, 2), keepdim=True)
        m = torch.where(peak > 0, m / torch.where(peak > 0, peak, torch.ones_like(peak)), torch.zeros_like(m))
        color = torch.tensor(_WATER, device=x.device).reshape(1, 3, 1, 1)
        return (x + (m * intensity)[:, None] * color).clamp_(0, 1).mul_(255)
    m = gaussian_blur2d((liquid > threshold).to(x.dtype), intensity)
    m = torch.where(m < 0.8, torch.zeros_like(m), m)[:, None]
    color = torch.tensor(_MUD, device=x.device).reshape(1, 3, 1, 1)
    return (x * (1 - m) + m * color).clamp_(0, 1).mul_(255)


OPS = {
    "snow": snow,
    "fog": fog,
    "brightness": brightness,
    "spatter": spatter,
}
