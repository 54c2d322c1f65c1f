"""Datasets: CIFAR-10 arrays, image folders, ImageNet-C / CIFAR-10-C, mixed clean + corrupted training sets."""
from .cifar import CIFAR10_CLASSES, ArrayDataset, load_cifar10
from .paths import resolve_data_root

__all__ = ["CIFAR10_CLASSES", "ArrayDataset", "load_cifar10", "resolve_data_root"]

# Evaluation datasets (issue 5): released ImageNet-C / CIFAR-10-C cells, clean folders, on-the-fly corrupted copies.
from .corrupted import ArrayImages, CorruptedImages, EvalImages, FolderImages, cifar10_c, imagenet_c  # noqa: E402
from .imagenet_subsets import imagenet_wnids, subset_indices, subset_mask, subset_wnids, wnid_to_index  # noqa: E402

__all__ += [
    "ArrayImages", "CorruptedImages", "EvalImages", "FolderImages", "cifar10_c", "imagenet_c",
    "imagenet_wnids", "subset_indices", "subset_mask", "subset_wnids", "wnid_to_index",
]

# Training datasets (issue 4): seeded uint8 transforms, the clean + corrupted mixing of Eq. 1, ImageFolder sources.
from .folder import ImageFolderSource  # noqa: E402
from .mixed import CLEAN, ArraySource, BadImageError, CorruptionSchedule, MixedCorruptionDataset, collate_mixed  # noqa: E402
from .transforms import EvalTransform, TrainTransform, to_float  # noqa: E402

__all__ += [
    "CLEAN", "ArraySource", "BadImageError", "CorruptionSchedule", "EvalTransform", "ImageFolderSource",
    "MixedCorruptionDataset", "TrainTransform", "collate_mixed", "to_float",
]
