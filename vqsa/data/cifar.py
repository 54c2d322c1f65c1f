"""CIFAR-10 as uint8 arrays, from the npz layout (``cifar10/{train,test}.npz``) or torchvision's pickles."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .sampling import seeded_subset

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_SPLITS = ("train", "test")


@dataclass(frozen=True)
class ArrayDataset:
    """Images (N, H, W, 3) uint8 and labels (N,) int64, with class names and where they came from."""

    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    source: str

    def __len__(self) -> int:
        return len(self.labels)

    def subset_indices(self, n: int | None, seed: int = 0) -> np.ndarray | None:
        """The sorted indices that :meth:`subset` keeps (None: all samples)."""
        return seeded_subset(len(self), n, seed)

    def subset(self, n: int | None, seed: int = 0) -> "ArrayDataset":
        """A class-balanced-in-expectation random subset of ``n`` samples (all when ``n`` is None or too large)."""
        idx = self.subset_indices(n, seed)
        if idx is None:
            return self
        return ArrayDataset(self.images[idx], self.labels[idx], self.classes, f"{self.source}[{n} of {len(self)}]")


def find_cifar10(root: str | os.PathLike) -> Path:
    """Locate CIFAR-10 under ``root``: an npz folder (``train.npz``/``test.npz``) or ``cifar-10-batches-py``."""
    root = Path(root)
    for cand in (root, root / "cifar10", root / "cifar-10-batches-py", root / "cifar10" / "cifar-10-batches-py"):
        if (cand / "test.npz").is_file() or (cand / "test_batch").is_file():
            return cand
    raise FileNotFoundError(
        f"no CIFAR-10 under {str(root)!r}: expected cifar10/{{train,test}}.npz or cifar-10-batches-py/ "
        "(torchvision's layout; `vqsa train --download` fetches it when online)"
    )


def load_cifar10(root: str | os.PathLike, split: str = "test") -> ArrayDataset:
    """Load a CIFAR-10 split as uint8 arrays.

    Args:
        root: a folder holding ``cifar10/{train,test}.npz`` (arrays ``images``, ``labels``, ``classes``) or
            torchvision's ``cifar-10-batches-py``; the folder itself may be either.
        split: ``"train"`` or ``"test"``.
    """
    if split not in _SPLITS:
        raise ValueError(f"unknown CIFAR-10 split {split!r}; expected 'train' or 'test'")
    folder = find_cifar10(root)
    npz = folder / f"{split}.npz"
    if npz.is_file():
        try:
            with np.load(npz, allow_pickle=False) as d:
                images, labels = d["images"], d["labels"].astype(np.int64)
                classes = tuple(str(c) for c in d["classes"]) if "classes" in d else CIFAR10_CLASSES
        except (OSError, ValueError, KeyError) as e:
            raise ValueError(f"{npz}: not a readable CIFAR-10 npz (arrays images, labels): {e}") from e
        source = str(npz)
    else:
        images, labels = _load_batches(folder, split)
        classes, source = CIFAR10_CLASSES, str(folder)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (32, 32, 3):
        raise ValueError(f"{source}: expected uint8 images of shape (N, 32, 32, 3), got {images.dtype} {images.shape}")
    if len(images) != len(labels):
        raise ValueError(f"{source}: {len(images)} images but {len(labels)} labels")
    return ArrayDataset(images, labels, classes, source)


def _load_batches(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    # torchvision's CIFAR-10 files are pickles. torchvision.datasets.CIFAR10 checks each file's MD5 against the
    # official release before unpickling, so only the genuine files are ever loaded.
    from torchvision.datasets import CIFAR10

    try:
        ds = CIFAR10(str(folder.parent), train=split == "train", download=False)
    except RuntimeError as e:
        raise ValueError(f"{folder}: CIFAR-10 batch files missing or not the official ones (MD5 check): {e}") from e
    return np.ascontiguousarray(ds.data), np.asarray(ds.targets, dtype=np.int64)
