"""Training and evaluation transforms on uint8 HWC arrays, driven by an explicit ``np.random.Generator``.

They follow torchvision's conventions (RandomResizedCrop(224, scale=(0.08, 1), ratio=(3/4, 4/3)) + flip for ImageNet,
RandomCrop(32, padding=4) + flip for CIFAR, Resize(256) + CenterCrop(224) for evaluation) but take the random
generator as an argument, so a sample's augmentation is a pure function of its seed: DataLoader workers, ranks and
resumed runs all agree. Images stay uint8 so that the corruption engine sees uint8 crops; batches are turned into
float [0, 1] tensors with :func:`to_float` after they reach the device (the models normalise internally).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image


def _check_image(img: np.ndarray) -> None:
    if not isinstance(img, np.ndarray):
        raise TypeError(f"expected a numpy uint8 HWC image, got {type(img).__name__}")
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected a uint8 (H, W, 3) image, got {img.dtype} {img.shape}")


def _resize(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize to (h, w) with PIL (antialiased when shrinking, as torchvision on PIL images)."""
    h, w = size
    if img.shape[:2] == (h, w):
        return img
    return np.asarray(Image.fromarray(img).resize((w, h), Image.BILINEAR))


def random_resized_crop(
    img: np.ndarray,
    size: int,
    rng: np.random.Generator,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> np.ndarray:
    """torchvision's RandomResizedCrop: a random area/aspect crop resized to ``size`` x ``size``."""
    _check_image(img)
    height, width = img.shape[:2]
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            i = int(rng.integers(0, height - h + 1))
            j = int(rng.integers(0, width - w + 1))
            return _resize(img[i : i + h, j : j + w], (size, size))
    # Fallback (as torchvision): the largest centred crop with the aspect ratio clamped to ``ratio``.
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        h, w = height, int(round(height * ratio[1]))
    else:
        w, h = width, height
    i, j = (height - h) // 2, (width - w) // 2
    return _resize(img[i : i + h, j : j + w], (size, size))


def pad_random_crop(img: np.ndarray, size: int, padding: int, rng: np.random.Generator) -> np.ndarray:
    """torchvision's RandomCrop(size, padding) with zero fill (the crop is cut from the image and the zeros
    around it, without building the padded image)."""
    _check_image(img)
    h, w = img.shape[:2]
    if h + 2 * padding < size or w + 2 * padding < size:
        raise ValueError(f"image of {h}x{w} px is too small for a {size} px crop")
    top = int(rng.integers(0, h + 2 * padding - size + 1)) - padding  # the crop's corner in image coordinates
    left = int(rng.integers(0, w + 2 * padding - size + 1)) - padding
    if padding == 0:
        return img[top : top + size, left : left + size]
    out = np.zeros((size, size, img.shape[2]), dtype=img.dtype)
    y0, y1 = max(top, 0), min(top + size, h)
    x0, x1 = max(left, 0), min(left + size, w)
    if y0 < y1 and x0 < x1:
        out[y0 - top : y1 - top, x0 - left : x1 - left] = img[y0:y1, x0:x1]
    return out


def random_hflip(img: np.ndarray, rng: np.random.Generator, p: float = 0.5) -> np.ndarray:
    """Mirror left-right with probability ``p``."""
    return img[:, ::-1] if rng.random() < p else img


def resize_center_crop(img: np.ndarray, size: int, crop_pct: float = 0.875) -> np.ndarray:
    """Resize the short side to ``size / crop_pct`` then take the central ``size`` x ``size`` crop (256 -> 224)."""
    _check_image(img)
    h, w = img.shape[:2]
    short = int(math.floor(size / crop_pct))
    if h <= w:
        new_h, new_w = short, int(short * w / h)
    else:
        new_h, new_w = int(short * h / w), short
    img = _resize(img, (new_h, new_w))
    i, j = int(round((new_h - size) / 2)), int(round((new_w - size) / 2))
    return img[i : i + size, j : j + size]


@dataclass(frozen=True)
class TrainTransform:
    """Random crop + flip on a uint8 HWC image; ``style`` "cifar" (pad-crop) or "imagenet" (random-resized crop)."""

    size: int
    style: str = "imagenet"
    padding: int = 4

    def __post_init__(self) -> None:
        if self.style not in ("cifar", "imagenet"):
            raise ValueError(f"TrainTransform style must be 'cifar' or 'imagenet', got {self.style!r}")
        if self.size <= 0:
            raise ValueError(f"TrainTransform size must be > 0, got {self.size}")

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.style == "cifar":
            if img.shape[:2] != (self.size, self.size):
                img = _resize(img, (self.size, self.size))
            img = pad_random_crop(img, self.size, self.padding, rng)
        else:
            img = random_resized_crop(img, self.size, rng)
        return np.ascontiguousarray(random_hflip(img, rng))


@dataclass(frozen=True)
class EvalTransform:
    """Deterministic evaluation view: plain resize for small images, Resize + CenterCrop(``crop_pct``) otherwise."""

    size: int
    style: str = "imagenet"
    crop_pct: float = 0.875

    def __call__(self, img: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        _check_image(img)
        if self.style == "cifar":
            return _resize(img, (self.size, self.size))
        return resize_center_crop(img, self.size, self.crop_pct)


def default_style(img_size: int) -> str:
    """CIFAR-style pad-crop for small images (<= 64 px), ImageNet-style random-resized crop above."""
    return "cifar" if img_size <= 64 else "imagenet"


def to_chw_tensor(img: np.ndarray) -> torch.Tensor:
    """uint8 HWC array -> uint8 CHW tensor (no copy of the pixel values beyond making them contiguous)."""
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))


def to_float(batch: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float32 in [0, 1]; float input is returned unchanged."""
    if batch.dtype == torch.uint8:
        return batch.float().div_(255.0)
    if not batch.is_floating_point():
        raise TypeError(f"expected a uint8 or float image batch, got {batch.dtype}")
    return batch
