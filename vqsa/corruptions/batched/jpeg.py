"""Baseline JPEG round trip in integer torch ops, as Pillow (libjpeg-turbo) saves and loads it.

ImageNet-C's JPEG corruption is ``PIL.Image.save(format="JPEG", quality=q)`` then ``PIL.Image.open``: libjpeg
defaults, i.e. YCbCr with 4:2:0 chroma subsampling, the Annex K tables scaled by ``q`` (baseline, capped at 255),
the "islow" integer DCT both ways and "fancy" (triangle) chroma upsampling. Every one of those steps is integer
arithmetic, so it is reproduced here step for step on (N, 3, H, W) tensors on any device, with one quality per
image: the output equals Pillow's bit for bit (tested), with no host round trip and no synchronisation. Entropy
coding is lossless and therefore skipped. nvJPEG is not an alternative: torchvision's GPU encoder uses 4:4:4
sampling, a milder corruption than ImageNet-C's.
"""
from __future__ import annotations

import functools
from collections.abc import Sequence

import torch

from ._ops import to_device

_LUMA = (
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
)
_CHROMA = (
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99, 99,
    47, 66, 99, 99, 99, 99, 99, 99, *([99] * 32),
)
"""The example quantisation tables of the JPEG standard (Annex K), in natural (row-major) order."""

CONST_BITS, PASS1_BITS = 13, 2
"""Fixed-point precision of the islow DCT: 13-bit constants, 2 extra bits kept between the two passes."""


def _fix(x: float, bits: int = CONST_BITS) -> int:
    return int(x * (1 << bits) + 0.5)


_C = {name: _fix(v) for name, v in {
    "0_298": 0.298631336, "0_390": 0.390180644, "0_541": 0.541196100, "0_765": 0.765366865,
    "0_899": 0.899976223, "1_175": 1.175875602, "1_501": 1.501321110, "1_847": 1.847759065,
    "1_961": 1.961570560, "2_053": 2.053119869, "2_562": 2.562915447, "3_072": 3.072711026}.items()}


def quant_tables(qualities: Sequence[int]) -> torch.Tensor:
    """(N, 2, 8, 8) luma / chroma tables for each quality 1..100 (libjpeg's scaling, baseline-capped)."""
    rows = []
    for q in qualities:
        q = min(max(int(q), 1), 100)
        scale = 5000 // q if q < 50 else 200 - 2 * q
        rows.append([[min(max((b * scale + 50) // 100, 1), 255) for b in base] for base in (_LUMA, _CHROMA)])
    return torch.tensor(rows, dtype=torch.int64).reshape(len(rows), 2, 8, 8)


def _odd(t4, t5, t6, t7):
    """The odd-part rotations shared by the forward and inverse islow DCTs (Loeffler-Ligtenberg-Moschytz)."""
    z1, z2, z3, z4 = t4 + t7, t5 + t6, t4 + t6, t5 + t7
    z5 = (z3 + z4) * _C["1_175"]
    z1, z2 = z1 * -_C["0_899"], z2 * -_C["2_562"]
    z3, z4 = z3 * -_C["1_961"] + z5, z4 * -_C["0_390"] + z5
    return (t4 * _C["0_298"] + z1 + z3, t5 * _C["2_053"] + z2 + z4,
            t6 * _C["3_072"] + z2 + z3, t7 * _C["1_501"] + z1 + z4)


def _fdct_sums(d):
    """One islow forward-DCT pass of 8 samples up to its final rounding shift: integer linear combinations.

    libjpeg shifts outputs 0 and 4 left by PASS1_BITS (first pass) or rounds them by PASS1_BITS (second pass) and
    the others by CONST_BITS -/+ PASS1_BITS; scaling 0 and 4 by 2**CONST_BITS gives every output the same shift.
    """
    t0, t7, t1, t6 = d[0] + d[7], d[0] - d[7], d[1] + d[6], d[1] - d[6]
    t2, t5, t3, t4 = d[2] + d[5], d[2] - d[5], d[3] + d[4], d[3] - d[4]
    t10, t13, t11, t12 = t0 + t3, t0 - t3, t1 + t2, t1 - t2
    z1 = (t12 + t13) * _C["0_541"]
    o7, o5, o3, o1 = _odd(t4, t5, t6, t7)
    return ((t10 + t11) << CONST_BITS, o1, z1 + t13 * _C["0_765"], o3, (t10 - t11) << CONST_BITS, o5,
            z1 - t12 * _C["1_847"], o7)


def _idct_sums(d):
    """One islow inverse-DCT pass of 8 coefficients up to its final rounding shift (integer linear combinations)."""
    z1 = (d[2] + d[6]) * _C["0_541"]
    t2, t3 = z1 - d[6] * _C["1_847"], z1 + d[2] * _C["0_765"]
    t0, t1 = (d[0] + d[4]) << CONST_BITS, (d[0] - d[4]) << CONST_BITS
    t10, t13, t11, t12 = t0 + t3, t0 - t3, t1 + t2, t1 - t2
    o0, o1, o2, o3 = _odd(d[7], d[5], d[3], d[1])
    return (t10 + o3, t11 + o2, t12 + o1, t13 + o0, t13 - o0, t12 - o1, t11 - o2, t10 - o3)


@functools.lru_cache(maxsize=32)
def _matrix(kind: str, device: torch.device) -> torch.Tensor:
    """(8, 8) float64 integer matrix of a DCT pass before its rounding shift (exact: every sum stays < 2**53),
    built once per device."""
    sums = _fdct_sums if kind == "fdct" else _idct_sums
    eye = [[int(i == j) for j in range(8)] for i in range(8)]
    return torch.tensor([list(sums(col)) for col in eye], dtype=torch.float64).T.contiguous().to(device)


def _pass(x: torch.Tensor, kind: str, dim: int, shift: int) -> torch.Tensor:
    """One DCT pass along ``dim`` (-1: rows, -2: columns) of (..., 8, 8) blocks, then libjpeg's DESCALE."""
    m = _matrix(kind, x.device)
    return _shr((x @ m.T if dim == -1 else m @ x) + (1 << (shift - 1)), shift)


def _shr(x: torch.Tensor, n: int) -> torch.Tensor:
    """Arithmetic right shift of integer-valued float64 (exact: scaling by a power of two, then floor)."""
    return torch.floor(x * (1.0 / (1 << n)))


def _range_limit(x: torch.Tensor) -> torch.Tensor:
    """libjpeg's post-IDCT range limit: ``x + 128`` clamped to [0, 255], looked up modulo 1024 as its table is."""
    k = torch.remainder(x, 1024)
    return torch.where(k < 512, (k + 128).clamp_(max=255), (k - 896).clamp_(min=0))


def _replicate(x: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """Extend the last two axes to ``rows`` x ``cols`` by repeating the last row / column."""
    h, w = x.shape[-2:]
    if rows > h:
        x = torch.cat([x, x[..., -1:, :].expand(*x.shape[:-2], rows - h, w)], -2)
    if cols > w:
        x = torch.cat([x, x[..., -1:].expand(*x.shape[:-1], cols - w)], -1)
    return x


def _blocks(x: torch.Tensor) -> torch.Tensor:
    """(N, C, 8a, 8b) -> (N, C, a, b, 8, 8)."""
    n, c, h, w = x.shape
    return x.reshape(n, c, h // 8, 8, w // 8, 8).transpose(3, 4)


def _unblocks(x: torch.Tensor) -> torch.Tensor:
    n, c, a, b = x.shape[:4]
    return x.transpose(3, 4).reshape(n, c, a * 8, b * 8)


def _quantize_roundtrip(planes: torch.Tensor, tables: torch.Tensor) -> torch.Tensor:
    """Level shift, forward DCT, quantise (rounding half away from zero), dequantise, inverse DCT, range limit.

    ``planes`` (N, C, 8a, 8b) samples; ``tables`` (N, 1 or C, 8, 8) quantisation steps; both float64.
    """
    coef = _pass(_pass(_blocks(planes - 128), "fdct", -1, CONST_BITS - PASS1_BITS),  # rows, then columns;
                 "fdct", -2, CONST_BITS + PASS1_BITS)  # the coefficients come out scaled by 8
    q = tables[:, :, None, None]
    level = torch.floor((coef.abs() + 4 * q) / (8 * q)).copysign_(coef)  # exact: |coef| < 2**17, q <= 255
    pixels = _pass(_pass(level * q, "idct", -2, CONST_BITS - PASS1_BITS),  # columns, then rows
                   "idct", -1, CONST_BITS + PASS1_BITS + 3)
    return _unblocks(_range_limit(pixels))


def _rgb_to_ycc(rgb: torch.Tensor) -> torch.Tensor:
    """libjpeg's 16-bit fixed-point RGB -> YCbCr on (N, 3, H, W)."""
    r, g, b = rgb.unbind(1)
    half, offset = 1 << 15, 128 << 16
    y = _shr(_fix(0.29900, 16) * r + _fix(0.58700, 16) * g + _fix(0.11400, 16) * b + half, 16)
    cb = _shr(-_fix(0.16874, 16) * r - _fix(0.33126, 16) * g + _fix(0.5, 16) * b + (offset + half - 1), 16)
    cr = _shr(_fix(0.5, 16) * r - _fix(0.41869, 16) * g - _fix(0.08131, 16) * b + (offset + half - 1), 16)
    return torch.stack([y, cb, cr], 1)


def _ycc_to_rgb(y: torch.Tensor, cb: torch.Tensor, cr: torch.Tensor) -> torch.Tensor:
    """libjpeg's table-based YCbCr -> RGB (16-bit fixed point), clamped to [0, 255]."""
    half = 1 << 15
    cb, cr = cb - 128, cr - 128
    r = y + _shr(_fix(1.40200, 16) * cr + half, 16)
    g = y + _shr(-_fix(0.34414, 16) * cb - _fix(0.71414, 16) * cr + half, 16)
    b = y + _shr(_fix(1.77200, 16) * cb + half, 16)
    return torch.stack([r, g, b], 1).clamp_(0, 255)


def _downsample(c: torch.Tensor) -> torch.Tensor:
    """h2v2 box average with libjpeg's alternating rounding bias (1, 2, 1, 2, ...) along each output row."""
    s = c[..., 0::2, 0::2] + c[..., 0::2, 1::2] + c[..., 1::2, 0::2] + c[..., 1::2, 1::2]
    bias = torch.arange(s.shape[-1], device=c.device, dtype=c.dtype).remainder_(2).add_(1)
    return _shr(s + bias, 2)


def _upsample(c: torch.Tensor) -> torch.Tensor:
    """h2v2 "fancy" (triangle) upsampling: 9/16, 3/16, 3/16, 1/16 with libjpeg's rounding, edges replicated."""
    up = torch.cat([c[..., :1, :], c[..., :-1, :]], -2)
    down = torch.cat([c[..., 1:, :], c[..., -1:, :]], -2)
    sums = torch.stack([3 * c + up, 3 * c + down], -2).flatten(-3, -2)  # (.., 2h, w) column sums per output row
    left = torch.cat([sums[..., :1], sums[..., :-1]], -1)
    right = torch.cat([sums[..., 1:], sums[..., -1:]], -1)
    return _shr(torch.stack([3 * sums + left + 8, 3 * sums + right + 7], -1).flatten(-2), 4)


def jpeg_roundtrip(images: torch.Tensor, qualities: Sequence[int]) -> torch.Tensor:
    """Pillow's ``save(format="JPEG", quality=q)`` + decode of each image, on the images' device.

    Args:
        images: (N, 3, H, W) uint8 (or integer-valued) RGB.
        qualities: one JPEG quality 1..100 per image.

    Returns:
        (N, 3, H, W) uint8, equal to Pillow's round trip (libjpeg-turbo, default settings).

    Every value is an integer held exactly in float64 (the DCT passes are float64 matrix products, exact because
    their sums stay far below 2**53), so the arithmetic is libjpeg's bit for bit on CPUs and GPUs alike.
    """
    n, _, h, w = images.shape
    if len(qualities) != n:
        raise ValueError(f"{len(qualities)} qualities for {n} images")
    tables = to_device(quant_tables(qualities).to(torch.float64), images.device)
    ycc = _rgb_to_ycc(images.to(torch.float64))
    hb, wb = -(-h // 8), -(-w // 8)  # luma blocks
    ch, cw = -(-h // 2), -(-w // 2)  # chroma samples
    chb, cwb = -(-h // 16), -(-w // 16)  # chroma blocks
    luma = _quantize_roundtrip(_replicate(ycc[:, :1], hb * 8, wb * 8), tables[:, :1])
    chroma = _downsample(_replicate(ycc[:, 1:], 2 * ch, 16 * cwb))
    chroma = _quantize_roundtrip(_replicate(chroma, chb * 8, 8 * cwb), tables[:, 1:])
    chroma = _upsample(chroma[..., :ch, :cw])[..., :h, :w]
    return _ycc_to_rgb(luma[:, 0, :h, :w], chroma[:, 0], chroma[:, 1]).to(torch.uint8)
