"""Digital corruptions, batched: contrast, elastic transform, pixelate, JPEG compression and saturate.

Op signature: see :mod:`.noise`. Pixelate and JPEG work on 8-bit values as Pillow does (float inputs are rounded to
1/255 steps for these two).
"""
from __future__ import annotations

import warnings

import torch
from torchvision.io import decode_jpeg, encode_jpeg

from ._linear import pil_box_stack
from ._ops import bilinear_gather, column, gaussian_blur, hsv_to_rgb, per_sample, pick, rgb_to_hsv, uniform
from .jpeg import jpeg_roundtrip


def contrast(x: torch.Tensor, sevs: list[int], table: tuple, gen: torch.Generator | None,
             profile: str) -> torch.Tensor:
    """``(x - m) c + m`` with m the per-image, per-channel mean."""
    m = x.mean((2, 3), keepdim=True)
    return ((x - m) * column(per_sample(table, sevs, x.device)) + m).clamp_(0, 1).mul_(255)


def _affine_sources(max_shift: torch.Tensor, h: int, w: int,
                    gen: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Source (rows, cols) (N, H, W) of the reference's random three-point affine warp (cv2 convention), one warp per
    entry of ``max_shift`` (N,)."""
    n, device = max_shift.shape[0], max_shift.device
    cx, cy, half = float(w // 2), float(h // 2), float(min(h, w) // 3)
    pts1 = torch.tensor([[cx + half, cy + half], [cx + half, cy - half], [cx - half, cy - half]], device=device)
    bound = max_shift.reshape(n, 1, 1)
    pts2 = pts1 + uniform((n, 3, 2), -bound, bound, gen, device)
    # warpAffine samples dst(p) = src(M^-1 p); M^-1 is the affine map taking pts2 onto pts1.
    ones = torch.ones((n, 3, 1), device=device)
    inv = torch.linalg.solve(torch.cat([pts2, ones], 2).double(), pts1.double().expand(n, 3, 2)).float()  # (N,3,2)
    ys, xs = torch.meshgrid(torch.arange(h, device=device, dtype=torch.float32),
                            torch.arange(w, device=device, dtype=torch.float32), indexing="ij")
    grid = torch.stack([xs, ys, torch.ones_like(xs)], -1).reshape(1, h * w, 3)
    # OpenCV >= 5 (the CPU engine) samples at the exact positions; OpenCV 3/4 rounded them to 1/32 px.
    src = (grid @ inv).reshape(n, h, w, 2)
    return src[..., 1], src[..., 0]


def elastic_transform(x: torch.Tensor, sevs: list[int], table: tuple, gen: torch.Generator | None,
                      profile: str) -> torch.Tensor:
    """Random three-point affine (REFLECT_101) then a smoothed random displacement field (half-sample reflect)."""
    n, _, h, w = x.shape
    rows, cols = _affine_sources(per_sample([c[2] for c in table], sevs, x.device), h, w, gen)
    img = bilinear_gather(x, rows, cols, "reflect101")
    noise = uniform((n, 2, h, w), -1.0, 1.0, gen, x.device)  # dx, then dy
    fields = gaussian_blur(noise, [c[1] for c in table], sevs, mode="reflect", truncate=3.0)
    fields = fields * column(per_sample([c[0] for c in table], sevs, x.device))
    grid_r = torch.arange(h, device=x.device, dtype=torch.float32)[:, None]
    grid_c = torch.arange(w, device=x.device, dtype=torch.float32)[None, :]
    out = bilinear_gather(img, grid_r + fields[:, 1], grid_c + fields[:, 0], "reflect")
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
    down_h, up_h = (_batched(pick(m, sevs)) for m in pil_box_stack(h, tuple(int(h * c) for c in table), x.device))
    down_w, up_w = (_batched(pick(m, sevs)) for m in pil_box_stack(w, tuple(int(w * c) for c in table), x.device))
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
    scale, offset = (column(per_sample([c[i] for c in table], sevs, x.device)) for i in (0, 1))
    hsv = rgb_to_hsv(x)
    hsv[:, 1:2] = (hsv[:, 1:2] * scale + offset).clamp_(0, 1)
    return hsv_to_rgb(hsv).clamp_(0, 1).mul_(255)


OPS = {
    "contrast": contrast,
    "elastic_transform": elastic_transform,
    "pixelate": pixelate,
    "jpeg_compression": jpeg_compression,
    "saturate": saturate,
}
