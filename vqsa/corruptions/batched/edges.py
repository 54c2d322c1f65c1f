"""Spatter's "wet edge" map as batched torch ops, equal to the reference's OpenCV chain image by image.

The reference (water mode of ``spatter``) turns an 8-bit liquid layer ``l8`` into::

    dist = cv2.distanceTransform(255 - cv2.Canny(l8, 50, 150), cv2.DIST_L2, 5)
    _, dist = cv2.threshold(dist, 20, 20, cv2.THRESH_TRUNC)
    dist = cv2.equalizeHist(cv2.blur(dist, (3, 3)).astype(np.uint8))
    dist = cv2.filter2D(dist, cv2.CV_8U, np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]]))
    return cv2.blur(dist, (3, 3)).astype(np.float32)

:func:`wet_edges` computes the same map for a batch (N, H, W) on any device, one small function per OpenCV call.
Everything is vectorised over the batch and the pixels; the only Python loops run over a fixed number of kernel taps
or propagation steps. The one data-dependent part is Canny's hysteresis: it grows in blocks of
``check_every`` steps with one host synchronisation (a convergence test) per block.

Exactness: every stage reproduces its OpenCV counterpart bit for bit (see the tests). The distance transform is the
subtle one: the installed OpenCV (opencv-python 5.0.0, an IPP build) sums the float32 chamfer weights 1, 1.4 and
2.1969 along each path in the order of its two raster passes, so paths of equal length can end one float32 ulp apart
depending on their direction. :func:`distance_transform_trunc` reproduces this with integer path costs in three
direction classes and a look-up table measured once (per device, on first use) from ``cv2.distanceTransform`` itself
and checked there; an OpenCV build that breaks those checks raises instead of silently differing.
"""
from __future__ import annotations

import functools
import warnings

import numpy as np
import torch
import torch.nn.functional as F

from ._ops import border_index

CANNY_LOW = 50
CANNY_HIGH = 150
EDGE_KERNEL = ((-2, -1, 0), (-1, 1, 1), (0, 1, 2))
"""The reference's ``filter2D`` kernel (correlation, anchor at the centre)."""

_TG22 = 13573
"""OpenCV Canny's ``(int)(tan(22.5 deg) * 2**15 + 0.5)``."""

# Integer chamfer path costs. 50 : 70 : 109 orders every combination of at most 20 axis moves (1), 14 diagonal moves
# (1.4) and 9 knight moves (2.1969) exactly as the real weights do (same ties, same strict inequalities; brute-forced
# offline, and the consequence that matters is checked against OpenCV when the tables are built), and cost 20 * 50
# is exactly the truncation threshold 20. int16 holds every value of the propagation (< _CAP + 8 * 109).
_W_AXIS, _W_DIAG, _W_KNIGHT = 50, 70, 109
_CAP = 20 * _W_AXIS
_PAD = 16  # the largest shift of a propagation step (16 axis steps, or knight steps (8, 16))
_UNIT_BITS = 23  # distances as int32 multiples of 2**-23: exact for OpenCV's float32 distances (0 or in [1, 20])
_RANK = (1, 0, 2)  # class tie order: at one integer cost, OpenCV's distances order beta <= alpha <= gamma
_AXIS = ((0, 1), (0, -1), (1, 0), (-1, 0))
_DIAG = ((1, 1), (1, -1), (-1, 1), (-1, -1))
_KNIGHT7 = ((1, 2), (2, 1), (2, -1), (-1, 2), (-1, -2), (-2, 1), (-2, -1))  # every knight step but (1, -2)


# ----------------------------------------------------------------------------------------------------------------------
# Borders


def _pad1(x: torch.Tensor, border: str) -> torch.Tensor:
    """Pad the last two axes of (N, H, W) by one pixel: "replicate" (BORDER_REPLICATE) or "reflect101" (OpenCV's
    BORDER_REFLECT_101, its default: gfedcb|abcdefgh|gfedcba). Integer dtypes included (as index gathers: padding
    kernels do not support integer dtypes on every device)."""
    def index(n: int) -> torch.Tensor:  # built on the device: no host-to-device copy
        return border_index(torch.arange(-1, n + 1, device=x.device), n, border)

    return x.index_select(-2, index(x.shape[-2])).index_select(-1, index(x.shape[-1]))


def _box_sum3(x: torch.Tensor) -> torch.Tensor:
    """Sum over each 3x3 window, border REFLECT_101 (OpenCV's default); (N, H, W) integer -> same dtype."""
    p = _pad1(x, "reflect101")
    rows = p[:, :, :-2] + p[:, :, 1:-1]
    rows += p[:, :, 2:]
    out = rows[:, :-2] + rows[:, 1:-1]
    out += rows[:, 2:]
    return out


# ----------------------------------------------------------------------------------------------------------------------
# 1. Canny


def sobel(img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Canny's gradients: ``cv2.Sobel(img, CV_16S, 1, 0 / 0, 1, ksize=3, borderType=BORDER_REPLICATE)``.

    ``img`` (N, H, W) with integer values 0..255 (uint8 or float) -> (dx, dy) int16, as separable integer sums.
    """
    p = _pad1(img.to(torch.int16), "replicate")
    diff = p[:, :, 2:] - p[:, :, :-2]  # [-1, 0, 1] along x
    dx = diff[:, 1:-1] * 2
    dx += diff[:, :-2]
    dx += diff[:, 2:]
    smooth = p[:, :, 1:-1] * 2  # [1, 2, 1] along x
    smooth += p[:, :, :-2]
    smooth += p[:, :, 2:]
    dy = smooth[:, 2:] - smooth[:, :-2]
    return dx, dy


def canny_candidates(dx: torch.Tensor, dy: torch.Tensor, low: int = CANNY_LOW,
                     high: int = CANNY_HIGH) -> tuple[torch.Tensor, torch.Tensor]:
    """Canny's non-maximum suppression and double threshold (L1 gradient), as OpenCV's ``canny.cpp``.

    Magnitude ``m = |dx| + |dy|`` (0 outside the image). With ``x = |dx|``, ``y = |dy| << 15`` and
    ``t = x * 13573``: ``y < t`` compares m with the left (strictly greater) and right (greater or equal) neighbours,
    ``y > t + (x << 16)`` with the upper (strictly) and lower (or equal) ones, anything else with the two diagonal
    neighbours (both strictly): upper-left and lower-right when dx and dy have the same sign bit, else upper-right
    and lower-left. Returns bool (weak, strong): weak = local maximum with ``m > low``, strong = weak with
    ``m > high``. dx, dy: int16 (|d| <= 1020); the direction tests run in int32 (y < 2**25, t + (x << 16) < 2**27).
    """
    ax, ay = dx.abs(), dy.abs()
    mag = ax + ay
    h, w = mag.shape[-2:]
    padded = F.pad(mag, (1, 1, 1, 1))

    def nb(di: int, dj: int) -> torch.Tensor:
        return padded[:, 1 + di:1 + di + h, 1 + dj:1 + dj + w]

    ax, ay = ax.to(torch.int32), ay.to(torch.int32) * (1 << 15)
    horizontal = ay < ax * _TG22
    vertical = ay > ax * (_TG22 + (1 << 16))
    anti = (dx ^ dy) < 0  # OpenCV's s = -1: the sign bits differ
    along_h = (mag > nb(0, -1)) & (mag >= nb(0, 1))
    along_v = (mag > nb(-1, 0)) & (mag >= nb(1, 0))
    along_d = torch.where(anti, (mag > nb(-1, 1)) & (mag > nb(1, -1)), (mag > nb(-1, -1)) & (mag > nb(1, 1)))
    weak = torch.where(horizontal, along_h, torch.where(vertical, along_v, along_d))
    weak &= mag > low
    return weak, weak & (mag > high)


def hysteresis(weak: torch.Tensor, strong: torch.Tensor, check_every: int = 8) -> torch.Tensor:
    """Canny's edge tracking: the ``weak`` pixels 8-connected (through weak pixels) to a ``strong`` one.

    Iterated 3x3 dilation of the edge set, restricted to ``weak``; it stops at the first step that changes nothing,
    which is exactly OpenCV's stack-based tracking result. To avoid a host synchronisation per step it runs
    ``check_every`` steps between convergence tests (one ``torch.equal`` each). bool (N, H, W) -> bool (N, H, W).
    """
    if check_every < 1:
        raise ValueError(f"hysteresis: check_every must be >= 1, got {check_every}")
    n, h, w = weak.shape
    buf = torch.zeros((n, h + 2, w + 2), dtype=torch.bool, device=weak.device)  # a frame of non-edges
    edges = buf[:, 1:-1, 1:-1]
    edges.copy_(strong)
    while True:
        for step in range(check_every):
            if step == check_every - 1:
                prev = edges.clone()
            rows = buf[:, :, :-2] | buf[:, :, 1:-1]
            rows |= buf[:, :, 2:]
            grown = rows[:, :-2] | rows[:, 1:-1]
            grown |= rows[:, 2:]
            torch.logical_and(grown, weak, out=edges)
        if torch.equal(edges, prev):
            return edges


def canny(img: torch.Tensor, low: int = CANNY_LOW, high: int = CANNY_HIGH, check_every: int = 8) -> torch.Tensor:
    """``cv2.Canny(img, low, high) == 255`` for (N, H, W) integer-valued images (uint8 or float) -> bool."""
    dx, dy = sobel(img)
    weak, strong = canny_candidates(dx, dy, low, high)
    return hysteresis(weak, strong, check_every)


# ----------------------------------------------------------------------------------------------------------------------
# 2. Distance transform


def _steps(weight: int) -> int:
    """Doubling steps that reach every step count ``t`` with ``t * weight < _CAP`` (t = 0 .. 2**steps - 1)."""
    return ((_CAP - 1) // weight).bit_length()


def _propagate(buf: torch.Tensor, dirs: tuple[tuple[int, int], ...], weight: int) -> None:
    """In place: ``inner(p) = min(inner(p), min_t,d buf(p - t d) + t weight)`` for steps d in ``dirs``, t < 2**steps.

    ``buf`` is (N, H + 2P, W + 2P) int16 whose P-wide frame holds ``_CAP`` (outside the image, never improves a
    value). Step k is one min-plus update with the offsets ``2**k d``; composing them gives every count t in binary.
    """
    h, w = buf.shape[1] - 2 * _PAD, buf.shape[2] - 2 * _PAD
    inner = buf[:, _PAD:_PAD + h, _PAD:_PAD + w]
    for k in range(_steps(weight)):
        best = None
        for dy, dx in dirs:  # the value at p - 2**k d, for each direction
            v = buf[:, _PAD - (dy << k):_PAD - (dy << k) + h, _PAD - (dx << k):_PAD - (dx << k) + w]
            best = v if best is None else torch.minimum(best, v)
        torch.minimum(inner, best + (weight << k), out=inner)


def _class_costs(edges: torch.Tensor) -> list[torch.Tensor]:
    """Integer chamfer costs from the edge pixels, one map per direction class (alpha, beta, gamma); int16 (N, H, W).

    The 5x5 chamfer metric's shortest path from an edge pixel q to p uses only the two move directions adjacent to
    ``p - q`` (16 directions: 4 axis, 4 diagonal, 8 knight; the unit ball is a convex 16-gon): t1 moves along one and
    t2 along the other, monotone, so every order of them stays in the bounding box of p and q, i.e. in the image.
    A cost below 20 needs at most 19 axis, 14 diagonal or 9 knight moves, hence 5, 4 and 4 doubling steps.

    OpenCV adds the float32 weights in the order its forward (raster) then backward pass visits them, which gives
    three classes of sectors with a consistent float value per integer cost:

    * alpha: axis + knight sectors, but for the one between knight (1, -2) and axis (0, -1);
    * beta: diagonal + knight sectors;
    * gamma: the knight (1, -2) + axis (0, -1) sector, the only one whose float sum is forced to add the knights first.

    Each class map is the min-plus closure over that class's own move directions only (knights first, then the other
    family; the order does not matter). No class holds both directions of another class's sector, so a class path
    as short as its displacement's shortest path lies in the class's own sectors; any other class path costs at
    least one unit more, and after the look-up never undercuts the true minimum (the order is checked when the table
    is built). The class holding the nearest edge pixel gives its exact value.
    """
    n, h, w = edges.shape
    base = torch.full((n, h + 2 * _PAD, w + 2 * _PAD), _CAP, dtype=torch.int16, device=edges.device)
    base[:, _PAD:_PAD + h, _PAD:_PAD + w].masked_fill_(edges, 0)
    alpha = base.clone()
    _propagate(alpha, _KNIGHT7, _W_KNIGHT)
    gamma = base
    _propagate(gamma, ((1, -2),), _W_KNIGHT)
    beta = torch.minimum(alpha, gamma)  # all 8 knight directions
    _propagate(beta, _DIAG, _W_DIAG)
    _propagate(alpha, _AXIS, _W_AXIS)
    _propagate(gamma, ((0, -1),), _W_AXIS)
    return [c[:, _PAD:_PAD + h, _PAD:_PAD + w] for c in (alpha, beta, gamma)]


@functools.cache
def _distance_table(device: torch.device) -> torch.Tensor:
    """int32 (4 * (_CAP + 1),): OpenCV's float32 distance, in units of 2**-23, of class code ``4 * cost + rank``.

    The distances are measured once from ``cv2.distanceTransform`` of a single edge pixel (41 x 41: every
    displacement with a distance below 20) against the class costs of the same image, and checked: within a class,
    one value per cost; at one cost, the classes order as ``_RANK``; across costs, a smaller cost always means a
    strictly smaller distance, so integer minima pick OpenCV's minima. Codes never met are 20.
    """
    import cv2

    r = 20
    src = np.full((2 * r + 1, 2 * r + 1), 255, np.uint8)
    src[r, r] = 0
    ref = cv2.distanceTransform(src, cv2.DIST_L2, 5).astype(np.float64)
    edge = torch.zeros((1, 2 * r + 1, 2 * r + 1), dtype=torch.bool)
    edge[0, r, r] = True
    costs = torch.stack(_class_costs(edge))[:, 0].numpy().astype(np.int64)
    best = costs.min(0)
    near = best < _CAP
    dist = np.full(4 * (_CAP + 1), 20.0)
    for cls, rank in enumerate(_RANK):
        own = near & (costs[cls] == best)
        codes = 4 * costs[cls][own] + rank
        dist[codes] = ref[own]
        if not np.array_equal(dist[codes], ref[own]):
            raise RuntimeError("cv2.distanceTransform(DIST_L2, 5): one class and cost, two values; unsupported build")
    by_cost = dist.reshape(-1, 4)[:, :3]
    known = by_cost < 20
    per_cost_min = np.where(known, by_cost, np.inf).min(1)
    per_cost_max = np.where(known, by_cost, -np.inf).max(1)
    ranked = all(np.all(by_cost[known[:, i] & known[:, j], i] <= by_cost[known[:, i] & known[:, j], j])
                 for i, j in ((0, 1), (0, 2), (1, 2)))
    present = np.flatnonzero(known.any(1))
    ordered = np.all(per_cost_max[present[:-1]] < per_cost_min[present[1:]])
    if not (ranked and ordered and np.all(ref[~near] >= 20)):
        raise RuntimeError("cv2.distanceTransform(DIST_L2, 5) does not follow the 1 / 1.4 / 2.1969 chamfer order")
    units = (dist * 2.0**_UNIT_BITS).astype(np.int32)
    assert np.array_equal(units * 2.0**-_UNIT_BITS, dist)
    return torch.from_numpy(units).to(device)


@functools.cache
def matches_opencv() -> bool:
    """Whether the installed OpenCV's distance transform is one :func:`wet_edges` reproduces (checked once, on the
    host); if not, a warning names the problem and callers should use OpenCV itself."""
    try:
        _distance_table(torch.device("cpu"))
    except RuntimeError as e:
        warnings.warn(f"batched spatter falls back to OpenCV on the host: {e}", RuntimeWarning, stacklevel=2)
        return False
    return True


def _distance_units(edges: torch.Tensor) -> torch.Tensor:
    """The truncated distance map of ``edges`` (bool (N, H, W)) as int32 multiples of 2**-23 (exact, below 2**28)."""
    units = _distance_table(edges.device)
    code = None
    for cost, rank in zip(_class_costs(edges), _RANK):
        c = cost * 4
        if rank:
            c += rank
        code = c if code is None else torch.minimum(code, c, out=code)
    return units[code.to(torch.int32)]


def distance_transform_trunc(edges: torch.Tensor) -> torch.Tensor:
    """``cv2.threshold(cv2.distanceTransform(where(edges, 0, 255), DIST_L2, 5), 20, 20, THRESH_TRUNC)``.

    ``edges`` bool (N, H, W) -> float32 (N, H, W), OpenCV's values: 20 where no edge pixel is nearer than 20,
    including images without any edge. OpenCV treats the outside of the image as unreachable, and so does the
    propagation (its frame never improves a value).
    """
    return _distance_units(edges).to(torch.float32) * 2.0**-_UNIT_BITS


# ----------------------------------------------------------------------------------------------------------------------
# 3.-5. Box filters, histogram equalisation, filter2D


def _blur_units_to_u8(units: torch.Tensor) -> torch.Tensor:
    # exact sum (< 2**31) -> double, times the double 1/9 (with the exact 2**-23), -> float32, truncated
    mean = (_box_sum3(units).to(torch.float64) * (2.0**-_UNIT_BITS / 9)).to(torch.float32)
    return mean.to(torch.uint8)


def blur_to_u8(dist: torch.Tensor) -> torch.Tensor:
    """``cv2.blur(dist, (3, 3)).astype(np.uint8)`` for truncated distance maps: float32 (N, H, W) -> uint8.

    Values must be multiples of 2**-23 in [0, 20] (all of OpenCV's distances are: 0 or >= 1). OpenCV sums the box
    in double (exact), multiplies by the double 1/9, rounds to float32, and numpy truncates. Here the exact sum is
    an int32 count of 2**-23, then the same double product (scaling by 2**-23 commutes with the rounding).
    """
    return _blur_units_to_u8((dist.to(torch.float64) * 2.0**_UNIT_BITS).to(torch.int32))


def equalize_hist(img: torch.Tensor) -> torch.Tensor:
    """``cv2.equalizeHist`` of each image: uint8 (N, H, W) -> uint8 (N, H, W).

    Per image: histogram, cumulative sum ``cdf``, ``h0`` = count of the lowest grey level present,
    ``lut[v] = round_half_even(float32(cdf[v] - h0) * (255.f / float32(total - h0)))``; a constant image is kept
    as is.
    """
    n = img.shape[0]
    flat = img.reshape(n, -1).to(torch.int64)
    total = flat.shape[1]
    ones = torch.ones((1, 1), dtype=torch.int32, device=img.device).expand_as(flat)
    hist = torch.zeros((n, 256), dtype=torch.int32, device=img.device).scatter_add_(1, flat, ones)
    cdf = hist.cumsum(1, dtype=torch.int32)
    h0 = torch.where(cdf > 0, cdf, total + 1).amin(1, keepdim=True)
    denom = (total - h0).clamp(min=1).to(torch.float32)
    scale = torch.full_like(denom, 255.0) / denom  # a true float32 division (``255.0 / t`` is 255 * (1 / t))
    lut = torch.round((cdf - h0).to(torch.float32) * scale).clamp_(0, 255)
    identity = torch.arange(256, dtype=torch.float32, device=img.device)
    lut = torch.where(h0 == total, identity, lut).to(torch.uint8)
    return lut.gather(1, flat).reshape(img.shape)


def filter2d_u8(img: torch.Tensor) -> torch.Tensor:
    """``cv2.filter2D(img, cv2.CV_8U, EDGE_KERNEL)``: correlation, anchor at the centre, border REFLECT_101; the
    integer sum (|sum| <= 1275) saturated to [0, 255]. uint8 (N, H, W) -> uint8, as int16 sums of shifted views."""
    p = _pad1(img.to(torch.int16), "reflect101")

    def at(di: int, dj: int) -> torch.Tensor:
        return p[:, 1 + di:p.shape[1] - 1 + di, 1 + dj:p.shape[2] - 1 + dj]

    out = at(1, 1) - at(-1, -1)  # weights +2 / -2
    out *= 2
    out += at(0, 0)
    out += at(0, 1)
    out -= at(0, -1)
    out += at(1, 0)
    out -= at(-1, 0)
    return out.clamp_(0, 255).to(torch.uint8)


def blur_u8(img: torch.Tensor) -> torch.Tensor:
    """``cv2.blur(img, (3, 3))`` for uint8 (border REFLECT_101): the rounded box mean ``(sum + 4) // 9`` (sum < 2296;
    a 9-pixel sum never ends in a half, so there are no ties). uint8 -> uint8."""
    return _round_div9(_box_sum3(img.to(torch.int32))).to(torch.uint8)


def _round_div9(s: torch.Tensor) -> torch.Tensor:
    """``(s + 4) // 9`` for int32 0 <= s <= 2295, as a multiply and shift (7282 / 2**16 = 1/9 + 3.4e-6)."""
    return ((s + 4) * 7282) >> 16


# ----------------------------------------------------------------------------------------------------------------------


def wet_edges(layer8: torch.Tensor, check_every: int = 8) -> torch.Tensor:
    """The reference's wet-edge map of each 8-bit liquid layer: (N, H, W) uint8 (or integer-valued float) on any
    device, H, W >= 32 -> (N, H, W) float32, equal to the OpenCV chain (module docstring) image by image."""
    if layer8.dim() != 3:
        raise ValueError(f"wet_edges: expected (N, H, W), got {tuple(layer8.shape)}")
    edges = canny(layer8, check_every=check_every)
    u8 = _blur_units_to_u8(_distance_units(edges))
    return blur_u8(filter2d_u8(equalize_hist(u8))).to(torch.float32)
