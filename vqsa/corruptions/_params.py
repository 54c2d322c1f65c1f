"""Exact parameter tables of the ImageNet-C, CIFAR-10-C and Tiny-ImageNet-C generators (hendrycks/robustness).

``PARAMS[profile][corruption]`` is a tuple of 5 entries, one per severity (index ``severity - 1``). The numbers are
the constants of ``make_imagenet_c.py`` (profile "imagenet", 224 px), ``make_cifar_c.py`` ("cifar", 32 px) and
``make_tinyimagenet_c.py`` ("tinyimagenet", 64 px), kept bit-for-bit (float error included):

* zoom_blur entries are the ``np.arange`` arrays the reference builds (``arange(1, 1.11, 0.01)`` has 12 values, the
  last of ``arange(1, 1.16, 0.01)`` is 1.1500000000000001, ...); they are read-only float64 arrays.
* elastic_transform entries are ``(alpha, sigma, affine_max)`` computed as ``244 * k`` / ``32 * k`` / ``64 * k`` exactly
  as the reference writes them ("244" is the reference's own typo for 224, kept on purpose).

Meaning of each entry (the reference's ``c``):

====================  =========================================================================================
gaussian_noise        noise std on [0, 1]
shot_noise            Poisson rate scale lambda
impulse_noise         salt-and-pepper amount (per value)
defocus_blur          (disk radius, alias_blur sigma)
glass_blur            (gaussian sigma, max_delta, iterations)
motion_blur           (radius, sigma); angle ~ U(-45, 45) degrees
zoom_blur             array of zoom factors
snow                  (loc, scale, zoom, threshold, blur radius, blur sigma, blend)
frost                 (image weight, frost weight); texture scaled by ``FROST_SCALE[profile]``
fog                   (strength, wibbledecay); plasma map side ``PLASMA_MAPSIZE[profile]``
brightness            added to HSV V
contrast              factor
elastic_transform     (alpha, sigma, affine max shift)
pixelate              down-scale factor
jpeg_compression      PIL JPEG quality
speckle_noise         multiplicative noise std
gaussian_blur         sigma in px
spatter               (loc, scale, sigma, threshold, intensity, mode: 0 water, 1 mud)
saturate              (S multiplier, S offset)
====================  =========================================================================================
"""
from __future__ import annotations

import numpy as np

CORRUPTIONS: tuple[str, ...] = (
    "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
    "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate", "jpeg_compression",
    "speckle_noise", "gaussian_blur", "spatter", "saturate",
)
"""The 19 corruption names in ImageNet-C order (index = imagecorruptions' ``corruption_number``)."""

SUBSETS: dict[str, tuple[str, ...]] = {
    "common": CORRUPTIONS[:15],
    "validation": CORRUPTIONS[15:],
    "all": CORRUPTIONS,
    "noise": CORRUPTIONS[0:3],
    "blur": CORRUPTIONS[3:7],
    "weather": CORRUPTIONS[7:11],
    "digital": CORRUPTIONS[11:15],
}
"""Named subsets, identical to ``imagecorruptions.get_corruption_names``."""

PROFILES: tuple[str, ...] = ("imagenet", "cifar", "tinyimagenet")
#: What a ``profile`` argument accepts: a table, or ``auto`` (chosen from the image size).
PROFILE_CHOICES: tuple[str, ...] = ("auto", *PROFILES)
REFERENCE_SIZE: dict[str, int] = {"imagenet": 224, "cifar": 32, "tinyimagenet": 64}
"""Image side the reference generator of each profile was written for."""
FROST_SCALE: dict[str, float] = {"imagenet": 1.0, "cifar": 0.2, "tinyimagenet": 0.3}
"""Factor the frost texture is resized by (cv2 INTER_LINEAR) before the random crop."""
PLASMA_MAPSIZE: dict[str, int] = {"imagenet": 256, "cifar": 32, "tinyimagenet": 64}
"""Side of the reference's plasma fractal (fog) at the reference size."""
AUTO_CIFAR_MAX: int = 40
AUTO_TINY_MAX: int = 80
"""``profile="auto"``: min(H, W) <= 40 -> cifar, <= 80 -> tinyimagenet, else imagenet."""


def _zoom_factors(*args: tuple[float, float, float]) -> tuple[np.ndarray, ...]:
    out = []
    for start, stop, step in args:
        a = np.arange(start, stop, step)
        a.flags.writeable = False
        out.append(a)
    return tuple(out)


def _scaled(size: int, *rows: tuple[float, float, float]) -> tuple[tuple[float, float, float], ...]:
    return tuple((size * a, size * s, size * m) for a, s, m in rows)


_SMALL_ZOOM = _zoom_factors((1, 1.06, 0.01), (1, 1.11, 0.01), (1, 1.16, 0.01), (1, 1.21, 0.01), (1, 1.26, 0.01))

PARAMS: dict[str, dict[str, tuple]] = {
    "imagenet": {
        "gaussian_noise": (0.08, 0.12, 0.18, 0.26, 0.38),
        "shot_noise": (60, 25, 12, 5, 3),
        "impulse_noise": (0.03, 0.06, 0.09, 0.17, 0.27),
        "defocus_blur": ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)),
        "glass_blur": ((0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)),
        "motion_blur": ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15)),
        "zoom_blur": _zoom_factors((1, 1.11, 0.01), (1, 1.16, 0.01), (1, 1.21, 0.02), (1, 1.26, 0.02),
                                   (1, 1.31, 0.03)),
        "snow": ((0.1, 0.3, 3, 0.5, 10, 4, 0.8), (0.2, 0.3, 2, 0.5, 12, 4, 0.7), (0.55, 0.3, 4, 0.9, 12, 8, 0.7),
                 (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65), (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55)),
        "frost": ((1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75)),
        "fog": ((1.5, 2), (2, 2), (2.5, 1.7), (2.5, 1.5), (3, 1.4)),
        "brightness": (0.1, 0.2, 0.3, 0.4, 0.5),
        "contrast": (0.4, 0.3, 0.2, 0.1, 0.05),
        "elastic_transform": _scaled(244, (2, 0.7, 0.1), (2, 0.08, 0.2), (0.05, 0.01, 0.02), (0.07, 0.01, 0.02),
                                     (0.12, 0.01, 0.02)),
        "pixelate": (0.6, 0.5, 0.4, 0.3, 0.25),
        "jpeg_compression": (25, 18, 15, 10, 7),
        "speckle_noise": (0.15, 0.2, 0.35, 0.45, 0.6),
        "gaussian_blur": (1, 2, 3, 4, 6),
        "spatter": ((0.65, 0.3, 4, 0.69, 0.6, 0), (0.65, 0.3, 3, 0.68, 0.6, 0), (0.65, 0.3, 2, 0.68, 0.5, 0),
                    (0.65, 0.3, 1, 0.65, 1.5, 1), (0.67, 0.4, 1, 0.65, 1.5, 1)),
        "saturate": ((0.3, 0), (0.1, 0), (2, 0), (5, 0.1), (20, 0.2)),
    },
    "cifar": {
        "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),
        "shot_noise": (500, 250, 100, 75, 50),
        "impulse_noise": (0.01, 0.02, 0.03, 0.05, 0.07),
        "defocus_blur": ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)),
        "glass_blur": ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)),
        "motion_blur": ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)),
        "zoom_blur": _SMALL_ZOOM,
        "snow": ((0.1, 0.2, 1, 0.6, 8, 3, 0.95), (0.1, 0.2, 1, 0.5, 10, 4, 0.9), (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
                 (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85), (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8)),
        "frost": ((1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)),
        "fog": ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)),
        "brightness": (0.05, 0.1, 0.15, 0.2, 0.3),
        "contrast": (0.75, 0.5, 0.4, 0.3, 0.15),
        "elastic_transform": _scaled(32, (0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05),
                                     (0.1, 0.03, 0.03)),
        "pixelate": (0.95, 0.9, 0.85, 0.75, 0.65),
        "jpeg_compression": (80, 65, 58, 50, 40),
        "speckle_noise": (0.06, 0.1, 0.12, 0.16, 0.2),
        "gaussian_blur": (0.4, 0.6, 0.7, 0.8, 1),
        "spatter": ((0.62, 0.1, 0.7, 0.7, 0.5, 0), (0.65, 0.1, 0.8, 0.7, 0.5, 0), (0.65, 0.3, 1, 0.69, 0.5, 0),
                    (0.65, 0.1, 0.7, 0.69, 0.6, 1), (0.65, 0.1, 0.5, 0.68, 0.6, 1)),
        "saturate": ((0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)),
    },
    "tinyimagenet": {
        "gaussian_noise": (0.04, 0.08, 0.12, 0.15, 0.18),
        "shot_noise": (250, 100, 50, 30, 15),
        "impulse_noise": (0.01, 0.02, 0.05, 0.08, 0.14),
        "defocus_blur": ((0.5, 0.6), (1, 0.1), (1.5, 0.1), (2.5, 0.01), (3, 0.1)),
        "glass_blur": ((0.1, 1, 1), (0.5, 1, 1), (0.6, 1, 2), (0.7, 2, 1), (0.9, 2, 2)),
        "motion_blur": ((10, 1), (10, 1.5), (10, 2), (10, 2.5), (12, 3)),
        "zoom_blur": _SMALL_ZOOM,
        "snow": ((0.1, 0.2, 1, 0.6, 8, 3, 0.8), (0.1, 0.2, 1, 0.5, 10, 4, 0.8), (0.15, 0.3, 1.75, 0.55, 10, 4, 0.7),
                 (0.25, 0.3, 2.25, 0.6, 12, 6, 0.65), (0.3, 0.3, 1.25, 0.65, 14, 12, 0.6)),
        "frost": ((1, 0.3), (0.9, 0.4), (0.8, 0.45), (0.75, 0.5), (0.7, 0.55)),
        "fog": ((0.4, 3), (0.7, 3), (1, 2.5), (1.5, 2), (2, 1.75)),
        "brightness": (0.1, 0.2, 0.3, 0.4, 0.5),
        "contrast": (0.4, 0.3, 0.2, 0.1, 0.05),
        "elastic_transform": _scaled(64, (0, 0, 0.08), (0.05, 0.3, 0.06), (0.1, 0.08, 0.06), (0.1, 0.03, 0.03),
                                     (0.16, 0.03, 0.02)),
        "pixelate": (0.9, 0.8, 0.7, 0.6, 0.5),
        "jpeg_compression": (65, 58, 50, 40, 25),
        "speckle_noise": (0.15, 0.2, 0.25, 0.3, 0.35),
        "gaussian_blur": (0.5, 0.75, 1, 1.25, 1.5),
        "spatter": ((0.62, 0.1, 0.7, 0.7, 0.6, 0), (0.65, 0.1, 0.8, 0.7, 0.6, 0), (0.65, 0.3, 1, 0.69, 0.6, 0),
                    (0.65, 0.1, 0.7, 0.68, 0.6, 1), (0.65, 0.1, 0.5, 0.67, 0.6, 1)),
        "saturate": ((0.3, 0), (0.1, 0), (2, 0), (5, 0.1), (30, 0.2)),
    },
}
"""``PARAMS[profile][corruption][severity - 1]``: the reference's parameter ``c``."""


def get_params(corruption: str, severity: int, profile: str):
    """The reference parameter ``c`` of ``corruption`` at ``severity`` (1..5) under ``profile`` (no validation)."""
    return PARAMS[profile][corruption][severity - 1]
