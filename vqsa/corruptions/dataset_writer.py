"""The dataset writers' import path of old: every name of :mod:`vqsa.corruptions.writers` (and the corruption API
names it used), re-exported; ``corrupt_cifar10`` now lives in :mod:`vqsa.data`."""
from __future__ import annotations

from typing import Any

from ._api import derive_rng, resolve_corruptions
from .writers import (
    IMAGE_EXTENSIONS,
    MANIFEST_NAME,
    PROFILES,
    SEVERITIES,
    BadImageError,
    WriteSummary,
    check_profile,
    check_seed,
    check_severities,
    corrupt_arrays,
    corrupt_folder,
    encode_image,
    imagenet_c_preprocess,
    list_images,
    load_rgb,
    output_relpath,
    read_manifest,
    requested_corruptions,
)

__all__ = [
    "IMAGE_EXTENSIONS", "MANIFEST_NAME", "PROFILES", "SEVERITIES", "BadImageError", "WriteSummary", "check_profile",
    "check_seed", "check_severities", "corrupt_arrays", "corrupt_folder", "derive_rng", "encode_image",
    "imagenet_c_preprocess", "list_images", "load_rgb", "output_relpath", "read_manifest", "requested_corruptions",
    "resolve_corruptions",
]


def __getattr__(name: str) -> Any:
    if name == "corrupt_cifar10":  # moved to the data layer, which loads CIFAR-10
        import warnings

        warnings.warn("vqsa.corruptions.dataset_writer.corrupt_cifar10 moved to vqsa.data.corrupt_cifar10",
                      DeprecationWarning, stacklevel=2)
        from vqsa.data.cifar10_c import corrupt_cifar10

        return corrupt_cifar10
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
