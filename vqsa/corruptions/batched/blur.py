"""Blur corruptions, batched: defocus, glass, motion, zoom and gaussian blur.

Each op maps a float32 batch (N, 3, H, W) in [0, 1] to float32 values in [0, 255] (before the uint8 truncation).

Glass blur: the reference's pixel shuffle is a sequential chain of copies (rows then columns in descending order,
pixel (h, w) takes the current value of (h + dy, w + dx), offsets in [-d, d - 1]). Every pixel is written once per
iteration, so its final value is the original value at the end of a pointer chain: follow "my source was written
before me" links until a source that still held its original value. The chains are resolved for all pixels at once
by pointer doubling (O(log chain length) gathers), which reproduces the sequential process exactly for the same
offsets, with offsets drawn from the same distribution.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..blur import disk_kernel
from ._linear import gaussian_blur2d, on_device
from ._ops import HALF_Q16, clipped_zoom, line_blur, motion_offsets, motion_weights, uniform


def defocus_blur(x: torch.Tensor, c: tuple, gen: torch.Generator | None, profile: str) -> torch.Tensor:
    """Correlation with the anti-aliased disk (cv2.filter2D semantics: centred, REFLECT_101 border)."""
    radius, alias = c
    k = on_device(("disk", float(radius), float(alias)), lambda: disk_kernel(radius, alias), x.device)
    n, ch, h, w = x.shape
    p = k.shape[-1] // 2
    xp = F.pad(x.reshape(1, n * ch, h, w), (p, p, p, p), mode="reflect")
    # depthwise (grouped) convolution: ~10x faster than a 1-channel conv over N*C images on the CPU
    weight = k.expand(n * ch, 1, *k.shape)
    return F.conv2d(xp, weight, groups=n * ch).reshape(n, ch, h, w).clamp_(0, 1).mul_(255)


def shuffle_chain(img: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, d: int) -> torch.Tensor:
    """One iteration of the reference's sequential local pixel "shuffle" (copy chain), computed in parallel.

    ``img`` (N, C, H, W); ``dy``/``dx`` (N, H - 2d, W - 2d) integer offsets in [-d, d - 1] for the target pixels
    rows/cols ``d + 1 .. H - d`` (resp. W), visited in descending order by the reference.
    """
    n, c, h, w = img.shape
    dev = img.device
    rows = torch.arange(d + 1, h - d + 1, device=dev)
    cols = torch.arange(d + 1, w - d + 1, device=dev)
    src_r = rows[None, :, None] + dy
    src_c = cols[None, None, :] + dx
    # The source was written before the target (descending visit order) iff it lies later in raster order and
    # is itself a target pixel.
    before = ((dy > 0) | ((dy == 0) & (dx > 0))) & (src_r <= h - d) & (src_c >= d + 1) & (src_c <= w - d)
    ident = torch.arange(h * w, device=dev).reshape(1, h, w).expand(n, h, w)
    tgt = (rows[:, None] * w + cols[None, :]).reshape(1, -1)
    src = (src_r * w + src_c).reshape(n, -1)
    nxt = ident.reshape(n, -1).clone()
    value_of = ident.reshape(n, -1).clone()
    nxt.scatter_(1, tgt.expand(n, -1), torch.where(before.reshape(n, -1), src, tgt.expand(n, -1)))
    value_of.scatter_(1, tgt.expand(n, -1), src)
    while True:  # pointer doubling; chains are short (a few links), so this converges in a handful of rounds
        jumped = torch.gather(nxt, 1, nxt)
        if torch.equal(jumped, nxt):
            break
        nxt = jumped
    idx = torch.gather(value_of, 1, nxt)
    return torch.gather(img.reshape(n, c, h * w), 2, idx[:, None].expand(n, c, h * w)).reshape(n, c, h, w)


def glass_blur(x: torch.Tensor, c: tuple, gen: torch.Generator | None, profile: str) -> torch.Tensor:
    """Gaussian blur, 8-bit truncation, ``iterations`` rounds of the local pixel copy chain, Gaussian blur again."""
    sigma, d, iterations = c
    d, iterations = int(d), int(iterations)
    n, _, h, w = x.shape
    img = torch.floor(gaussian_blur2d(x, sigma) * 255)
    th, tw = h - 2 * d, w - 2 * d
    if th > 0 and tw > 0:
        for _ in range(iterations):
            off = torch.randint(-d, d, (n, 2, th, tw), generator=gen, device=x.device)
            img = shuffle_chain(img, off[:, 1], off[:, 0], d)
    return gaussian_blur2d(img / 255, sigma).clamp_(0, 1).mul_(255)


def motion_blur(x: torch.Tensor, c: tuple, gen: torch.Generator | None, profile: str) -> torch.Tensor:
    """ImageMagick motion blur with a per-sample angle ``U(-45, 45)``; the 8-bit result as ImageMagick Q16 rounds it."""
    radius, sigma = c
    weights = motion_weights(radius, sigma)
    angle = uniform((x.shape[0],), -45.0, 45.0, gen, x.device)
    dy, dx = motion_offsets(angle, weights.numel())
    return line_blur(x * 255, weights, dy, dx).add_(HALF_Q16).clamp_(0, 255)


def zoom_blur(x: torch.Tensor, c: np.ndarray, gen: torch.Generator | None, profile: str) -> torch.Tensor:
    """Mean of the image and its centre zooms by each factor (the factor list starts at 1, counted twice)."""
    out = x.clone()
    for z in c.tolist():
        out += x if z == 1 else clipped_zoom(x, z)
    return out.div_(len(c) + 1).clamp_(0, 1).mul_(255)


def gaussian_blur(x: torch.Tensor, c: float, gen: torch.Generator | None, profile: str) -> torch.Tensor:
    """skimage ``gaussian`` (mode 'nearest', truncate 4) on every channel."""
    return gaussian_blur2d(x, c).clamp_(0, 1).mul_(255)


OPS = {
    "defocus_blur": defocus_blur,
    "glass_blur": glass_blur,
    "motion_blur": motion_blur,
    "zoom_blur": zoom_blur,
    "gaussian_blur": gaussian_blur,
}
