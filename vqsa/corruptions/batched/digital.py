"""Digital corruptions, batched: contrast, elastic transform, pixelate, JPEG compression and saturate.

Each op maps a float32 batch (N, 3, H, W) in [0, 1] to float32 values in [0, 255] (before the uint8 truncation).
Pixelate and JPEG work on 8-bit values as Pillow does (float inputs are rounded to 1/255 steps for these two).
"""
from __future__ import annotations

import warnings

import torch
from torchvision.io import decode_jpeg, encode_jpeg

from ._linear import gaussian_blur2d, pil_box_matrix
from ._ops import bilinear_gather, hsv_to_rgb, rgb_to_hsv, uniform

def contrast(x: torch.Tensor, c: float, gen: torch.Generator | None, profile: str) -> torch.Tensor:
    """``(x - m) c + m`` with m the per-image, per-channel mean."""
    m = x.mean((2, 3), keepdim=True)
    return ((x - m) * c + m).clamp_(0, 1).mul_(255)


def _affine_sources(n: int, h: int, w: int, max_shift: float, gen: torch.Generator | None,
                    device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Source (rows, cols) (N, H, W) of the reference's random three-point affine warp (cv2 convention)."""
    cx, cy, half = float(w // 2), float(h // 2), float(min(h, w) // 3)
    pts1 = torch.tensor([[cx + half, cy + half], [cx + half, cy - half], [cx - half, cy - half]], device=device)
    pts2 = pts1 + uniform((n, 3, 2), -max_shift, max_shift, gen, device)
    # warpAffine samples dst(p) = src(M^-1 p); M^-1 is the affine map taking pts2 onto pts1.
    ones = torch.ones((n, 3, 1), device=device)
    inv = torch.linalg.solve(torch.cat([pts2, ones], 2).double(), pts1.double().expand(n, 3, 2)).float()  # (N,3,2)
    ys, xs = torch.meshgrid(torch.arange(h, device=device, dtype=torch.float32),
                            torch.arange(w, device=device, dtype=torch.float32), indexing="ij")
    grid = torch.stack([xs, ys, torch.ones_like(xs)], -1).reshape(1, h * w, 3)
    # OpenCV >= 5 (the CPU engine) samples at the exact positions; OpenCV 3/4 rounded them to 1/32 px.
    src = (grid @ inv).reshape(n, h, w, 2)
    return src[..., 1], src[..., 0]


def elastic_transform(x: torch.Tensor, c: tuple, gen: torch.Generator | None, profile: str) -> torch.Tensor:
    """Random three-point affine (REFLECT_101) then a smoothed random displacement field (half-sample reflect)."""
    alpha, sigma, max_shift = c
    n, _, h, w = x.shape
    rows, cols = _affine_sources(n, h, w, max_shift, gen, x.device)
    img = bilinear_gather(x, rows, cols, "reflect101")
    fields = gaussian_blur2d(uniform((2, n, h, w), -1.0, 1.0, gen, x.device), sigma, mode="reflect", truncate=3.0)
    dx, dy = fields * alpha
    grid_r = torch.arange(h, device=x.device, dtype=torch.float32)[:, None]
    grid_c = torch.arange(w, device=x.device, dtype=torch.float32)[None, :]
    return bilinear_gather(img, grid_r + dy, grid_c + dx, "reflect").clamp_(0, 1).mul_(255)


def _round8(v: torch.Tensor) -> torch.Tensor:
    return torch.floor(v + 0.5).clamp_(0, 255)


def pixelate(x: torch.Tensor, c: float, gen: torch.Generator | None, profile: str) -> torch.Tensor:
    """Pillow BOX down-sampling to ``int(side * c)`` then BOX (= nearest) up-sampling, 8-bit rounding per pass."""
    n, ch, h, w = x.shape
    sh, sw = int(h * c), int(w * c)
    v = _round8(x * 255)
    v = _round8(v @ pil_box_matrix(w, sw, x.device).T)  # Pillow resizes horizontally first
    v = _round8(pil_box_matrix(h, sh, x.device) @ v)
    v = v @ pil_box_matrix(sw, w, x.device).T
    return pil_box_matrix(sh, h, x.device) @ v


def jpeg_compression(x: torch.Tensor, c: int, gen: torch.Generator | None, profile: str) -> torch.Tensor:
    """JPEG round trip at quality ``c`` through torchvision (nvJPEG on CUDA tensors, libjpeg on the CPU)."""
    u8 = _round8(x * 255).to(torch.uint8)
    with warnings.catch_warnings():  # torchvision >= 0.29 flags its JPEG codec as deprecated (moving to TorchCodec)
        warnings.filterwarnings("ignore", message=".*encoding capabilities of TorchVision", category=DeprecationWarning)
        encoded = encode_jpeg(list(u8.unbind(0)), quality=int(c))
        decoded = decode_jpeg(encoded, device=x.device)
    return torch.stack(decoded).to(torch.float32)


def saturate(x: torch.Tensor, c: tuple, gen: torch.Generator | None, profile: str) -> torch.Tensor:
    """HSV saturation ``S * c0 + c1`` (clipped), skimage colour maths."""
    hsv = rgb_to_hsv(x)
    hsv[:, 1].mul_(c[0]).add_(c[1]).clamp_(0, 1)
    return hsv_to_rgb(hsv).clamp_(0, 1).mul_(255)


OPS = {
    "contrast": contrast,
    "elastic_transform": elastic_transform,
    "pixelate": pixelate,
    "jpeg_compression": jpeg_compression,
    "saturate": saturate,
}
