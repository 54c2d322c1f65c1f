"""Digital corruptions, batched: contrast, elastic transform, pixelate, JPEG compression and saturate.

Op signature: see :mod:`.noise`. Pixelate and JPEG work on 8-bit values as Pillow does (float inputs are rounded to
1/255 steps for these two).
"""
from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.io import decode_jpeg, encode_jpeg

from ._linear import on_device, pil_box_stack
from ._ops import (bilinear_gather, column, gaussian_blur, hsv_to_rgb, per_sample, per_sample_columns, pick, rgb_to_hsv,
                   uniform)
from .jpeg import jpeg_roundtrip


def contrast(x: torch.Tensor, sevs: list[int], table: tuple, gen: torch.Generator | None,
             profile: str) -> torch.Tensor:
    """``(x - m) c + m`` with m the per-image, per-channel mean."""
    m = x.mean((2, 3), keepdim=True)
    return ((x - m) * column(per_sample(table, sevs, x.device)) + m).clamp_(0, 1).mul_(255)


def _pixel_grid(h: int, w: int, device: torch.device) -> torch.Tensor:
    """(1, H, W, 3) float32 (x, y, 1) of every pixel, cached per device."""
    def build() -> np.ndarray:
        ys, xs = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
        return np.stack([xs, ys, np.ones_like(xs)], -1)[None]

    return on_device(("pixel_grid", h, w), build, device)


def _affine_sources(max_shift: torch.Tensor, h: int, w: int,
                    gen: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Source (rows, cols) (N, H, W) of the reference's random three-point affine warp (cv2 convention), one warp per
    entry of ``max_shift`` (N,)."""
    n, device = max_shift.shape[0], max_shift.device
    cx, cy, half = float(w // 2), float(h // 2), float(min(h, w) // 3)
    points = [[cx + half, cy + half], [cx + half, cy - half], [cx - half, cy - half]]
    pts1 = on_device(("affine_points", h, w), lambda: points, device)
    bound = max_shift.reshape(n, 1, 1)
    pts2 = pts1 + uniform((n, 3, 2), -bound, bound, gen, device)
    # warpAffine samples dst(p) = src(M^-1 p); M^-1 is the affine map taking pts2 onto pts1. solve_ex: no error
    # check, which would wait for the device (three random points are never collinear in practice).
    target = on_device(("affine_points", h, w), lambda: points, device, torch.float64).expand(n, 3, 2)
    inv = torch.linalg.solve_ex(F.pad(pts2, (0, 1), value=1.0).double(), target).result.float()  # (N, 3, 2)
    # OpenCV >= 5 (the CPU engine) samples at the exact positions; OpenCV 3/4 rounded them to 1/32 px.
    src = (_pixel_grid(h, w, device).reshape(1, h * w, 3) @ inv).reshape(n, h, w, 2)
    return src[..., 1], src[..., 0]


def elastic_transform(x: torch.Tensor, sevs: list[int], table: tuple, gen: torch.Generator | None,
                      profile: str) -> torch.Tensor:
    """Random three-point affine (REFLECT_101) then a smoothed random displacement field (half-sample reflect)."""
    n, _, h, w = x.shape
    alpha, max_shift = per_sample_columns(table, (0, 2), sevs, x.device)
    rows, cols = _affine_sources(max_shift.reshape(n), h, w, gen)
    img = bilinear_gather(x, rows, cols, "reflect101")
    noise = uniform((n, 2, h, w), -1.0, 1.0, gen, x.device)  # dx, then dy
    fields = gaussian_blur(noise, [c[1] for c in table], sevs, mode="reflect", truncate=3.0) * alpha
    grid = _pixel_grid(h, w, x.device)
    out = bilinear_gather(img, grid[..., 1] + fields[:, 1], grid[..., 0] + fields[:, 0], "reflect")
    return out.clamp_(0, 1).mul_(255)


def _round8(v: torch.Tensor) -> torch.Tensor:
    return torch.floor(v + 0.5).clamp_(0, 255)


def _batched(m: torch.Tensor) -> torch.Tensor:
    """A per-sample matrix stack (N, a, b) broadcast over channels (N, 1, a, b); a shared matrix is left as is."""
    return m[:, None] if m.ndim == 3 else m


def pixelate(x: torch.Tensor, sevs: list[int], table: tuple, gen: torch.Generator | None,
             profile: str) -> torch.Tensor:
    """Pillow BOX down-sampling to ``int(side * c)`` then BOX (= nearest) up-sampling, 8-bit rounding per pass."""
    _, _, h, w = x.shape
    stacks = (pil_box_stack(n, tuple(int(n * c) for c in table), x.device) for n in (h, w))
    down_h, up_h, down_w, up_w = (_batched(m) for m in pick(sevs, *(m for pair in stacks for m in pair)))
    v = _round8(x * 255)
    v = _round8(v @ down_w.transpose(-1, -2))  # Pillow resizes horizontally first, rounding to 8 bits per pass
    v = _round8(down_h @ v)
    return up_h @ v @ up_w.transpose(-1, -2)


def _libjpeg_roundtrip(u8: torch.Tensor, qualities: list[int]) -> torch.Tensor:
    """The same round trip through torchvision's libjpeg (CPU tensors): ~10x faster than the integer torch ops on a
    CPU, and the same pixels (both are Pillow's; tested)."""
    out = torch.empty_like(u8)
    for quality in sorted(set(qualities)):
        idx = [i for i, q in enumerate(qualities) if q == quality]
        with warnings.catch_warnings():  # torchvision >= 0.29 flags its JPEG codec as deprecated (for TorchCodec)
            warnings.filterwarnings("ignore", message=".*encoding capabilities of TorchVision",
                                    category=DeprecationWarning)
            decoded = decode_jpeg(encode_jpeg([u8[i] for i in idx], quality=int(quality)))
        out[idx if len(idx) < len(qualities) else slice(None)] = torch.stack(decoded)
    return out


def jpeg_compression(x: torch.Tensor, sevs: list[int], table: tuple, gen: torch.Generator | None,
                     profile: str) -> torch.Tensor:
    """Pillow's JPEG round trip at quality ``c`` (4:2:0, islow DCT): libjpeg on the CPU, integer torch ops elsewhere
    (bit-identical, so the output does not depend on the device)."""
    u8, qualities = _round8(x * 255).to(torch.uint8), [int(table[s - 1]) for s in sevs]
    roundtrip = _libjpeg_roundtrip if x.device.type == "cpu" else jpeg_roundtrip
    return roundtrip(u8, qualities).to(x.dtype)


def saturate(x: torch.Tensor, sevs: list[int], table: tuple, gen: torch.Generator | None,
             profile: str) -> torch.Tensor:
    """HSV saturation ``S * c0 + c1`` (clipped), skimage colour maths."""
    scale, offset = (c[:, 0] for c in per_sample_columns(table, (0, 1), sevs, x.device))
    h, s, v = rgb_to_hsv(x)
    return hsv_to_rgb(h, (s * scale + offset).clamp_(0, 1), v).clamp_(0, 1).mul_(255)


OPS = {
    "contrast": contrast,
    "elastic_transform": elastic_transform,
    "pixelate": pixelate,
    "jpeg_compression": jpeg_compression,
    "saturate": saturate,
}
