"""Build the training/validation sources and the mixed-corruption dataset from a :class:`TrainConfig`."""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vqsa.corruptions import resolve_corruptions  # noqa: F401  (the engine imports it from here)
from vqsa.data.augmix import AugMixTransform
from vqsa.data.cifar import ArrayDataset, find_cifar10, load_cifar10
from vqsa.data.folder import FolderListing, ImageFolderSource, scan_image_folder
from vqsa.data.mixed import ArraySource, CorruptionSchedule, ImageSource, MixedCorruptionDataset
from vqsa.data.paths import resolve_data_root
from vqsa.data.sampling import seeded_subset
from vqsa.data.transforms import EvalTransform, TrainTransform, default_style
from vqsa.utils import distributed as dist

from .config import TrainConfig

logger = logging.getLogger(__name__)

DIGITS_NOTE = (
    "note: using scikit-learn's bundled digits (1,797 real 8x8 handwritten digits, upscaled to 32x32 RGB) because "
    "no CIFAR-10 was found; pass --data-root DIR or set $VQSA_DATA for CIFAR-10"
)


@dataclass
class TrainData:
    """Sources of one run: ``val_arrays`` is the validation split as arrays when it fits in memory (else None)."""

    train: ImageSource
    val: ImageSource
    classes: tuple[str, ...]
    img_size: int
    style: str
    val_arrays: ArrayDataset | None
    description: str
    val_split: tuple[ArrayDataset, np.ndarray | None] | None = None
    """The whole validation split and the indices of ``val_arrays`` in it (None: all of it): the end-of-training
    evaluation records split indices, so ``vqsa evaluate --indices-from`` can repeat it."""


class SubsetSource:
    """A fixed subset (sorted indices) of an :class:`ImageSource`."""

    def __init__(self, source: ImageSource, indices: np.ndarray) -> None:
        self.source, self.indices = source, np.asarray(indices, dtype=np.int64)
        self.classes = getattr(source, "classes", ())

    def __len__(self) -> int:
        return len(self.indices)

    def load(self, index: int) -> tuple[np.ndarray, int]:
        return self.source.load(int(self.indices[index]))


@functools.lru_cache(maxsize=1)
def _digits_images() -> tuple[np.ndarray, np.ndarray]:
    import torch
    import torch.nn.functional as F

    try:
        from sklearn.datasets import load_digits as _sk_digits
    except ImportError as e:
        raise RuntimeError("the digits fallback needs scikit-learn (pip install scikit-learn)") from e
    d = _sk_digits()
    x = torch.from_numpy(255.0 - d.images * (255.0 / 16.0)).float()[:, None]  # (N, 1, 8, 8), 0..16 ink -> paper
    x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False).clamp_(0, 255).round_()
    images = x.to(torch.uint8).expand(-1, 3, -1, -1).permute(0, 2, 3, 1).contiguous().numpy()
    images.flags.writeable = False
    return images, d.target.astype(np.int64)


def load_digits(split: str, seed: int = 0) -> ArrayDataset:
    """scikit-learn's digits as a CIFAR-like ArrayDataset: dark ink on white, bilinear-upscaled to 32x32 RGB.

    A fixed seeded 80/20 split (1,438 train / 359 test images).
    """
    if split not in ("train", "test"):
        raise ValueError(f"unknown digits split {split!r}; expected 'train' or 'test'")
    images, labels = _digits_images()
    perm = np.random.default_rng(seed).permutation(len(images))
    n_train = int(round(0.8 * len(images)))
    idx = np.sort(perm[:n_train] if split == "train" else perm[n_train:])
    return ArrayDataset(images[idx], labels[idx], tuple(str(i) for i in range(10)), f"digits[{split}]")


def _cifar_root(cfg: TrainConfig) -> Path:
    root = resolve_data_root(cfg.data.root)
    if root is not None:
        try:
            return find_cifar10(root)
        except FileNotFoundError:
            if not cfg.data.download:
                raise
    if not cfg.data.download:
        raise FileNotFoundError(
            "CIFAR-10 needs a data root: pass --data-root DIR or set $VQSA_DATA (or add --download when online)"
        )
    from torchvision.datasets import CIFAR10

    target = root if root is not None else Path("data")
    for train in (True, False):
        CIFAR10(str(target), train=train, download=True)
    return find_cifar10(target)


def _subset_arrays(ds: ArrayDataset, n: int | None, seed: int) -> ArrayDataset:
    return ds.subset(n, seed=seed) if n is not None else ds


def _subset_source(src: ImageSource, n: int | None, seed: int) -> ImageSource:
    idx = seeded_subset(len(src), n, seed)
    return src if idx is None else SubsetSource(src, idx)


def _scan_folders(
    data_root: str | None, train_split: str, val_split: str
) -> tuple[Path, FolderListing, FolderListing]:
    """The data root and the listings of its train and val folders."""
    root = resolve_data_root(data_root, required=True)
    assert root is not None
    return root, scan_image_folder(root / train_split), scan_image_folder(root / val_split)


def build_train_data(cfg: TrainConfig) -> TrainData:
    """Load the configured dataset: ``cifar10`` (npz or torchvision folder), ``imagefolder`` or ``digits``."""
    d = cfg.data
    if d.dataset in ("cifar10", "digits"):
        if d.dataset == "cifar10":
            root = _cifar_root(cfg)
            train, val = load_cifar10(root, "train"), load_cifar10(root, "test")
        else:
            logger.warning(DIGITS_NOTE)
            train, val = load_digits("train"), load_digits("test")
        train = _subset_arrays(train, d.train_subset, cfg.seed)
        split, val_idx = val, val.subset_indices(d.val_subset, cfg.seed)
        val = _subset_arrays(val, d.val_subset, cfg.seed)
        size = d.img_size or 32
        return TrainData(ArraySource(train), ArraySource(val), train.classes, size, default_style(size), val,
                         f"{train.source} ({len(train)} train, {len(val)} val)", (split, val_idx))
    # listed once, on rank 0, and broadcast (a missing or empty folder raises the same error on every rank)
    root, train_list, val_list = dist.run_on_rank0(_scan_folders, d.root, d.train_split, d.val_split)
    train_src = ImageFolderSource(root / d.train_split, train_list)
    val_src = ImageFolderSource(root / d.val_split, val_list)
    if val_src.classes != train_src.classes:
        raise ValueError(
            f"{root / d.val_split} has {len(val_src.classes)} class folders that differ from the "
            f"{len(train_src.classes)} of {root / d.train_split}"
        )
    size = d.img_size or 224
    train = _subset_source(train_src, d.train_subset, cfg.seed)
    val = _subset_source(val_src, d.val_subset, cfg.seed)
    return TrainData(train, val, train_src.classes, size, default_style(size), None,
                     f"{root} ({len(train)} train, {len(val)} val images in {len(train_src.classes)} classes)")


def build_datasets(
    cfg: TrainConfig, data: TrainData, train_corruptions: tuple[str, ...], corrupt_on: str = "cpu"
) -> tuple[MixedCorruptionDataset, MixedCorruptionDataset]:
    """The mixed training set and the clean validation set (same uint8 -> tensor path, no corruption).
    ``corrupt_on``: ``cpu`` corrupts in the dataset (the workers), ``device`` leaves it to the training loop."""
    c = cfg.corruption
    schedule = CorruptionSchedule(train_corruptions, tuple(c.severities), c.mode, c.clean_fraction, cfg.seed)
    augment = None
    if c.augment == "augmix":
        augment = AugMixTransform(c.augmix_severity, c.augmix_width, c.augmix_depth, c.augmix_alpha,
                                  c.augmix_all_ops)
    train = MixedCorruptionDataset(
        data.train, schedule, TrainTransform(data.img_size, data.style, cfg.data.crop_padding), profile=c.profile,
        pairs=c.pairs, apply_corruption=corrupt_on == "cpu", skip_bad=cfg.data.skip_bad, augment=augment,
        augment_views=2 if c.jsd else 0,
    )
    val = MixedCorruptionDataset(
        data.val, CorruptionSchedule((), seed=cfg.seed), EvalTransform(data.img_size, data.style),
        skip_bad=cfg.data.skip_bad,
    )
    return train, val
