"""Shared fixtures of the corruption tests: real test images and the imagecorruptions oracle (test-only)."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest


@pytest.fixture(scope="session")
def real_image() -> Callable[[int, int], np.ndarray]:
    """``real_image(height, width)``: skimage's astronaut resized with PIL bilinear (uint8 RGB), as in the spec.

    Skips where scikit-image (a test-only dependency, pulled in by imagecorruptions-imaug) is missing.
    """
    skdata = pytest.importorskip("skimage.data")
    from PIL import Image

    source = Image.fromarray(skdata.astronaut())
    cache: dict[tuple[int, int], np.ndarray] = {}

    def make(height: int, width: int | None = None) -> np.ndarray:
        key = (height, height if width is None else width)
        if key not in cache:
            cache[key] = np.asarray(source.resize((key[1], key[0]), Image.BILINEAR))
        return cache[key]

    return make


@pytest.fixture(scope="session")
def oracle():
    """The ``imagecorruptions`` module (imagecorruptions-imaug, ImageNet tables only); skips when not installed."""
    return pytest.importorskip("imagecorruptions")
