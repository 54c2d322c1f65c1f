"""ImageNet-C / CIFAR-10-C / Tiny-ImageNet-C corruptions on the CPU (numpy), faithful to hendrycks/robustness.

``corrupt(image, severity, corruption_name)`` is a drop-in for ``imagecorruptions.corrupt`` with an ``rng`` for
reproducible draws and a ``profile`` selecting the per-dataset parameter table. See docs/corruptions.md.
"""
from ._api import MIN_SIZE, as_generator, corrupt, get_corruption_function, get_corruption_names, resolve_profile
from ._params import CORRUPTIONS, PARAMS, PROFILES, SUBSETS

__all__ = [
    "CORRUPTIONS", "MIN_SIZE", "PARAMS", "PROFILES", "SUBSETS", "as_generator", "corrupt",
    "get_corruption_function", "get_corruption_names", "resolve_profile",
]
