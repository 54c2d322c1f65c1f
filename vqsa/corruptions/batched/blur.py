"""Blur corruptions, batched: defocus, glass, motion, zoom and gaussian blur (op signature: see :mod:`.noise`).

Glass blur: the reference's pixel shuffle is a sequential chain of copies (rows then columns in descending order,
pixel (h, w) takes the current value of (h + dy, w + dx), offsets in [-d, d - 1]). Every pixel is written once per
iteration, so its final value is the original value at the end of a pointer chain: follow "my source was written
before me" links until a source that still held its original value. The chains are resolved for all pixels at once
by pointer doubling (a fixed log2(target pixels) gathers, no host synchronisation), which reproduces the sequential
process exactly for the same offsets, with offsets drawn from the same distribution.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..blur import disk_kernel
from ._linear import on_device
from ._ops import (GATHER_BUDGET, HALF_Q16, clipped_zoom, column, gaussian_blur as _gaussian, host_tensor, line_blur,
                   motion_kernels, motion_offsets, per_sample, pick, uniform)


def _disk_stack(table: tuple, size: int) -> np.ndarray:
    out = np.zeros((len(table), size, size))
    for i, (radius, alias) in enumerate(table):
        k = disk_kernel(radius, alias)
        if k.shape[0] <= size:
            p = (size - k.shape[0]) // 2
            out[i, p:p + k.shape[0], p:p + k.shape[1]] = k
    return out


def defocus_blur(x: torch.Tensor, sevs: list[int], table: tuple, gen: torch.Generator | None,
                 profile: str) -> torch.Tensor:
    """Correlation with the anti-aliased disk (cv2.filter2D semantics: centred, REFLECT_101 border)."""
    size = max(disk_kernel(*table[s - 1]).shape[0] for s in set(sevs))  # zero-padded kernels act as the small ones
    k, = pick(sevs, on_device(("disk", tuple(table), size), lambda: _disk_stack(table, size), x.device))
    n, ch, h, w = x.shape
    p = size // 2
    xp = F.pad(x.reshape(1, n * ch, h, w), (p, p, p, p), mode="reflect")
    # depthwise (grouped) convolution with one kernel per image: ~10x faster than 1-channel convs on the CPU
    weight = k.expand(n * ch, 1, size, size) if k.ndim == 2 else k.repeat_interleave(ch, 0)[:, None]
    return F.conv2d(xp, weight, groups=n * ch).reshape(n, ch, h, w).clamp_(0, 1).mul_(255)


def shuffle_chain(img: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, d: int,
                  max_delta: int | None = None) -> torch.Tensor:
    """One iteration of the reference's sequential local pixel "shuffle" (copy chain), computed in parallel.

    ``img`` (N, C, H, W); ``dy``/``dx`` (N, H - 2d, W - 2d) integer offsets in [-max_delta, max_delta - 1]
    (``max_delta`` defaults to ``d``) for the target pixels rows/cols ``d + 1 .. H - d`` (resp. W), visited in
    descending order by the reference. A (0, 0) offset copies a pixel onto itself, which is how samples with a larger
    delta or fewer iterations mask pixels out.

    A source later in raster order (flat shift > 0) was written before its target, so the target's value comes from
    the source's own source: the links are followed by pointer doubling. A chain visits distinct target pixels, so
    ``ceil(log2(targets))`` rounds always reach its end: exact, with no host synchronisation. With max_delta 1 no
    source lies later (offsets in {-1, 0}) and no round is needed.
    """
    n, c, h, w = img.shape
    th, tw = h - 2 * d, w - 2 * d
    shift = F.pad(dy * w + dx, (d + 1, d - 1, d + 1, d - 1)).reshape(n, h * w)  # 0 (a self-copy) off the targets
    ident = torch.arange(h * w, device=img.device)
    source = ident + shift
    nxt = ident + shift.clamp_min(0)  # the source when it was written before the target, else the pixel itself
    rounds = 0 if (d if max_delta is None else max_delta) < 2 else (th * tw - 1).bit_length()
    for _ in range(rounds):
        nxt = torch.gather(nxt, 1, nxt)
    idx = torch.gather(source, 1, nxt)[:, None].expand(n, c, h * w)
    return torch.gather(img.reshape(n, c, h * w), 2, idx).reshape(n, c, h, w)


def glass_blur(x: torch.Tensor, sevs: list[int], table: tuple, gen: torch.Generator | None,
               profile: str) -> torch.Tensor:
    """Gaussian blur, 8-bit truncation, ``iterations`` rounds of the local pixel copy chain, Gaussian blur again."""
    sigmas = [c[0] for c in table]
    deltas = [int(table[s - 1][1]) for s in sevs]
    iterations = [int(table[s - 1][2]) for s in sevs]
    n, _, h, w = x.shape
    img = torch.floor(_gaussian(x, sigmas, sevs) * 255)
    d = min(deltas)
    th, tw = h - 2 * d, w - 2 * d
    if th > 0 and tw > 0:
        delta, todo = host_tensor([deltas, iterations], x.device).reshape(2, n, 1, 1, 1)
        rows = torch.arange(d + 1, h - d + 1, device=x.device).reshape(th, 1)
        cols = torch.arange(d + 1, w - d + 1, device=x.device)
        # iterations of each target pixel: the sample's count on its rows/cols delta + 1 .. side - delta, else 0
        todo = todo * ((rows > delta) & (rows <= h - delta) & (cols > delta) & (cols <= w - delta))
        width = 2 * delta
        for it in range(max(iterations)):
            u = torch.rand((n, 2, th, tw), generator=gen, device=x.device)
            off = ((torch.floor(u * width) - delta) * (todo > it)).long()
            img = shuffle_chain(img, off[:, 1], off[:, 0], d, max(deltas))
    return _gaussian(img / 255, sigmas, sevs).clamp_(0, 1).mul_(255)


def motion_blur(x: torch.Tensor, sevs: list[int], table: tuple, gen: torch.Generator | None,
                profile: str) -> torch.Tensor:
    """ImageMagick motion blur with a per-sample angle ``U(-45, 45)``; the 8-bit result as ImageMagick Q16 rounds it."""
    weights, widths = motion_kernels([c[0] for c in table], [c[1] for c in table], sevs, x.device)
    angle = uniform((x.shape[0],), -45.0, 45.0, gen, x.device)
    dy, dx = motion_offsets(angle, widths, weights.shape[1])
    return line_blur(x * 255, weights, dy, dx).add_(HALF_Q16).clamp_(0, 255)


def zoom_blur(x: torch.Tensor, sevs: list[int], table: tuple, gen: torch.Generator | None,
              profile: str) -> torch.Tensor:
    """Mean of the image and its centre zooms by each factor (the factor lists start at 1, counted twice)."""
    factors = [table[s - 1].tolist()[1:] for s in sevs]  # factor 1.0 is the image itself
    steps = max(len(f) for f in factors)
    zooms = [f + [None] * (steps - len(f)) for f in factors]
    out = x * 2
    chunk = max(1, GATHER_BUDGET // x.numel())  # zoom steps per grid_sample call (bounds the temporary memory)
    for j in range(0, steps, chunk):
        out += clipped_zoom(x, [z[j:j + chunk] for z in zooms])
    return out.div_(column(per_sample([len(f) + 1 for f in table], sevs, x.device))).clamp_(0, 1).mul_(255)


def gaussian_blur(x: torch.Tensor, sevs: list[int], table: tuple, gen: torch.Generator | None,
                  profile: str) -> torch.Tensor:
    """skimage ``gaussian`` (mode 'nearest', truncate 4) on every channel."""
    return _gaussian(x, table, sevs).clamp_(0, 1).mul_(255)


OPS = {
    "defocus_blur": defocus_blur,
    "glass_blur": glass_blur,
    "motion_blur": motion_blur,
    "zoom_blur": zoom_blur,
    "gaussian_blur": gaussian_blur,
}
