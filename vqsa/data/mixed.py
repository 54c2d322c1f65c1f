"""Mixed clean + corrupted training data (Eq. 1 of the paper): each sample gets identity or one corruption x severity.

The draw is a pure function of ``(seed, epoch, index)``, so DataLoader workers, DDP ranks and resumed runs agree on
every sample without sharing state:

- ``mode="stratified"`` (the authors' scheme): the grid {identity} + corruptions x severities (16 x 5 = 80 cells by
  default) is dealt without replacement and refilled when empty. Dataset indices are cut into consecutive blocks of
  one grid's size; each block gets its own seeded permutation of the grid per epoch, so any block of 80 consecutive
  indices covers every cell exactly once, and the cell a sample gets changes from epoch to epoch.
- ``mode="uniform"``: every sample draws a cell independently and uniformly.
- ``clean_fraction=p`` replaces the identity row of the grid by an independent clean/corrupted coin (probability
  ``p`` of clean); the corrupted samples then cycle over the corruptions x severities grid as above.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from vqsa.utils.io import BadImageError  # noqa: F401  (re-exported: vqsa.data.BadImageError)

from .cifar import ArrayDataset
from .transforms import to_chw_tensor

CLEAN = -1  # corruption index of the identity function
# Independent random streams of one sample, keyed (seed, epoch, index, stream).
_STREAM_UNIFORM, _STREAM_CLEAN, _STREAM_AUGMENT, _STREAM_CORRUPT, _STREAM_BLOCK, _STREAM_AUGMIX = range(6)


class ImageSource(Protocol):
    """Anything indexable that yields ``(uint8 HWC image, int label)`` via ``load(index)``."""

    def __len__(self) -> int: ...

    def load(self, index: int) -> tuple[np.ndarray, int]: ...


class ArraySource:
    """An :class:`ArrayDataset` seen as an :class:`ImageSource`."""

    def __init__(self, dataset: ArrayDataset) -> None:
        self.dataset = dataset
        self.classes = dataset.classes

    def __len__(self) -> int:
        return len(self.dataset)

    def load(self, index: int) -> tuple[np.ndarray, int]:
        return self.dataset.images[index], int(self.dataset.labels[index])


@dataclass(frozen=True)
class CorruptionSchedule:
    """Which corruption (index into ``corruptions``, or :data:`CLEAN`) and severity each (epoch, index) gets."""

    corruptions: tuple[str, ...]
    severities: tuple[int, ...] = (1, 2, 3, 4, 5)
    mode: str = "stratified"
    clean_fraction: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.corruptions, str):
            raise TypeError("corruptions must be a sequence of names, not a single string")
        object.__setattr__(self, "corruptions", tuple(self.corruptions))
        object.__setattr__(self, "severities", tuple(int(s) for s in self.severities))
        if self.mode not in ("stratified", "uniform"):
            raise ValueError(f"mode must be 'stratified' or 'uniform', got {self.mode!r}")
        if not self.severities or any(not 1 <= s <= 5 for s in self.severities):
            raise ValueError(f"severities must be a non-empty subset of 1..5, got {self.severities}")
        if len(set(self.corruptions)) != len(self.corruptions):
            raise ValueError(f"corruptions listed twice: {self.corruptions}")
        if self.clean_fraction is not None and not 0.0 <= self.clean_fraction <= 1.0:
            raise ValueError(f"clean_fraction must be in [0, 1] or None, got {self.clean_fraction}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        rows = ([] if self.clean_fraction is not None else [CLEAN]) + list(range(len(self.corruptions)))
        cells = np.array([(c, s) for c in rows for s in self.severities], dtype=np.int64).reshape(-1, 2)
        object.__setattr__(self, "_cells", cells)

    @property
    def grid(self) -> np.ndarray:
        """The (corruption index, severity) cells dealt by the cycle, shape (K, 2); identity rows use CLEAN."""
        return self._cells.copy()

    def cell(self, epoch: int, index: int) -> int:
        """Row of :attr:`grid` dealt to sample ``index`` in ``epoch`` (-1 when ``clean_fraction`` made it clean)."""
        if epoch < 0 or index < 0:
            raise ValueError(f"epoch and index must be >= 0, got {epoch}, {index}")
        if not self.corruptions:
            return -1
        if self.clean_fraction is not None and self.clean_fraction > 0.0:  # a coin that lands below 0 never
            if (self.clean_fraction == 1.0
                    or np.random.default_rng([self.seed, epoch, index, _STREAM_CLEAN]).random() < self.clean_fraction):
                return -1
        k = len(self._cells)
        if self.mode == "uniform":
            return int(np.random.default_rng([self.seed, epoch, index, _STREAM_UNIFORM]).integers(k))
        block, pos = divmod(index, k)
        return int(_block_permutation(self.seed, epoch, block, k)[pos])

    def draw(self, epoch: int, index: int) -> tuple[int, int]:
        """``(corruption index or CLEAN, severity)`` of sample ``index`` in ``epoch``; severity is 0 for clean."""
        cell = self.cell(epoch, index)
        if cell < 0 or self._cells[cell, 0] == CLEAN:
            return CLEAN, 0
        c, s = self._cells[cell]
        return int(c), int(s)

    def name(self, corruption_index: int) -> str:
        return "clean" if corruption_index == CLEAN else self.corruptions[corruption_index]


@functools.lru_cache(maxsize=8192)
def _block_permutation(seed: int, epoch: int, block: int, k: int) -> np.ndarray:
    """The stratified cycle's order of the ``k`` grid cells in one block of one epoch (cached: every sample of the
    block reads it)."""
    order = np.random.default_rng([seed, epoch, block, _STREAM_BLOCK]).permutation(k)
    order.flags.writeable = False
    return order


def sample_rng(seed: int, epoch: int, index: int, stream: int) -> np.random.Generator:
    """The generator of one random stream of one sample (augmentation, corruption noise, ...)."""
    return np.random.default_rng([seed, epoch, index, stream])


class MixedCorruptionDataset(torch.utils.data.Dataset):
    """Training view of a source: random crop/flip on the uint8 image, then the scheduled corruption.

    Items are dicts: ``image`` (uint8 CHW tensor, corrupted unless ``apply_corruption=False``), ``label``,
    ``corruption`` (index into ``schedule.corruptions`` or :data:`CLEAN`), ``severity`` (0 when clean) and, with
    ``pairs=True``, ``clean`` (the same crop without corruption). With an ``augment`` (e.g. AugMix) and
    ``augment_views=0`` the crop is augmented before the corruption; with ``augment_views=k`` the image stays as
    drawn and ``augmented`` holds k augmented views of the crop (k, C, H, W), for a consistency loss such as
    AugMix's Jensen-Shannon term. With ``skip_bad=True`` an undecodable image gives
    None, which :func:`collate_mixed` drops and counts. Call :meth:`set_epoch` before each epoch (workers must not
    be persistent, so that they see it).

    Args:
        source: an :class:`ImageSource` or an :class:`ArrayDataset`.
        schedule: the corruption draw.
        transform: ``transform(img, rng) -> img`` on uint8 HWC arrays (e.g. :class:`TrainTransform`).
        corrupt_fn: ``corrupt_fn(img, severity, name, rng=..., profile=...) -> img``; defaults to
            ``vqsa.corruptions.corrupt``.
        apply_corruption: False to return clean crops with the draw only, for a device-side engine.
        augment: ``augment(img, rng) -> img`` on the uint8 crop (e.g. :class:`vqsa.data.augmix.AugMixTransform`).
        augment_views: 0 (augment the training image itself) or the number of extra augmented views.
    """

    def __init__(
        self,
        source: ImageSource | ArrayDataset,
        schedule: CorruptionSchedule,
        transform: Callable[[np.ndarray, np.random.Generator], np.ndarray],
        *,
        corrupt_fn: Callable[..., np.ndarray] | None = None,
        profile: str = "auto",
        pairs: bool = False,
        apply_corruption: bool = True,
        skip_bad: bool = False,
        augment: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None,
        augment_views: int = 0,
    ) -> None:
        self.source = ArraySource(source) if isinstance(source, ArrayDataset) else source
        if len(self.source) == 0:
            raise ValueError("the training source is empty")
        self.schedule = schedule
        self.transform = transform
        self.corrupt_fn = corrupt_fn
        self.profile = profile
        self.pairs = pairs
        self.apply_corruption = apply_corruption
        self.skip_bad = skip_bad
        if augment_views and augment is None:
            raise ValueError("augment_views needs an augment")
        if pairs and augment_views:
            raise ValueError("pairs and augmented views are two kinds of extra view: choose one")
        self.augment, self.augment_views = augment, int(augment_views)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.source)

    def _corrupt(self, img: np.ndarray, severity: int, name: str, rng: np.random.Generator) -> np.ndarray:
        if self.corrupt_fn is None:
            from vqsa.corruptions import corrupt

            self.corrupt_fn = corrupt
        out = np.asarray(self.corrupt_fn(img, severity, name, rng=rng, profile=self.profile))
        if out.dtype != np.uint8 or out.shape != img.shape:
            raise ValueError(f"corruption {name!r} returned {out.dtype} {out.shape}, expected uint8 {img.shape}")
        return out

    def __getitem__(self, index: int) -> dict[str, Any] | None:
        seed, epoch = self.schedule.seed, self.epoch
        try:
            img, label = self.source.load(index)
        except BadImageError:
            if self.skip_bad:
                return None
            raise
        crop = self.transform(img, sample_rng(seed, epoch, index, _STREAM_AUGMENT))
        views: list[np.ndarray] = []
        if self.augment is not None:
            rng = sample_rng(seed, epoch, index, _STREAM_AUGMIX)
            views = [self.augment(crop, rng) for _ in range(max(1, self.augment_views))]
            if not self.augment_views:
                crop, views = views[0], []
        c, s = self.schedule.draw(epoch, index)
        out = crop
        if c != CLEAN and self.apply_corruption:
            out = self._corrupt(crop, s, self.schedule.corruptions[c], sample_rng(seed, epoch, index, _STREAM_CORRUPT))
        item = {"image": to_chw_tensor(out), "label": label, "corruption": c, "severity": s, "index": index}
        if self.pairs:
            item["clean"] = to_chw_tensor(crop)
        if views:
            item["augmented"] = torch.stack([to_chw_tensor(v) for v in views])
        return item


def collate_mixed(batch: list[dict[str, Any] | None]) -> dict[str, Any]:
    """Stack the items of :class:`MixedCorruptionDataset`; dropped (None) items are counted in ``bad``."""
    good = [b for b in batch if b is not None]
    out: dict[str, Any] = {"bad": len(batch) - len(good)}
    if not good:
        return out
    out["image"] = torch.stack([b["image"] for b in good])
    for key in ("label", "corruption", "severity", "index"):
        out[key] = torch.tensor([b[key] for b in good], dtype=torch.int64)
    for key in ("clean", "augmented"):
        if key in good[0]:
            out[key] = torch.stack([b[key] for b in good])
    return out
