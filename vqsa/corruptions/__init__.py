"""ImageNet-C / CIFAR-10-C / Tiny-ImageNet-C corruptions on the CPU (numpy), faithful to hendrycks/robustness.

``corrupt(image, severity, corruption_name)`` is a drop-in for ``imagecorruptions.corrupt`` with an ``rng`` for
reproducible draws and a ``profile`` selecting the per-dataset parameter table. See docs/corruptions.md.
The batched torch engine (``corrupt_batch``, ``RandomCorruption``) lives in :mod:`vqsa.corruptions.batched` and is
re-exported here lazily, so importing the CPU engine does not import torch.
"""
from __future__ import annotations

import importlib
from typing import Any

from ._api import (MIN_SIZE, as_generator, check_severities, corrupt, derive_rng, get_corruption_function,
                   get_corruption_names, resolve_corruptions, resolve_profile)
from ._compat import corruption_dict, corruption_tuple
from ._frost import frost_dir, set_frost_dir
from ._params import CORRUPTIONS, PARAMS, PROFILES, SUBSETS

_BATCHED = ("RandomCorruption", "corrupt_batch")

__all__ = [
    "CORRUPTIONS", "MIN_SIZE", "PARAMS", "PROFILES", "SUBSETS", "as_generator", "check_severities", "corrupt",
    "corruption_dict", "corruption_tuple", "derive_rng", "frost_dir", "get_corruption_function",
    "get_corruption_names", "resolve_corruptions", "resolve_profile", "set_frost_dir", *_BATCHED, *CORRUPTIONS,
]


def __getattr__(name: str) -> Any:
    if name in _BATCHED:
        return getattr(importlib.import_module("vqsa.corruptions.batched"), name)
    if name in corruption_dict:  # imagecorruptions' per-corruption functions: vqsa.corruptions.gaussian_noise(x, 3)
        return corruption_dict[name]
    raise AttributeError(f"module 'vqsa.corruptions' has no attribute {name!r}")
