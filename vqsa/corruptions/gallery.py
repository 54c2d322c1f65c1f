"""One image under every corruption and severity, as a labelled grid picture (matplotlib, Agg, no pyplot)."""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vqsa.utils.io import atomic_save_figure, check_writable

from ._api import derive_rng
from .writers import (
    SEVERITIES,
    check_profile,
    check_seed,
    check_severities,
    imagenet_c_preprocess,
    load_rgb,
    requested_corruptions,
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
    dpi: float | None = None,
) -> Path:
    """Render ``image`` under each corruption (rows, named) and severity (columns) plus the clean image; write ``out``.

    Args:
        image: an image file (decoded to RGB and preprocessed with ``resize``/``center_crop`` as ImageNet-C) or a
            uint8 (H, W, 3) array (used as is).
        out: .png (default), .jpg, .pdf or .svg; written atomically.
        seed: the draws of row ``c``, column ``s`` use :func:`derive_rng` ``(seed, "gallery", c, s)``.
        cell_inches, dpi: size of one cell; the default dpi shows the image at its own resolution (72..300 dpi),
            so noise is not smoothed away by downsampling.
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
    names, sev = requested_corruptions(corruptions), check_severities(severities)
    profile, seed = check_profile(profile), check_seed(seed)
    check_writable(out)  # before rendering 95 cells
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image array must be uint8 (H, W, 3), got {image.dtype} {image.shape}")
        clean, label = image, f"array {image.shape[1]}x{image.shape[0]}"
    else:
        clean, label = imagenet_c_preprocess(load_rgb(image), resize, center_crop), Path(image).name

    h, w = clean.shape[:2]
    from vqsa.version import __version__

    dpi = min(300.0, max(72.0, w / cell_inches)) if dpi is None else float(dpi)
    cw, ch, gap, left, title = cell_inches, cell_inches * h / w, 0.06, 1.4, 0.3
    fig_w = left + len(sev) * (cw + gap)
    fig_h = gap + title + ch + title + len(names) * (ch + gap)
    fig = Figure(figsize=(fig_w, fig_h), dpi=dpi)
    FigureCanvasAgg(fig)

    def cell(row_top: float, col: int):  # row_top: inches from the top edge to the cell's top
        return fig.add_axes(((left + col * (cw + gap)) / fig_w, 1 - (row_top + ch) / fig_h, cw / fig_w, ch / fig_h))

    ax = cell(gap + title, 0)
    _show(ax, clean)
    ax.set_title("clean", fontsize=9)
    fig.text(
        (left + cw + 2 * gap) / fig_w, 1 - (gap + title + ch / 2) / fig_h,
        f"{label}  ({w}x{h})\nprofile {profile}, seed {seed}\nrows: corruptions, columns: severities\n"
        f"vqsa {__version__}", fontsize=9, va="center", ha="left",
    )
    grid_top = gap + title + ch + title
    for r, name in enumerate(names):
        for c, s in enumerate(sev):
            ax = cell(grid_top + r * (ch + gap), c)
            _show(ax, corrupt(clean, s, name, rng=derive_rng(seed, "gallery", name, s), profile=profile))
            if r == 0:
                ax.set_title(f"severity {s}", fontsize=9)
            if c == 0:
                ax.set_ylabel(name.replace("_", " "), rotation=0, ha="right", va="center", fontsize=9)
    atomic_save_figure(fig, out, fmt=fmt, dpi=dpi)
    return out


def _show(ax, image: np.ndarray) -> None:
    ax.imshow(image, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
