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

from vqsa.utils.paths import walk_tree

from .mixed import BadImageError

FolderListing = tuple[tuple[str, ...], list[tuple[str, ...]]]


def scan_image_folder(root: str | os.PathLike) -> FolderListing:
    """The sorted class folders of ``root`` and, per class, its image files relative to the class folder (in
    ``torchvision.datasets.ImageFolder``'s order); a small picklable listing to build :class:`ImageFolderSource` from.

    Raises:
        FileNotFoundError: ``root`` does not exist.
        ValueError: it has no class folders, or no image in any of them.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {str(root)!r} does not exist")
    classes = tuple(sorted(e.name for e in os.scandir(root) if e.is_dir()))
    if not classes:
        raise ValueError(f"{str(root)!r} has no class folders (expected the layout root/<class>/<image>)")
    files: list[tuple[str, ...]] = []
    for cls in classes:
        top = str(root / cls)
        names: list[str] = []
        for dirpath, _, filenames in sorted(walk_tree(top)):
            sub = os.path.join(dirpath[len(top) + 1:], "") if dirpath != top else ""  # "a/b/" below the class
            names += [sub + f for f in sorted(filenames) if f.lower().endswith(IMG_EXTENSIONS)]
        files.append(tuple(names))
    if not any(files):
        raise ValueError(
            f"no images under {str(root)!r} (looked for {', '.join(IMG_EXTENSIONS)} in {len(classes)} "
            "class folders)"
        )
    return classes, files


class ImageFolderSource:
    """Files and labels of an ImageFolder tree; ``load(i)`` returns ``(uint8 HWC RGB array, label)``.

    ``listing``: the tree's :func:`scan_image_folder` (e.g. made on rank 0 and broadcast); scanned here when None.
    """

    def __init__(self, root: str | os.PathLike, listing: FolderListing | None = None) -> None:
        self.root = Path(root)
        self.classes, files = scan_image_folder(self.root) if listing is None else listing
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        tops = [os.path.join(self.root / cls, "") for cls in self.classes]  # "root/cls/": top + f == join(top, f)
        self.samples: list[tuple[str, int]] = [
            (top + f, i) for i, (top, names) in enumerate(zip(tops, files)) for f in names
        ]
        self.labels = np.array([y for _, y in self.samples], dtype=np.int64)

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
