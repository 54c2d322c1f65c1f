"""imagecorruptions' module-level API: ``corruption_tuple``, ``corruption_dict`` and one function per corruption
with upstream's signature ``fn(x, severity=1)``.

Each function takes a PIL image or a uint8 array (as ``imagecorruptions.corrupt`` passes ``Image.fromarray(...)``)
and returns the float array in [0, 255] before the final uint8 cast, as upstream's functions do (its pixelate and
JPEG return PIL images; these return arrays of the same values). Randomness comes from numpy's global RNG, so
``np.random.seed`` makes them reproducible as upstream; the parameter table follows the image size
(``profile="auto"``).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._api import _as_rgb, check_severity, get_corruption_function, global_generator, resolve_profile
from ._params import CORRUPTIONS


def _upstream_style(name: str) -> Callable[..., np.ndarray]:
    def fn(x, severity: int = 1) -> np.ndarray:
        image = _as_rgb(np.asarray(x))
        check_severity(severity)
        profile = resolve_profile("auto", image.shape[0], image.shape[1])
        out = get_corruption_function(name)(image, int(severity), global_generator(), profile)
        return np.clip(np.asarray(out, dtype=np.float64), 0, 255)

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = (f"{name} at ``severity`` 1..5 as ``imagecorruptions.{name}``: a PIL image or uint8 array in, "
                  "float values in [0, 255] out (numpy's global RNG).")
    return fn


corruption_tuple: tuple[Callable[..., np.ndarray], ...] = tuple(_upstream_style(name) for name in CORRUPTIONS)
corruption_dict: dict[str, Callable[..., np.ndarray]] = {fn.__name__: fn for fn in corruption_tuple}
