"""Image files for the folder writer: decoding, ImageNet-C's preprocessing, encoding, listing a tree, and
telling a complete output file from a truncated one."""
from __future__ import annotations

import io
import os
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from vqsa.utils.io import (
    BadImageError,
)
from vqsa.utils.paths import walk_tree

from .validate import check_size

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def load_rgb(path: str | os.PathLike) -> Image.Image:
    """Decode an image file fully and convert it to RGB (grey, RGBA, palette, CMYK, ...: like torchvision).

    Raises:
        BadImageError: the file is unreadable, truncated or not an image; the message names the file.
    """
    try:
        with Image.open(path) as im:
            im.load()  # decodes everything: a truncated file fails here, not later
            return im.convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise BadImageError(f"cannot read image {os.fspath(path)!r}: {e}") from e


def imagenet_c_preprocess(image: Image.Image, resize: int | None = 256, center_crop: int | None = 224) -> np.ndarray:
    """torchvision ``Resize(resize)`` (PIL bilinear, short side) then ``CenterCrop(center_crop)``, as uint8 HWC.

    Either step is skipped when its size is None. Matches torchvision pixel for pixel, including the zero padding
    of ``CenterCrop`` on images smaller than the crop.
    """
    if not isinstance(image, Image.Image):
        raise TypeError(f"image must be a PIL image, got {type(image).__name__}")
    resize, center_crop = check_size("resize", resize), check_size("center_crop", center_crop)
    image = image.convert("RGB")
    if resize is not None:
        w, h = image.size
        short, long = min(w, h), max(w, h)
        new_short, new_long = resize, int(resize * long / short)
        size = (new_short, new_long) if w <= h else (new_long, new_short)
        if size != (w, h):
            image = image.resize(size, Image.BILINEAR)
    arr = np.asarray(image, dtype=np.uint8)
    if center_crop is None:
        return np.ascontiguousarray(arr)
    h, w = arr.shape[:2]
    c = center_crop
    if c > h or c > w:  # zero padding, split as torchvision does (extra pixel on the right/bottom)
        top, left = max(c - h, 0) // 2, max(c - w, 0) // 2
        padded = np.zeros((max(h, c), max(w, c), 3), np.uint8)
        padded[top : top + h, left : left + w] = arr
        arr, (h, w) = padded, padded.shape[:2]
    top, left = int(round((h - c) / 2.0)), int(round((w - c) / 2.0))
    return np.ascontiguousarray(arr[top : top + c, left : left + c])


def encode_image(array: np.ndarray, jpeg_quality: int | None = None) -> bytes:
    """PNG (lossless) bytes, or JPEG bytes at ``jpeg_quality`` with ``optimize=True`` (as the ImageNet-C release).

    PNG uses zlib level 1: about 4x faster than Pillow's default level 6 for files only ~6 % larger (at 224 px the
    default level costs more than most corruptions).
    """
    buf = io.BytesIO()
    img = Image.fromarray(array)
    if jpeg_quality is None:
        img.save(buf, format="PNG", compress_level=1)
    else:
        img.save(buf, format="JPEG", quality=jpeg_quality, optimize=True)
    return buf.getvalue()


def list_images(src: str | os.PathLike) -> list[PurePosixPath]:
    """Image files under ``src`` as sorted relative POSIX paths (hidden files and folders are ignored).

    Works for an ImageFolder layout (``src/<class>/.../<file>``) and a flat folder alike.

    Raises:
        FileNotFoundError: ``src`` does not exist.  ValueError: ``src`` is not a folder or holds no images.
    """
    root = Path(src)
    if not root.exists():
        raise FileNotFoundError(f"source folder {str(root)!r} does not exist")
    if not root.is_dir():
        raise ValueError(f"source {str(root)!r} is not a folder (for a single image use --gallery)")
    found: list[PurePosixPath] = []
    for dirpath, _, filenames in walk_tree(root, skip_hidden=True):
        rel_dir = Path(dirpath).relative_to(root)
        found.extend(
            PurePosixPath(rel_dir.as_posix()) / f
            for f in filenames
            if not f.startswith(".") and f.lower().endswith(IMAGE_EXTENSIONS)
        )
    if not found:
        raise ValueError(f"no images in {str(root)!r} (looked for {', '.join(IMAGE_EXTENSIONS)}, any case)")
    return sorted(found)


def output_relpath(rel: PurePosixPath, jpeg_quality: int | None) -> PurePosixPath:
    """Output name of a source file: same stem, ``.png``; with JPEG output ``.jpg`` (a JPEG source keeps its suffix,
    e.g. ImageNet's ``.JPEG``, as in the released ImageNet-C)."""
    if jpeg_quality is None:
        return rel.with_suffix(".png")
    return rel if rel.suffix.lower() in (".jpg", ".jpeg") else rel.with_suffix(".jpg")


_PNG_END = b"IEND\xaeB`\x82"  # the last 8 bytes of every PNG file


_JPEG_END = b"\xff\xd9"


def output_complete(path: Path) -> bool:
    """Whether an output file exists and ends as a complete PNG / JPEG does (a file truncated after it was written,
    by a full disk or a copy, is written again on rerun)."""
    try:
        with open(path, "rb") as f:
            f.seek(-8, os.SEEK_END)
            tail = f.read()
    except OSError:  # missing, or shorter than 8 bytes
        return False
    return tail.endswith(_JPEG_END if path.suffix.lower() in (".jpg", ".jpeg") else _PNG_END)
