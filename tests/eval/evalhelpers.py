"""Tiny benchmark trees in the released layouts, and a classifier whose answer is written in the image."""
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from vqsa.data.imagenet_subsets import imagenet_wnids


class PixelOracle(nn.Module):
    """Predicts class ``round(255 * x[:, 0, 0, 0]) % num_classes``: tests decide exactly which items are right."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.scale = nn.Parameter(torch.ones(()))  # gives the module a device and a parameter count

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cls = torch.round(x[:, 0, 0, 0] * 255).long() % self.num_classes
        return nn.functional.one_hot(cls, self.num_classes).float() * self.scale


def write_cifar10_c(root: Path, corruptions, n: int = 12, seed: int = 0, clean_labels=None, indices=None) -> dict:
    """``root/<c>.npy`` (5n, 32, 32, 3) uint8 + ``labels.npy``; pixel (0, 0, 0) of a row = its label iff the row
    index is even, so the PixelOracle is right on exactly the even rows of every severity block.

    With ``clean_labels`` (those of the clean test set) the rows are made from the clean images at ``indices``
    (default: ``n`` spread-out ones), which a ``vqsa_corrupt.json`` manifest records as ``vqsa corrupt --limit``
    does; without, the labels are random and there is no manifest."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    if clean_labels is not None:
        if indices is None:
            indices = np.sort(rng.permutation(len(clean_labels))[:n])
        indices = np.asarray(indices)
        assert len(indices) == n
        labels = np.tile(np.asarray(clean_labels)[indices], 5).astype(np.uint8)
        (root / "vqsa_corrupt.json").write_text(json.dumps({
            "format": "vqsa-corrupt/1", "kind": "arrays", "settings": {"n": n}, "split": "test",
            "indices": indices.tolist()}))
    else:
        labels = np.tile(rng.integers(0, 10, n), 5).astype(np.uint8)
    np.save(root / "labels.npy", labels)
    for c in corruptions:
        x = rng.integers(0, 256, (5 * n, 32, 32, 3), dtype=np.uint8)
        x[:, 0, 0, 0] = np.where(np.arange(5 * n) % 2 == 0, labels, (labels.astype(int) + 1) % 10)
        np.save(root / f"{c}.npy", x)
    return {"labels": labels, "n": n, "indices": indices}


def write_cifar10(root: Path, n: int = 10, seed: int = 1) -> np.ndarray:
    """A tiny stand-in ``root/cifar10/test.npz`` whose images all carry their label in pixel (0, 0, 0); returns
    the labels."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.int64)
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    images[:, 0, 0, 0] = labels
    (root / "cifar10").mkdir(parents=True, exist_ok=True)
    classes = np.array(["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"])
    np.savez(root / "cifar10" / "test.npz", images=images, labels=labels, classes=classes)
    return labels


def write_imagenet_c(root: Path, corruptions, severities, class_ids=(5, 990), per_class: int = 2, ext=".png"):
    """``root/<c>/<s>/<wnid>/*.png`` 224 px images; pixel (0, 0, 0) = 1k index % 256 of the class folder."""
    rng = np.random.default_rng(0)
    wnids = imagenet_wnids()
    for c in corruptions:
        for s in severities:
            for k in class_ids:
                d = root / c / str(s) / wnids[k]
                d.mkdir(parents=True, exist_ok=True)
                for j in range(per_class):
                    img = rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)
                    img[0, 0, 0] = k % 256
                    Image.fromarray(img).save(d / f"ILSVRC2012_val_{k:05d}{j}{ext}")

