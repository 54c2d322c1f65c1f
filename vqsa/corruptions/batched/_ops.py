"""Batched torch building blocks shared by the corruption families.

All functions take float32 tensors of shape (N, C, H, W) (or (N, H, W) where stated) on any device and never leave
it. Nothing here loops over pixels; loops run over kernel taps or zoom factors only.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ._linear import zoom_geometry

HALF_Q16 = 0.5 / 257.0
"""Half a 16-bit quantum in 8-bit grey levels (ImageMagick Q16 rounding before the 8-bit truncation)."""


def motion_weights(radius: float, sigma: float) -> torch.Tensor:
    """ImageMagick's one-sided Gaussian trail weights (``2 ceil(radius) + 1`` taps, float64, sum 1), on the CPU."""
    width = 2 * math.ceil(radius) + 1
    i = np.arange(width, dtype=np.float64)
    w = np.exp(-(i**2) / (2.0 * sigma**2))
    return torch.from_numpy(w / w.sum())


def motion_offsets(angle_deg: torch.Tensor, taps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample integer tap offsets ``(dy, dx)``, each (N, taps), for angles (N,) in degrees.

    Same float expression as ImageMagick (and the CPU engine): ``ceil(i * (w sin a) / hypot - 1/2)``; computed in
    float64 so that ties fall as on the CPU.
    """
    a = torch.deg2rad(angle_deg.to(torch.float64))
    py, px = taps * torch.sin(a), taps * torch.cos(a)
    hyp = torch.hypot(py, px)
    i = torch.arange(taps, dtype=torch.float64, device=angle_deg.device)
    dy = torch.ceil(i[None] * (py / hyp)[:, None] - 0.5).long()
    dx = torch.ceil(i[None] * (px / hyp)[:, None] - 0.5).long()
    return dy, dx


def line_blur(x: torch.Tensor, weights: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
    """Per-sample weighted sum of shifted copies with edge replication (a motion-blur trail).

    ``x`` (N, C, H, W); ``weights`` (T,) shared by all samples; ``dy``/``dx`` (N, T) integer offsets: output pixel
    (y, x) accumulates ``weights[t] * x[clamp(y + dy[t]), clamp(x + dx[t])]``. One gather per tap over the whole
    batch (a grouped convolution with per-sample kernels, written as a gather because the kernel is a thin line).
    """
    n, c, h, w = x.shape
    taps = weights.numel()
    pad = taps - 1  # |offset| <= taps - 1
    xp = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    hp, wp = h + 2 * pad, w + 2 * pad
    flat = xp.reshape(n, c, hp * wp)
    rows = torch.arange(h, device=x.device) + pad
    cols = torch.arange(w, device=x.device) + pad
    base = (rows[:, None] * wp + cols[None, :]).reshape(1, 1, h * w)
    shift = (dy * wp + dx).reshape(n, taps, 1)
    out = torch.zeros(n, c, h * w, dtype=x.dtype, device=x.device)
    for t, wt in enumerate(weights.tolist()):
        idx = (base + shift[:, t:t + 1]).expand(n, c, h * w)
        out.add_(torch.gather(flat, 2, idx), alpha=wt)
    return out.reshape(n, c, h, w)


def clipped_zoom(x: torch.Tensor, zoom: float) -> torch.Tensor:
    """The reference ``clipped_zoom`` of a batch (N, C, H, W): centre crop, corner-aligned bilinear zoom, centre trim.

    Each axis uses its own side (identical to the reference on square images).
    """
    h, w = x.shape[-2:]
    top_h, crop_h, out_h, trim_h = zoom_geometry(h, zoom)
    top_w, crop_w, out_w, trim_w = zoom_geometry(w, zoom)
    crop = x[..., top_h:top_h + crop_h, top_w:top_w + crop_w]
    z = F.interpolate(crop, size=(out_h, out_w), mode="bilinear", align_corners=True)
    return z[..., trim_h:trim_h + h, trim_w:trim_w + w]


def rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """skimage ``rgb2hsv`` on (N, 3, H, W): H in [0, 1), S = delta / V (0 where delta = 0), V = max."""
    r, g, b = x.unbind(1)
    v, _ = x.max(1)
    delta = v - x.min(1)[0]
    flat = delta == 0
    safe = torch.where(flat, torch.ones_like(delta), delta)
    s = torch.where(flat, torch.zeros_like(delta), delta / torch.where(v == 0, torch.ones_like(v), v))
    # skimage assigns R, then G, then B: later channels win ties.
    h = torch.where(b == v, 4.0 + (r - g) / safe, torch.where(g == v, 2.0 + (b - r) / safe, (g - b) / safe))
    h = torch.remainder(h / 6.0, 1.0)
    h = torch.where(flat, torch.zeros_like(h), h)
    return torch.stack([h, s, v], 1)


_HSV_R = (0, 1, 2, 2, 3, 0)  # index into (v, q, p, t): which value each sextant puts in R, G, B
_HSV_G = (3, 0, 0, 1, 2, 2)
_HSV_B = (2, 2, 3, 0, 0, 1)


def hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """skimage ``hsv2rgb`` on (N, 3, H, W)."""
    h, s, v = hsv.unbind(1)
    h6 = h * 6.0
    hi = torch.floor(h6)
    f = h6 - hi
    vals = torch.stack([v, v * (1 - f * s), v * (1 - s), v * (1 - (1 - f) * s)], 1)  # v, q, p, t
    sextant = torch.remainder(hi, 6).long()
    table = torch.tensor([_HSV_R, _HSV_G, _HSV_B], device=hsv.device)  # (3, 6)
    idx = table[:, sextant].permute(1, 0, 2, 3)  # (N, 3, H, W) indices into vals
    return torch.gather(vals, 1, idx)


def uniform(shape: tuple[int, ...], low: float, high: float, gen: torch.Generator | None,
            device: torch.device) -> torch.Tensor:
    """float32 U(low, high) of ``shape`` on ``device`` from ``gen``."""
    return torch.rand(shape, generator=gen, device=device) * (high - low) + low


def _border_index(i: torch.Tensor, n: int, border: str) -> torch.Tensor:
    """Map integer indices into [0, n) by ``border``: "reflect101" (cv2 default) or "reflect" (half-sample)."""
    if border == "reflect101":
        if n == 1:
            return torch.zeros_like(i)
        i = torch.remainder(i, 2 * n - 2)
        return torch.where(i >= n, 2 * n - 2 - i, i)
    i = torch.remainder(i, 2 * n)
    return torch.where(i >= n, 2 * n - 1 - i, i)


def bilinear_gather(img: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, border: str) -> torch.Tensor:
    """Bilinear samples of ``img`` (N, C, H, W) at per-sample positions ``rows``/``cols`` (N, H', W') (or broadcastable).

    Out-of-range neighbours are mapped with ``border`` ("reflect101" as OpenCV, "reflect" as scipy), so this equals
    ``cv2.remap``/``warpAffine`` and ``scipy.ndimage.map_coordinates(order=1)`` with those borders.
    """
    n, c, h, w = img.shape
    rows, cols = torch.broadcast_tensors(rows, cols)
    rows, cols = rows.expand(n, *rows.shape[-2:]), cols.expand(n, *cols.shape[-2:])
    r0, c0 = torch.floor(rows), torch.floor(cols)
    fr, fc = (rows - r0)[:, None], (cols - c0)[:, None]
    r0, c0 = r0.long(), c0.long()
    ra, rb = _border_index(r0, h, border) * w, _border_index(r0 + 1, h, border) * w
    ca, cb = _border_index(c0, w, border), _border_index(c0 + 1, w, border)
    flat = img.reshape(n, c, h * w)
    size = rows.shape[-2] * rows.shape[-1]

    def tap(r: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        idx = (r + q).reshape(n, 1, size).expand(n, c, size)
        return torch.gather(flat, 2, idx).reshape(n, c, *rows.shape[-2:])

    top = tap(ra, ca) * (1 - fc) + tap(ra, cb) * fc
    bottom = tap(rb, ca) * (1 - fc) + tap(rb, cb) * fc
    return top * (1 - fr) + bottom * fr
