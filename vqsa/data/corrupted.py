"""Evaluation datasets: clean images, released corrupted sets (ImageNet-C folders, CIFAR-10-C arrays) and corrupted
copies generated on the fly with :func:`vqsa.corruptions.corrupt`.

Every dataset here is an :class:`EvalImages`: ``load(i)`` gives ``(uint8 HWC ndarray, label)`` (the form the corruption
engine takes) and ``ds[i]`` gives ``(uint8 CHW tensor, label)``; the evaluation runner scales to [0, 1] on the device,
which keeps DataLoader traffic 4x smaller than float. Nothing holds a whole set in memory: folders are indexed by file
name and decoded per item, ``.npy`` arrays are memory-mapped.
"""
from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.datasets.folder import IMG_EXTENSIONS

from .imagenet_subsets import wnid_to_index
from .mixed import BadImageError


class EvalImages(Dataset):
    """Base class: ``load(i) -> (HWC uint8 ndarray, int label)``; ``self[i] -> (CHW uint8 tensor, int label)``.

    Attributes:
        num_classes: size of the label space the labels index into (10 for CIFAR, 1000 for ImageNet).
        description: where the images come from, recorded in results files.
    """

    num_classes: int
    description: str

    def load(self, index: int) -> tuple[np.ndarray, int]:
        raise NotImplementedError

    def identity_digests(self, indices: Sequence[int] | np.ndarray | None = None) -> list[bytes] | None:
        """A sha256 digest naming each item (``indices``, default all) independently of its position, or None when
        this kind of set cannot name its items cheaply. Two sets hold the same examples iff their sorted digests
        are equal: ``vqsa.evaluate`` records their fingerprint so that results on different examples are told apart.
        """
        return None

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image, label = self.load(index)
        return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))), label


class ArrayImages(EvalImages):
    """Images from a uint8 (N, H, W, 3) array (memory-mapped arrays stay on disk) and int labels."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, num_classes: int, description: str) -> None:
        if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3:
            raise ValueError(f"{description}: images must be a uint8 (N, H, W, 3) array, got "
                             f"{getattr(images, 'dtype', type(images).__name__)} {getattr(images, 'shape', '')}")
        labels = np.asarray(labels)
        if labels.shape != (len(images),):
            raise ValueError(f"{description}: {len(images)} images but labels of shape {labels.shape}")
        if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(f"{description}: labels outside [0, {num_classes})")
        self.images, self.labels = images, labels.astype(np.int64, copy=False)
        self.num_classes, self.description = num_classes, description

    def __len__(self) -> int:
        return len(self.labels)

    def load(self, index: int) -> tuple[np.ndarray, int]:
        return np.asarray(self.images[index]), int(self.labels[index])

    def identity_digests(self, indices: Sequence[int] | np.ndarray | None = None) -> list[bytes]:
        """sha256 of each image's pixels and label (about 3 us per CIFAR image)."""
        idx = range(len(self)) if indices is None else indices
        return [hashlib.sha256(np.ascontiguousarray(self.images[int(i)]).tobytes()
                               + int(self.labels[int(i)]).to_bytes(8, "little")).digest() for i in idx]


class FolderImages(EvalImages):
    """An ImageFolder tree ``<root>/<class>/<file>`` decoded per item, with optional Resize + CenterCrop.

    Labels: when every class folder is an ImageNet-1k wnid they are ImageNet-1k indices (so a subset of classes keeps
    the model's label space, unlike ``torchvision.datasets.ImageFolder``'s sorted order); otherwise the sorted folder
    order (``label_space="folder"`` forces that).

    Args:
        root: the folder of class folders.
        resize: shorter side after resizing (PIL bilinear, antialiased); None keeps the size.
        crop: centre crop side; None keeps the size.
        label_space: ``"auto"``, ``"imagenet"`` (folders must be ImageNet wnids) or ``"folder"``.
        file_lists: a dict shared between folders with identical file names (the 75 ImageNet-C cells) so their
            listings are stored once.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        resize: int | None = 256,
        crop: int | None = 224,
        label_space: str = "auto",
        file_lists: dict[tuple[str, ...], tuple[str, ...]] | None = None,
    ) -> None:
        if label_space not in ("auto", "imagenet", "folder"):
            raise ValueError(f"label_space must be 'auto', 'imagenet' or 'folder', got {label_space!r}")
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder {str(self.root)!r} does not exist")
        classes = sorted(e.name for e in os.scandir(self.root) if e.is_dir())
        if not classes:
            raise ValueError(f"{self.root}: no class folders (expected <root>/<class>/<image files>)")
        index = wnid_to_index()
        non_wnids = [c for c in classes if c not in index]
        if label_space == "imagenet" and non_wnids:
            raise ValueError(f"{self.root}: folders are not ImageNet-1k wnids: {', '.join(non_wnids[:5])}")
        imagenet = label_space != "folder" and not non_wnids
        self.classes = tuple(classes)
        self.num_classes = len(index) if imagenet else len(classes)
        class_labels = [index[c] if imagenet else i for i, c in enumerate(classes)]
        file_lists = {} if file_lists is None else file_lists
        self._dirs: list[str] = []
        self._files: list[tuple[str, ...]] = []
        labels = []
        for name, label in zip(classes, class_labels):
            files = tuple(sorted(e.name for e in os.scandir(self.root / name)
                                 if e.is_file() and e.name.lower().endswith(IMG_EXTENSIONS)))
            if files:
                self._dirs.append(name)
                self._files.append(file_lists.setdefault(files, files))
                labels.append(label)
        self._labels = np.asarray(labels, dtype=np.int64)
        self._offsets = np.concatenate([[0], np.cumsum([len(f) for f in self._files], dtype=np.int64)])
        self.resize, self.crop = resize, crop
        steps = ([f"Resize({resize})"] if resize else []) + ([f"CenterCrop({crop})"] if crop else [])
        self.description = f"{self.root} ({'+'.join(steps) or 'as stored'})"

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def path(self, index: int) -> Path:
        """File of item ``index``."""
        d = self._dir_of(index)
        return self.root / self._dirs[d] / self._files[d][index - self._offsets[d]]

    def identity_digests(self, indices: Sequence[int] | np.ndarray | None = None) -> list[bytes]:
        """sha256 of each item's ``<class folder>/<file name without suffix>`` and label: the released ImageNet-C
        files (``.JPEG``) and ``vqsa corrupt`` outputs (``.png``) name the same example as the ImageNet val file."""
        idx = range(len(self)) if indices is None else indices
        out = []
        for i in idx:
            d = self._dir_of(int(i))
            stem = os.path.splitext(self._files[d][int(i) - self._offsets[d]])[0]
            out.append(hashlib.sha256(f"{self._dirs[d]}/{stem}\0{int(self._labels[d])}".encode()).digest())
        return out

    def _dir_of(self, index: int) -> int:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        return int(np.searchsorted(self._offsets, index, side="right") - 1)

    def load(self, index: int) -> tuple[np.ndarray, int]:
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms import functional as F

        path = self.path(index)
        try:
            with Image.open(path) as im:
                image = im.convert("RGB")
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            raise BadImageError(f"cannot decode image {path}: {e}") from e
        if self.resize:
            image = F.resize(image, self.resize, interpolation=InterpolationMode.BILINEAR, antialias=True)
        if self.crop:
            image = F.center_crop(image, self.crop)
        return np.asarray(image, dtype=np.uint8), int(self._labels[self._dir_of(index)])


class CorruptedImages(EvalImages):
    """``base`` corrupted on the fly by ``vqsa.corruptions.corrupt`` at one (corruption, severity).

    Deterministic per item: the random stream of item ``i`` is seeded from ``(seed, i, corruption, severity)``, so
    the result does not depend on the DataLoader worker, the rank or the order of access. ``jpeg_quality=85``
    adds the JPEG round trip of the released ImageNet-C files ("release parity").
    """

    def __init__(
        self, base: EvalImages, corruption: str, severity: int, seed: int = 0, profile: str = "auto",
        jpeg_quality: int | None = None,
    ) -> None:
        from vqsa.corruptions import CORRUPTIONS

        if corruption not in CORRUPTIONS:
            raise ValueError(f"unknown corruption {corruption!r}; expected one of {', '.join(CORRUPTIONS)}")
        if severity not in (1, 2, 3, 4, 5):
            raise ValueError(f"severity must be 1..5, got {severity!r}")
        if jpeg_quality is not None and not 1 <= jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be in 1..100 or None, got {jpeg_quality!r}")
        self.base, self.corruption, self.severity, self.seed, self.profile = base, corruption, severity, seed, profile
        self.jpeg_quality = jpeg_quality
        self.num_classes = base.num_classes
        jpeg = f", JPEG q{jpeg_quality}" if jpeg_quality else ""
        self.description = (f"{base.description}, on-the-fly {corruption} s{severity}, seed {seed}, "
                            f"profile {profile}{jpeg}")

    def __len__(self) -> int:
        return len(self.base)

    def identity_digests(self, indices: Sequence[int] | np.ndarray | None = None) -> list[bytes] | None:
        """The clean items' digests: a corrupted copy is the same example."""
        return self.base.identity_digests(indices)

    def load(self, index: int) -> tuple[np.ndarray, int]:
        from vqsa.corruptions import corrupt, derive_rng

        image, label = self.base.load(index)
        rng = derive_rng(self.seed, index, self.corruption, self.severity)  # the key `vqsa corrupt` uses for arrays
        out = corrupt(image, self.severity, self.corruption, rng=rng, profile=self.profile)
        if self.jpeg_quality:
            buf = io.BytesIO()
            Image.fromarray(out).save(buf, format="JPEG", quality=self.jpeg_quality, optimize=True)
            with Image.open(buf) as im:
                out = np.asarray(im.convert("RGB"))
        return out, label


def imagenet_c(
    root: str | os.PathLike, corruption: str, severity: int,
    file_lists: dict[tuple[str, ...], tuple[str, ...]] | None = None,
) -> FolderImages:
    """One cell of released ImageNet-C: ``<root>/<corruption>/<severity>/<wnid>/*.JPEG`` (224 px, ImageNet-1k labels).

    The files are already resized and cropped, so no second resize happens; CenterCrop(224) is a no-op on them (as in
    hendrycks ``test.py``).
    """
    folder = Path(root) / corruption / str(severity)
    if not folder.is_dir():
        raise FileNotFoundError(f"ImageNet-C folder {str(folder)!r} is missing ({corruption}, severity {severity})")
    return FolderImages(folder, resize=None, crop=224, label_space="imagenet", file_lists=file_lists)


def load_npy(path: Path) -> np.ndarray:
    """A memory-mapped ``.npy`` array; a damaged file (truncated, empty, not a .npy, pickled objects) is a one-line
    ``ValueError`` naming it."""
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        size = path.stat().st_size if path.is_file() else 0
        why = "it is empty" if size == 0 else str(e).splitlines()[0] if str(e) else type(e).__name__
        if "mmap length is greater than file size" in why:
            why = "it is shorter than its header says (truncated)"
        raise ValueError(f"{path}: not a readable .npy array ({why})") from e


def cifar10_c(root: str | os.PathLike, corruption: str, severity: int) -> ArrayImages:
    """One cell of released CIFAR-10-C: rows ``(severity-1)*n .. severity*n`` of ``<root>/<corruption>.npy``
    (memory-mapped; ``n`` = a fifth of the rows, 10000 in the release) with ``labels.npy``."""
    root = Path(root)
    path, label_path = root / f"{corruption}.npy", root / "labels.npy"
    if not path.is_file():
        raise FileNotFoundError(f"CIFAR-10-C file {str(path)!r} is missing ({corruption})")
    if not label_path.is_file():
        raise FileNotFoundError(f"CIFAR-10-C labels {str(label_path)!r} are missing")
    if severity not in (1, 2, 3, 4, 5):
        raise ValueError(f"severity must be 1..5, got {severity!r}")
    images, labels = load_npy(path), load_npy(label_path)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8 or len(images) % 5:
        raise ValueError(f"{path}: expected uint8 images of shape (5*n, H, W, 3), got {images.dtype} {images.shape}")
    if images.shape[1:3] != (32, 32):
        raise ValueError(f"{path}: holds {images.shape[1]}x{images.shape[2]} images; CIFAR-10-C images are 32x32")
    if labels.ndim != 1 or len(labels) != len(images):
        raise ValueError(f"{label_path}: expected {len(images)} labels (one per row of {path.name}), got "
                         f"{labels.shape}")
    n = len(images) // 5
    rows = slice((severity - 1) * n, severity * n)
    return ArrayImages(images[rows], np.asarray(labels[rows]), 10, f"{path}[severity {severity}]")

