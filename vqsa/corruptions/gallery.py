"""One image under every corruption and severity, as a labelled grid picture (matplotlib, Agg, no pyplot)."""
from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vqsa.utils.io import atomic_write_bytes

from .dataset_writer import (
    SEVERITIES,
    check_profile,
    check_seed,
    check_severities,
    derive_rng,
    imagenet_c_preprocess,
    load_rgb,
    resolve_corruptions,
)

_FORMATS = ("png", "jpg", "jpeg", "pdf", "svg")


def render_gallery(
    image: str | os.PathLike | np.ndarray,
    out: str | os.PathLike,
    corruptions: str | Sequence[str] = "all",
    severities: Sequence[int] = SEVERITIES,
    *,
    profile: str = "auto",
    seed: int = 0,
    resize: int | None = 256,
    center_crop: int | None = 224,
    cell_inches: float = 1.5,
    dpi: int = 100,
) -> Path:
    """Render ``image`` under each corruption (rows, named) and severity (columns) plus the clean image; write ``out``.

    Args:
        image: an image file (decoded to RGB and preprocessed with ``resize``/``center_crop`` as ImageNet-C) or a
            uint8 (H, W, 3) array (used as is).
        out: .png (default), .jpg, .pdf or .svg; written atomically.
        seed: the draws of row ``c``, column ``s`` use :func:`derive_rng` ``(seed, "gallery", c, s)``.
    Returns:
        the path written.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from vqsa.corruptions import corrupt

    out = Path(out)
    fmt = out.suffix.lower().lstrip(".") or "png"
    if fmt not in _FORMATS:
        raise ValueError(f"gallery output must end in one of {', '.join('.' + f for f in _FORMATS)}, got {out.name!r}")
    names, sev = resolve_corruptions(corruptions), check_severities(severities)
    profile, seed = check_profile(profile), check_seed(seed)
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image array must be uint8 (H, W, 3), got {image.dtype} {image.shape}")
        clean, label = image, f"array {image.shape[1]}x{image.shape[0]}"
    else:
        clean, label = imagenet_c_preprocess(load_rgb(image), resize, center_crop), Path(image).name

    h, w = clean.shape[:2]
    cols, rows = len(sev), len(names) + 1
    fig = Figure(figsize=(cell_inches * (cols + 0.9), cell_inches * rows * h / w + 0.4), dpi=dpi)
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(rows, cols, left=0.9 / (cols + 0.9), right=0.995, bottom=0.005, top=0.985,
                            wspace=0.04, hspace=0.06)
    ax = fig.add_subplot(grid[0, 0])
    _show(ax, clean)
    ax.set_title("clean", fontsize=9)
    ax.set_ylabel("clean", rotation=0, ha="right", va="center", fontsize=9)
    from vqsa.version import __version__

    fig.text(
        (0.9 + 1.15) / (cols + 0.9), 1 - 0.6 / rows, f"{label}  ({w}x{h})\nprofile {profile}, seed {seed}\n"
        f"rows: corruptions, columns: severities\nvqsa {__version__}", fontsize=9, va="center", ha="left",
    )
    for r, name in enumerate(names, start=1):
        for c, s in enumerate(sev):
            ax = fig.add_subplot(grid[r, c])
            _show(ax, corrupt(clean, s, name, rng=derive_rng(seed, "gallery", name, s), profile=profile))
            if r == 1:
                ax.set_title(f"severity {s}", fontsize=9)
            if c == 0:
                ax.set_ylabel(name.replace("_", " "), rotation=0, ha="right", va="center", fontsize=9)
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=dpi)
    atomic_write_bytes(out, buf.getvalue())
    return out


def _show(ax, image: np.ndarray) -> None:
    ax.imshow(image, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
