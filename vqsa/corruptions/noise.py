"""Noise corruptions: gaussian_noise, shot_noise, impulse_noise, speckle_noise.

Same distributions and parameters as the reference (make_imagenet_c.py and friends), drawn from a
``np.random.Generator`` instead of the legacy global state. Gaussian and speckle noise are computed in float32
(the reference: float64), which moves a truncated 8-bit value by one level in rare cases and leaves the strength
unchanged:

* gaussian_noise: ``x + N(0, c)`` per value; speckle_noise: ``x + x * N(0, c)``.
* shot_noise: ``Poisson(x * c) / c``. The image has only 256 grey levels, so the rate takes only 256 values; the
  draw is an exact inverse-CDF sample from per-level Poisson tables (a guide table plus a short search), ~4x faster
  than ``Generator.poisson`` with per-pixel rates and the same distribution.
* impulse_noise: skimage's ``random_noise(mode="s&p", amount=c)``: every value (pixel *and* channel) is replaced with
  probability ``c``, by 0 or 255 with equal probability. One (float32) uniform per value decides both.
"""
from __future__ import annotations

import functools

import numpy as np
from scipy.special import pdtr

from ._params import get_params

_GUIDE_BINS = 1024


def gaussian_noise(x: np.ndarray, severity: int, rng: np.random.Generator, profile: str) -> np.ndarray:
    """Additive Gaussian noise with std ``c`` on [0, 1]; returns float in [0, 255]."""
    c = get_params("gaussian_noise", severity, profile)
    x = x / np.float32(255)
    noise = rng.standard_normal(size=x.shape, dtype=np.float32)
    noise *= np.float32(c)
    noise += x
    return np.clip(noise, 0, 1, out=noise) * np.float32(255)


def speckle_noise(x: np.ndarray, severity: int, rng: np.random.Generator, profile: str) -> np.ndarray:
    """Multiplicative Gaussian noise ``x + x * N(0, c)``; returns float in [0, 255]."""
    c = get_params("speckle_noise", severity, profile)
    x = x / np.float32(255)
    noise = rng.standard_normal(size=x.shape, dtype=np.float32)
    noise *= np.float32(c)
    noise *= x
    noise += x
    return np.clip(noise, 0, 1, out=noise) * np.float32(255)


def impulse_noise(x: np.ndarray, severity: int, rng: np.random.Generator, profile: str) -> np.ndarray:
    """Salt-and-pepper noise on each value with probability ``c`` (half salt, half pepper); returns uint8.

    Exact in 8 bit: the reference's ``x / 255 * 255`` round trip returns every level unchanged.
    """
    c = get_params("impulse_noise", severity, profile)
    u = rng.random(x.shape, dtype=np.float32)
    out = x.copy()
    out[u < np.float32(c)] = 255  # flipped values: u < c; the lower half of them becomes pepper
    out[u < np.float32(0.5 * c)] = 0
    return out


@functools.lru_cache(maxsize=16)
def _poisson_tables(lam_scale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """CDF tables of Poisson(level / 255 * lam_scale) for the 256 grey levels.

    Returns (cdf rows flattened (256*K,), guide table of the first candidate k flattened (256*bins,),
    search keys cdf + 2*level (256*K,), K).
    """
    k_max = int(np.ceil(lam_scale + 15.0 * np.sqrt(lam_scale) + 40))
    lam = np.arange(256) / 255.0 * lam_scale
    cdf = pdtr(np.arange(k_max)[None, :], lam[:, None])
    cdf[:, -1] = 1.0  # the tail beyond 15 sigma + 40 has probability < 1e-40
    grid = np.arange(_GUIDE_BINS) / _GUIDE_BINS
    guide = np.stack([np.searchsorted(row, grid, side="right") for row in cdf]).astype(np.intp).ravel()
    keys = (cdf + 2.0 * np.arange(256)[:, None]).ravel()
    flat = cdf.ravel()
    for a in (flat, guide, keys):
        a.flags.writeable = False
    return flat, guide, keys, k_max


def _poisson_from_levels(levels: np.ndarray, lam_scale: float, rng: np.random.Generator) -> np.ndarray:
    """Draw ``Poisson(levels / 255 * lam_scale)`` per element of the uint8 array ``levels`` (exact inverse CDF)."""
    flat, guide, keys, k_max = _poisson_tables(float(lam_scale))
    lv = levels.ravel().astype(np.intp)
    u = rng.random(lv.size)
    base = lv * k_max
    idx = base + np.take(guide, lv * _GUIDE_BINS + (u * _GUIDE_BINS).astype(np.intp))
    # The answer is the number of cdf entries <= u; step forward a little, then binary-search the few left over.
    active = np.flatnonzero(np.take(flat, idx) <= u)
    for _ in range(2):
        idx[active] += 1
        active = active[flat[idx[active]] <= u[active]]
    if active.size:
        idx[active] = np.searchsorted(keys, u[active] + 2.0 * lv[active], side="right")
    return (idx - base).reshape(levels.shape)


@functools.lru_cache(maxsize=16)
def _shot_output_table(lam_scale: float) -> np.ndarray:
    """uint8 result of the reference's ``np.uint8(clip(k / c, 0, 1) * 255)`` for every possible count k."""
    counts = np.arange(_poisson_tables(lam_scale)[3])
    table = (np.clip(counts / lam_scale, 0, 1) * 255).astype(np.uint8)
    table.flags.writeable = False
    return table


def shot_noise(x: np.ndarray, severity: int, rng: np.random.Generator, profile: str) -> np.ndarray:
    """Poisson (photon) noise ``Poisson(x * c) / c``; returns uint8 (the reference's float maths via a table)."""
    c = float(get_params("shot_noise", severity, profile))
    return _shot_output_table(c)[_poisson_from_levels(x, c, rng)]
