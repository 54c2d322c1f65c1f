"""Batched torch building blocks shared by the corruption families.

All functions take float32 tensors of shape (N, C, H, W) (or (N, H, W) where stated) on any device and never leave
it. Nothing here loops over pixels; loops run over kernel taps or zoom factors only.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ._linear import apply_rows_cols, gaussian_stack, on_device, zoom_geometry

HALF_Q16 = 0.5 / 257.0
"""Half a 16-bit quantum in 8-bit grey levels (ImageMagick Q16 rounding before the 8-bit truncation)."""


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Send a small host tensor to ``device`` without a stream synchronisation (pinned memory, async copy on CUDA)."""
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def host_tensor(values: Sequence, device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A small tensor built on the host from ``values`` and sent to ``device`` with :func:`to_device`."""
    return to_device(torch.tensor(values, dtype=dtype), device)


def per_sample(values: Sequence[float], sevs: list[int], device: torch.device,
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(N,) tensor of ``values[severity - 1]`` for each sample's severity."""
    return host_tensor([values[s - 1] for s in sevs], device, dtype)


def column(t: torch.Tensor) -> torch.Tensor:
    """(N,) -> (N, 1, 1, 1) for broadcasting a per-sample value over images."""
    return t.reshape(-1, 1, 1, 1)


def per_sample_columns(table: Sequence[Sequence[float]], fields: Sequence[int], sevs: list[int], device: torch.device,
                       dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, ...]:
    """``table[severity - 1][f]`` for each field ``f`` as (N, 1, 1, 1) columns, sent in one copy."""
    values = host_tensor([[table[s - 1][f] for s in sevs] for f in fields], device, dtype)
    return tuple(values.reshape(len(fields), -1, 1, 1, 1))


def pick(sevs: list[int], *stacks: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``stack[severity - 1]`` of each stack: one entry for the whole batch when all severities agree, else one per
    sample (one index copy for all the stacks; a stack given twice is indexed once)."""
    if len(set(sevs)) == 1:
        return tuple(stack[sevs[0] - 1] for stack in stacks)
    idx = host_tensor([s - 1 for s in sevs], stacks[0].device, torch.long)
    picked: dict[int, torch.Tensor] = {}
    for stack in stacks:
        if id(stack) not in picked:
            picked[id(stack)] = stack[idx]
    return tuple(picked[id(stack)] for stack in stacks)


def gaussian_blur(x: torch.Tensor, sigmas: Sequence[float], sevs: list[int], mode: str = "nearest",
                  truncate: float = 4.0) -> torch.Tensor:
    """scipy/skimage Gaussian filter over the last two axes of ``x`` with sigma ``sigmas[severity - 1]`` per sample."""
    h, w = x.shape[-2:]
    rows, cols = pick(sevs, *(gaussian_stack(n, tuple(sigmas), mode, truncate, x.device) for n in (h, w)))
    return apply_rows_cols(rows, x, cols)


def motion_kernels(radius: Sequence[float], sigma: Sequence[float], sevs: list[int],
                   device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """ImageMagick's one-sided Gaussian trail per sample: weights (N, T) zero-padded to the longest trail, and the
    trail widths (N,) (``2 ceil(radius) + 1`` taps; weights exp(-i^2 / 2 sigma^2), normalised)."""
    widths = [2 * math.ceil(r) + 1 for r in radius]
    taps = max(widths[s - 1] for s in sevs)
    table = np.zeros((len(widths), taps))
    for k, (wd, sg) in enumerate(zip(widths, sigma)):
        if wd <= taps:
            i = np.arange(wd, dtype=np.float64)
            table[k, :wd] = np.exp(-(i**2) / (2.0 * sg**2))
            table[k] /= table[k].sum()
    return (host_tensor(table[[s - 1 for s in sevs]], device),
            per_sample(widths, sevs, device, torch.float64))


def motion_offsets(angle_deg: torch.Tensor, widths: torch.Tensor, taps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample integer tap offsets ``(dy, dx)``, each (N, taps), for angles (N,) in degrees.

    Same float expression as ImageMagick (and the CPU engine): ``ceil(i * (w sin a) / hypot - 1/2)`` with ``w`` the
    sample's trail width; computed in float64 so that ties fall as on the CPU.
    """
    a = torch.deg2rad(angle_deg.to(torch.float64))
    p = widths[:, None] * torch.stack([torch.sin(a), torch.cos(a)], 1)  # (py, px)
    ratio = p / torch.hypot(p[:, 0], p[:, 1])[:, None]
    i = torch.arange(taps, dtype=torch.float64, device=angle_deg.device)
    dy, dx = torch.ceil(ratio[:, :, None] * i - 0.5).long().unbind(1)
    return dy, dx


GATHER_BUDGET = 1 << 26
"""Elements produced at once by the stacked gathers (motion trails, zoom steps): bounds their temporary memory."""


def line_blur(x: torch.Tensor, weights: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
    """Per-sample weighted sum of shifted copies with edge replication (a motion-blur trail).

    ``x`` (N, C, H, W); ``weights``/``dy``/``dx`` (N, T): output pixel (y, x) accumulates
    ``weights[t] * x[clamp(y + dy[t]), clamp(x + dx[t])]``. A grouped convolution with one thin line kernel per
    image, written as gathers from an edge-padded copy: as many taps per gather as the memory budget allows, so a
    small group of images costs a handful of kernels, not a few per tap.
    """
    n, c, h, w = x.shape
    taps = weights.shape[1]
    pad = taps - 1  # |offset| <= taps - 1
    xp = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    wp = w + 2 * pad
    flat = xp.reshape(n, c, -1)
    rows = torch.arange(h, device=x.device) + pad
    cols = torch.arange(w, device=x.device) + pad
    base = (rows[:, None] * wp + cols[None, :]).reshape(1, 1, h * w)
    shift = (dy * wp + dx)[:, :, None]  # (N, T, 1)
    out = torch.zeros(n, c, h * w, dtype=x.dtype, device=x.device)
    chunk = max(1, GATHER_BUDGET // max(1, n * c * h * w))
    for t0 in range(0, taps, chunk):
        t1 = min(taps, t0 + chunk)
        idx = (base + shift[:, t0:t1]).reshape(n, 1, -1).expand(n, c, -1)
        got = torch.gather(flat, 2, idx).reshape(n, c, t1 - t0, h * w)
        out += (got * weights[:, None, t0:t1, None].to(x.dtype)).sum(2)
    return out.reshape(n, c, h, w)


@functools.lru_cache(maxsize=1024)
def _zoom_coords(n: int, zoom: float | None) -> np.ndarray:
    """Normalised (align_corners) source coordinates (n,) of the reference ``clipped_zoom`` on one axis of length n.

    ``None`` (no zoom at this step for this sample) gives the identity; the caller masks such samples out.
    """
    if zoom is None:
        src = np.arange(n, dtype=np.float64)
    else:
        top, crop, out, trim = zoom_geometry(n, zoom)
        src = top + np.arange(trim, trim + n) * ((crop - 1) / (out - 1))
    return src * (2.0 / (n - 1)) - 1.0


_ABSENT = 4.0
"""A normalised coordinate outside the image: with zero padding such a zoom step contributes nothing."""


def _zoom_table(h: int, w: int, rows: Sequence[tuple[float | None, ...]]) -> np.ndarray:
    """(len(rows), steps, h + w): per distinct zoom row, per step, the y then the x coordinates of
    :func:`clipped_zoom`; x is :data:`_ABSENT` at steps without a zoom."""
    out = np.empty((len(rows), len(rows[0]), h + w))
    for i, row in enumerate(rows):
        for j, z in enumerate(row):
            out[i, j, :h] = _zoom_coords(h, z)
            out[i, j, h:] = _ABSENT if z is None else _zoom_coords(w, z)
    return out


def clipped_zoom(x: torch.Tensor, zooms: Sequence[Sequence[float | None]]) -> torch.Tensor:
    """Sum over steps of the reference ``clipped_zoom`` of each image by its own factor per step.

    ``x`` (N, C, H, W); ``zooms[i][j]`` the factor of image i at step j (None: no zoom at that step). Centre crop,
    corner-aligned bilinear zoom (= ``scipy.ndimage.zoom(order=1)``), centre trim, each axis on its own side. All
    steps are stacked along the output height of a single ``grid_sample`` and summed. The coordinates of the
    distinct zoom rows are sent to the device in one table and picked per image there.
    """
    n, _, h, w = x.shape
    keys = [tuple(None if z is None else float(z) for z in row) for row in zooms]
    rows = list(dict.fromkeys(keys))
    table = host_tensor(_zoom_table(h, w, rows), x.device)
    if len(rows) > 1:
        position = {row: i for i, row in enumerate(rows)}
        table = table[host_tensor([position[k] for k in keys], x.device, torch.long)]
    steps = table.shape[1]
    gy = table[:, :, :h, None].expand(n, steps, h, w)
    gx = table[:, :, None, h:].expand(n, steps, h, w)
    grid = torch.stack([gx, gy], -1).reshape(n, steps * h, w, 2)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return out.reshape(n, -1, steps, h, w).sum(2)


def rgb_to_hsv(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """skimage ``rgb2hsv`` on (N, 3, H, W) as (H, S, V), each (N, H, W): H in [0, 1), S = delta / V (0 where
    delta = 0), V = max."""
    r, g, b = x.unbind(1)
    low, v = torch.aminmax(x, dim=1)
    delta = v - low
    flat = delta == 0
    s = delta / torch.where(flat, 1.0, v)
    safe = torch.where(flat, 1.0, delta)
    # skimage assigns R, then G, then B: later channels win ties.
    h = torch.where(b == v, 4.0 + (r - g) / safe, torch.where(g == v, 2.0 + (b - r) / safe, (g - b) / safe))
    return torch.where(flat, 0.0, torch.remainder(h / 6.0, 1.0)), s, v


_HSV_R = (0, 1, 2, 2, 3, 0)  # index into (v, q, p, t): which value each sextant puts in R, G, B
_HSV_G = (3, 0, 0, 1, 2, 2)
_HSV_B = (2, 2, 3, 0, 0, 1)


def hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """skimage ``hsv2rgb`` of (N, H, W) H, S, V planes -> (N, 3, H, W)."""
    h6 = h * 6.0
    hi = torch.floor(h6)
    f = h6 - hi
    # v, q, p, t = v (1 - k) with k = 0, f s, s, (1 - f) s
    k = torch.stack([torch.zeros_like(s), f * s, s, (1 - f) * s], 1)
    sextant = torch.remainder(hi, 6).long()
    table = on_device(("hsv_sextants",), lambda: np.array([_HSV_R, _HSV_G, _HSV_B]), h.device, torch.long)
    idx = table[:, sextant].permute(1, 0, 2, 3)  # (N, 3, H, W) indices into k
    return v[:, None] * (1 - torch.gather(k, 1, idx))


def uniform(shape: tuple[int, ...], low: float | torch.Tensor, high: float | torch.Tensor,
            gen: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """float32 U(low, high) of ``shape`` on ``device`` from ``gen`` (bounds may be tensors broadcasting to shape)."""
    return torch.rand(shape, generator=gen, device=device) * (high - low) + low


def border_index(i: torch.Tensor, n: int, border: str) -> torch.Tensor:
    """Map integer indices into [0, n) by ``border``: "reflect101" (cv2 default), "reflect" (half-sample) or
    "replicate" (edge)."""
    if border == "replicate":
        return i.clamp(0, n - 1)
    if border == "reflect101":
        if n == 1:
            return torch.zeros_like(i)
        i = torch.remainder(i, 2 * n - 2)
        return torch.where(i >= n, 2 * n - 2 - i, i)
    i = torch.remainder(i, 2 * n)
    return torch.where(i >= n, 2 * n - 1 - i, i)


def bilinear_gather(img: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, border: str) -> torch.Tensor:
    """Bilinear samples of ``img`` (N, C, H, W) at per-sample positions ``rows``/``cols`` (N, H', W'), broadcastable.

    Out-of-range neighbours are mapped with ``border`` ("reflect101" as OpenCV, "reflect" as scipy), so this equals
    ``cv2.remap``/``warpAffine`` and ``scipy.ndimage.map_coordinates(order=1)`` with those borders. The four
    neighbours are read with one gather.
    """
    n, c, h, w = img.shape
    rows, cols = torch.broadcast_tensors(rows, cols)
    rows, cols = rows.expand(n, *rows.shape[-2:]), cols.expand(n, *cols.shape[-2:])
    shape = rows.shape[-2:]
    r0, c0 = torch.floor(rows), torch.floor(cols)
    fr, fc = (rows - r0)[:, None], (cols - c0)[:, None]
    pair = torch.arange(2, device=img.device).reshape(1, 2, 1, 1)
    r = border_index(r0.long()[:, None] + pair, h, border) * w  # (N, 2, H', W'): rows r0, r0 + 1
    q = border_index(c0.long()[:, None] + pair, w, border)
    idx = (r[:, :, None] + q[:, None]).reshape(n, 1, -1).expand(n, c, -1)
    taps = torch.gather(img.reshape(n, c, h * w), 2, idx).reshape(n, c, 4, *shape)
    left = 1 - fc
    top = taps[:, :, 0] * left + taps[:, :, 1] * fc
    bottom = taps[:, :, 2] * left + taps[:, :, 3] * fc
    return top * (1 - fr) + bottom * fr
