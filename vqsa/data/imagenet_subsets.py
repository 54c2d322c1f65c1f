"""ImageNet-1k class ids (wnids) and the 200-class subsets of ImageNet-R and ImageNet-A, shipped as package data.

Labels are always ImageNet-1k indices (standard order, ``imagenet_1k_wnids.txt``); a 200-class benchmark is scored by
restricting the arg-max to its classes (``class_subset``), the hendrycks ``indices_in_1k`` convention.
Sources: hendrycks/imagenet-r ``eval.py`` and hendrycks/natural-adv-examples ``eval_many_models.py``.
"""
from __future__ import annotations

from functools import lru_cache
from importlib import resources

import torch

SUBSETS = ("imagenet-r", "imagenet-a")
_FILES = {
    "imagenet": "imagenet_1k_wnids.txt", "imagenet-r": "imagenet_r_wnids.txt", "imagenet-a": "imagenet_a_wnids.txt",
}


@lru_cache(maxsize=None)
def _read(name: str) -> tuple[str, ...]:
    text = (resources.files("vqsa.data") / "resources" / _FILES[name]).read_text(encoding="ascii")
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def imagenet_wnids() -> tuple[str, ...]:
    """The 1000 ImageNet-1k wnids in standard class-index order (index 0 = ``n01440764`` tench)."""
    return _read("imagenet")


@lru_cache(maxsize=None)
def wnid_to_index() -> dict[str, int]:
    """ImageNet-1k wnid -> class index."""
    return {w: i for i, w in enumerate(imagenet_wnids())}


def subset_wnids(name: str) -> tuple[str, ...]:
    """The 200 wnids of ``"imagenet-r"`` or ``"imagenet-a"``, in sorted (= ImageNet index) order."""
    if name not in SUBSETS:
        raise ValueError(f"unknown ImageNet class subset {name!r}; expected one of {SUBSETS}")
    return _read(name)


def subset_indices(name: str) -> torch.Tensor:
    """ImageNet-1k indices (int64, ascending) of the 200 classes of ``"imagenet-r"`` or ``"imagenet-a"``."""
    index = wnid_to_index()
    return torch.tensor(sorted(index[w] for w in subset_wnids(name)), dtype=torch.int64)


def subset_mask(name: str) -> torch.Tensor:
    """Boolean mask over the 1000 ImageNet classes, True on the 200 classes of the subset."""
    mask = torch.zeros(len(imagenet_wnids()), dtype=torch.bool)
    mask[subset_indices(name)] = True
    return mask
