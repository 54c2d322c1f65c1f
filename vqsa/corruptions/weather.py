"""Weather corruptions of ImageNet-C: snow, frost, fog, and the held-out spatter (hendrycks/robustness semantics).

Each function follows the reference algorithm and its random draws in the reference's order (so a generator that
replays legacy ``np.random`` draws reproduces the reference run), generalised to any H x W >= 32:
fog crops a plasma map of side ``max(PLASMA_MAPSIZE[profile], next power of two >= max(H, W))``, snow and frost
work on the real image size, spatter has no size assumption.
"""
from __future__ import annotations

import cv2
import numpy as np

from ._frost import FROST_FILES, frost_texture
from ._params import FROST_SCALE, PLASMA_MAPSIZE, get_params
from ._util import clipped_zoom, gaussian
from .motion import magick_motion_blur


def plasma_fractal(mapsize: int, wibbledecay: float, rng: np.random.Generator) -> np.ndarray:
    """Diamond-square height map (float64, ``mapsize`` x ``mapsize``, min-max normalised to [0, 1]).

    Toroidal neighbours, corner value 0, ``wibble`` starts at 100 and is divided by ``wibbledecay`` per level; each
    new value is the mean of its 4 neighbours plus ``wibble * U(-wibble, wibble)``. Per level: one draw for the
    square step, then two for the diamond step (the reference's order and shapes).
    """
    if mapsize < 2 or mapsize & (mapsize - 1):
        raise ValueError(f"plasma mapsize must be a power of two >= 2, got {mapsize}")
    if not wibbledecay > 0:
        raise ValueError(f"plasma wibbledecay must be > 0, got {wibbledecay}")
    grid = np.empty((mapsize, mapsize), dtype=np.float64)
    grid[0, 0] = 0.0
    step, wibble = mapsize, 100.0
    while step >= 2:
        half = step // 2
        n = mapsize // step
        nxt, prev = np.roll(np.arange(n), -1), np.roll(np.arange(n), 1)  # toroidal neighbour indices
        corners = grid[0::step, 0::step]
        acc = corners + corners[nxt]
        acc += acc[:, nxt]
        grid[half::step, half::step] = acc / 4 + wibble * rng.uniform(-wibble, wibble, acc.shape)
        centres = grid[half::step, half::step]
        acc = (centres + centres[prev]) + (corners + corners[:, nxt])
        grid[0::step, half::step] = acc / 4 + wibble * rng.uniform(-wibble, wibble, acc.shape)
        acc = (centres + centres[:, prev]) + (corners + corners[nxt])
        grid[half::step, 0::step] = acc / 4 + wibble * rng.uniform(-wibble, wibble, acc.shape)
        step //= 2
        wibble /= wibbledecay
    grid -= grid.min()
    return grid / grid.max()


def plasma_mapsize(height: int, width: int, profile: str) -> int:
    """The profile's plasma side, or the next power of two >= max(H, W) for larger images."""
    side = max(height, width)
    return max(PLASMA_MAPSIZE[profile], 1 << (side - 1).bit_length())


def fog(x: np.ndarray, severity: int, rng: np.random.Generator, profile: str) -> np.ndarray:
    """ImageNet-C fog: add a grey plasma fractal, rescale by ``max / (max + strength)``; float in [0, 255]."""
    strength, decay = get_params("fog", severity, profile)
    h, w = x.shape[:2]
    plasma = plasma_fractal(plasma_mapsize(h, w, profile), decay, rng)[:h, :w, None]
    img = x / 255.0
    max_val = img.max()
    img += strength * plasma
    img *= max_val  # in place, same rounding as the reference's img * max_val / (max_val + strength)
    img /= max_val + strength
    np.clip(img, 0, 1, out=img)
    img *= 255
    return img


def snow(x: np.ndarray, severity: int, rng: np.random.Generator, profile: str) -> np.ndarray:
    """ImageNet-C snow: zoomed, thresholded Gaussian snow layer, 8-bit ImageMagick motion blur, whitened blend.

    Random draws: ``normal(loc, scale, (H, W))``, then the blur angle ``U(-135, -45)``.
    """
    loc, scale, zoom, threshold, radius, sigma, blend = get_params("snow", severity, profile)
    h, w = x.shape[:2]
    img = x.astype(np.float32)
    img /= 255.0
    layer = clipped_zoom(rng.normal(loc, scale, (h, w)), zoom)
    layer[layer < threshold] = 0
    np.clip(layer, 0, 1, out=layer)
    layer8 = (layer * 255).astype(np.uint8)  # the reference's PNG hand-off to ImageMagick (truncating)
    flakes = magick_motion_blur(layer8, radius, sigma, float(rng.uniform(-135, -45))) / 255.0
    bright = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    bright *= 1.5
    bright += 0.5
    bright = np.maximum(img, bright[..., None])
    bright *= 1 - blend
    img *= blend
    img += bright  # blend * img + (1 - blend) * max(img, 1.5 grey + 0.5), float32 as the reference
    out = img + flakes[..., None]  # float32 + float64 -> float64, summed in the reference's order
    out += flakes[::-1, ::-1, None]
    np.clip(out, 0, 1, out=out)
    out *= 255
    return out


def frost(x: np.ndarray, severity: int, rng: np.random.Generator, profile: str) -> np.ndarray:
    """ImageNet-C frost: ``clip(a * x + b * crop, 0, 255)`` with a random crop of one of the 5 frost textures.

    Random draws: texture ``integers(5)``, then the crop row ``integers(0, th - H)`` and column ``integers(0, tw - W)``.
    Textures are scaled by ``FROST_SCALE[profile]`` (CIFAR 0.2, Tiny 0.3, ImageNet 1: no rescale) and enlarged
    minimally for images larger than them (see ``_frost.frost_texture``).
    """
    img_weight, frost_weight = get_params("frost", severity, profile)
    h, w = x.shape[:2]
    index = int(rng.integers(len(FROST_FILES)))
    texture = frost_texture(index, FROST_SCALE[profile], h, w)
    top = int(rng.integers(0, texture.shape[0] - h))
    left = int(rng.integers(0, texture.shape[1] - w))
    out = np.multiply(texture[top:top + h, left:left + w], frost_weight, dtype=np.float64)
    out += np.multiply(x, img_weight, dtype=np.float64)  # = a * x + b * crop exactly (float addition commutes)
    np.clip(out, 0, 255, out=out)
    return out


_WATER_KERNEL = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]])
_WATER_RGB = np.array([175 / 255, 238 / 255, 238 / 255], np.float32)  # the reference's "BGR" colour, on RGB data
_MUD_RGB = np.array([63 / 255, 42 / 255, 20 / 255], np.float32)


def _water(img: np.ndarray, liquid: np.ndarray, intensity: float) -> np.ndarray:
    """Spatter mode 0: water drops from the liquid layer's edges (OpenCV chain of the reference), float32 [0, 1]."""
    scaled = liquid * 255
    if scaled.max() >= 256:  # liquid > 1 (CIFAR table): the reference's uint8 cast wrapped modulo 256 (x86)
        np.fmod(scaled, 256, out=scaled)
    layer8 = scaled.astype(np.uint8)
    dist = 255 - cv2.Canny(layer8, 50, 150)
    dist = cv2.distanceTransform(dist, cv2.DIST_L2, 5)
    _, dist = cv2.threshold(dist, 20, 20, cv2.THRESH_TRUNC)
    dist = cv2.blur(dist, (3, 3)).astype(np.uint8)
    dist = cv2.equalizeHist(dist)
    dist = cv2.filter2D(dist, cv2.CV_8U, _WATER_KERNEL)
    dist = cv2.blur(dist, (3, 3)).astype(np.float32)
    m = layer8 * dist
    peak = m.max()
    if peak > 0:  # the reference divides 0 by 0 (NaN image) when no drop survives the threshold; we add nothing
        m /= peak
    m *= np.float32(intensity)
    return img + m[..., None] * _WATER_RGB


def _mud(img: np.ndarray, liquid: np.ndarray, threshold: float, sigma: float) -> np.ndarray:
    """Spatter mode 1: brown mud where the smoothed liquid mask is >= 0.8, float32 [0, 1]."""
    m = gaussian((liquid > threshold).astype(np.float64), sigma)
    m[m < 0.8] = 0
    colour = np.empty(img.shape, np.float32)
    colour[:] = _MUD_RGB
    colour *= m[..., None]
    img *= 1 - m[..., None]
    return img + colour


def spatter(x: np.ndarray, severity: int, rng: np.random.Generator, profile: str) -> np.ndarray:
    """ImageNet-C spatter (held-out corruption): water drops (mode 0) or mud (mode 1); float in [0, 255].

    Random draws: one ``normal(loc, scale, (H, W))`` liquid layer, smoothed (sigma, 'nearest') and thresholded.
    """
    loc, scale, sigma, threshold, intensity, mode = get_params("spatter", severity, profile)
    h, w = x.shape[:2]
    img = x.astype(np.float32)
    img /= 255.0
    liquid = gaussian(rng.normal(loc, scale, (h, w)), sigma)
    liquid[liquid < threshold] = 0
    out = _water(img, liquid, intensity) if mode == 0 else _mud(img, liquid, threshold, intensity)
    np.clip(out, 0, 1, out=out)
    out *= 255
    return out
