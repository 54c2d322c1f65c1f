"""What the analyses share: picking images, corrupting them reproducibly and reading a VQSA model's features.

``extract_features`` runs the model once per batch and returns, for every image, the pooled backbone feature z
(before the VQSA block), the representation the classifier head receives (after it: ``forward_head(pre_logits=True)``),
the code index and the logits. Corrupted copies come from :class:`vqsa.data.corrupted.CorruptedImages`, so an image
corrupted here is the same array the on-the-fly evaluation sees for the same ``(seed, index, corruption, severity)``.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from vqsa.data.sampling import seeded_subset as data_subset


@dataclass
class Features:
    """Per-image outputs of a VQSA model (numpy, one row per image).

    Attributes:
        before: pooled backbone feature z, (N, d).
        after: the d-dim feature the final classifier layer sees (after quantization, fusion and attention), (N, d).
        indices: code index per image (N,), None for a model without a codebook.
        logits: (N, num_classes).
    """

    before: np.ndarray
    after: np.ndarray
    indices: np.ndarray | None
    logits: np.ndarray


def check_images(images: np.ndarray, name: str = "images") -> np.ndarray:
    """Validate a uint8 (N, H, W, 3) array and return it."""
    if not isinstance(images, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(images).__name__}")
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"{name} must be uint8 (N, H, W, 3), got {images.dtype} {images.shape}")
    if len(images) == 0:
        raise ValueError(f"{name} is empty")
    return images


def to_tensor(images: np.ndarray, device: str | torch.device = "cpu") -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float (N, 3, H, W) in [0, 1] on ``device``."""
    check_images(images)
    return torch.from_numpy(np.ascontiguousarray(images)).to(device).permute(0, 3, 1, 2).float().div_(255)


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a parameterless model)."""
    for t in (*model.parameters(), *model.buffers()):
        return t.device
    return torch.device("cpu")


def select_per_class(labels: np.ndarray, classes: Sequence[int], per_class: int, seed: int = 0) -> np.ndarray:
    """Indices of ``per_class`` seeded random images of each class in ``classes`` (grouped by class, in that order).

    Raises ValueError when a class has fewer images than asked for.
    """
    labels = np.asarray(labels)
    if per_class < 1:
        raise ValueError(f"per_class must be >= 1, got {per_class}")
    rng = np.random.default_rng(seed)
    out = []
    for c in classes:
        pool = np.flatnonzero(labels == c)
        if len(pool) < per_class:
            raise ValueError(f"class {c} has {len(pool)} image(s), fewer than the {per_class} asked for")
        out.append(np.sort(rng.choice(pool, per_class, replace=False)))
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def seeded_subset(n_total: int, n: int | None, seed: int = 0) -> np.ndarray:
    """Sorted seeded random indices of ``n`` of ``n_total`` items (all when ``n`` is None or too large)."""
    if n is not None and n < 1:
        raise ValueError(f"the number of images must be >= 1, got {n}")
    idx = data_subset(n_total, n, seed)
    return np.arange(n_total) if idx is None else idx


def corrupt_images(
    images: np.ndarray, corruption: str, severity: int, *, indices: np.ndarray | None = None, seed: int = 0,
    profile: str = "auto",
) -> np.ndarray:
    """``images[indices]`` (all when None) corrupted at one (corruption, severity), as a uint8 array.

    Item ``k`` is drawn with the random stream of ``(seed, k, corruption, severity)``, exactly as the on-the-fly
    evaluation (:class:`vqsa.data.corrupted.CorruptedImages`) draws dataset index ``k``.
    """
    from vqsa.data.corrupted import ArrayImages, CorruptedImages

    check_images(images)
    ids = np.arange(len(images)) if indices is None else np.asarray(indices, dtype=np.int64)
    if ids.ndim != 1 or (len(ids) and (ids.min() < 0 or ids.max() >= len(images))):
        raise ValueError(f"indices must be a 1-D array of positions in [0, {len(images)})")
    base = ArrayImages(images, np.zeros(len(images), dtype=np.int64), 1, "analysis images")
    cell = CorruptedImages(base, corruption, severity, seed=seed, profile=profile)
    out = np.empty((len(ids), *images.shape[1:]), dtype=np.uint8)
    for i, k in enumerate(ids):
        out[i] = cell.load(int(k))[0]
    return out


@torch.no_grad()
def extract_features(model: nn.Module, images: np.ndarray, batch_size: int = 128) -> Features:
    """Run ``model`` (a :class:`vqsa.models.VQSAClassifier`) in eval mode on uint8 images and collect its features.

    The codebook's usage counters are left as they were (analysis does not count as use).
    """
    for attr in ("forward_features", "forward_head", "fc"):
        if not hasattr(model, attr):
            raise TypeError(f"extract_features needs a vqsa VQSAClassifier (no .{attr} on {type(model).__name__})")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    check_images(images)
    device = model_device(model)
    vq = getattr(model, "vq", None)
    saved = vq.usage_counts.clone() if vq is not None else None
    was_training = model.training
    model.eval()
    before, after, indices, logits = [], [], [], []
    try:
        for start in range(0, len(images), batch_size):
            x = to_tensor(images[start:start + batch_size], device)
            out = model.forward_head(model.forward_features(x), pre_logits=True, return_aux=True)
            before.append(out.features.float().cpu())
            after.append(out.logits.float().cpu())
            logits.append(model.fc(out.logits).float().cpu())
            if out.indices is not None:
                indices.append(out.indices.cpu())
    finally:
        model.train(was_training)
        if saved is not None:
            vq.usage_counts.copy_(saved)
    return Features(
        before=torch.cat(before).numpy(), after=torch.cat(after).numpy(),
        indices=torch.cat(indices).numpy() if indices else None, logits=torch.cat(logits).numpy(),
    )
