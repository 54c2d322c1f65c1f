"""Datasets: CIFAR-10 arrays, image folders, ImageNet-C / CIFAR-10-C, mixed clean + corrupted training sets.

Names are imported lazily, so the numpy-only parts (``load_cifar10``, used by ``vqsa corrupt`` and its worker
processes) do not pull in torch.
"""
from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    # CIFAR-10 arrays and the data-root convention
    **dict.fromkeys(("CIFAR10_CLASSES", "ArrayDataset", "load_cifar10"), "vqsa.data.cifar"),
    "resolve_data_root": "vqsa.data.paths",
    "corrupt_cifar10": "vqsa.data.cifar10_c",
    # evaluation: released ImageNet-C / CIFAR-10-C cells, clean folders, on-the-fly corrupted copies
    **dict.fromkeys(("ArrayImages", "CorruptedImages", "EvalImages", "FolderImages", "cifar10_c", "imagenet_c"),
                    "vqsa.data.corrupted"),
    **dict.fromkeys(("imagenet_wnids", "subset_indices", "subset_mask", "subset_wnids", "wnid_to_index"),
                    "vqsa.data.imagenet_subsets"),
    # training: seeded uint8 transforms, the clean + corrupted mixing of Eq. 1, ImageFolder sources
    **dict.fromkeys(("ImageFolderSource", "scan_image_folder"), "vqsa.data.folder"),
    **dict.fromkeys(("CLEAN", "ArraySource", "BadImageError", "CorruptionSchedule", "MixedCorruptionDataset",
                     "collate_mixed"), "vqsa.data.mixed"),
    **dict.fromkeys(("EvalTransform", "TrainTransform", "to_float"), "vqsa.data.transforms"),
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vqsa.data' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
