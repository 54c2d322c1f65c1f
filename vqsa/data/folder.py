"""ImageFolder trees (``root/<class>/<image>``, e.g. ImageNet train/val) as uint8 image sources.

Same class ordering and file discovery as ``torchvision.datasets.ImageFolder`` (sorted class folders, the usual
image extensions); images are decoded with PIL and converted to RGB (ImageNet has grayscale and CMYK JPEGs).
A file that cannot be decoded raises :class:`~vqsa.data.mixed.BadImageError` naming it; the training dataset can
skip and count such files instead (``--skip-bad``).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from torchvision.datasets.folder import IMG_EXTENSIONS

from .mixed import BadImageError


class ImageFolderSource:
    """Files and labels of an ImageFolder tree; ``load(i)`` returns ``(uint8 HWC RGB array, label)``."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder {str(self.root)!r} does not exist")
        self.classes = tuple(sorted(e.name for e in os.scandir(self.root) if e.is_dir()))
        if not self.classes:
            raise ValueError(f"{str(self.root)!r} has no class folders (expected the layout root/<class>/<image>)")
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        samples: list[tuple[str, int]] = []
        for cls in self.classes:
            for dirpath, _, files in sorted(os.walk(self.root / cls, followlinks=True)):
                samples += [
                    (os.path.join(dirpath, f), self.class_to_idx[cls])
                    for f in sorted(files)
                    if f.lower().endswith(IMG_EXTENSIONS)
                ]
        if not samples:
            raise ValueError(
                f"no images under {str(self.root)!r} (looked for {', '.join(IMG_EXTENSIONS)} in {len(self.classes)} "
                "class folders)"
            )
        self.samples = samples
        self.labels = np.array([y for _, y in samples], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int) -> tuple[np.ndarray, int]:
        path, label = self.samples[index]
        try:
            with Image.open(path) as im:
                img = np.asarray(im.convert("RGB"))
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
            raise BadImageError(f"cannot decode image file {path!r}: {e}") from e
        return img, label
