"""t-SNE of features before and after the VQSA block (the paper's Figs. 5 and 6), with numbers behind the pictures.

"Before" is the pooled backbone feature z; "after" is the feature the classifier's last layer receives (after
quantization, fusion and self-attention). Two views:

* corruption-wise (Fig. 5): the images of one class under each corruption, coloured by corruption. A
  quality-independent representation mixes the corruptions: low silhouette by corruption, and corrupted copies close
  to their clean image relative to the distance between different images.
* class-wise (Fig. 6): several classes, clean images as dots and corrupted ones as triangles, coloured by class.
  A quality-independent representation keeps classes apart whatever the quality: high silhouette by class, and
  corrupted copies close to their clean image relative to the distance between classes.

:func:`feature_metrics` computes these numbers in the original feature space and in the 2-D embedding (t-SNE
distorts global distances, so the feature-space values are the ones to compare; the embedding values say how
faithful the picture is). Everything is saved to ``tsne.json`` next to the PNGs.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from vqsa.utils.io import atomic_save_figure, atomic_write_json

from .features import corrupt_images, extract_features, select_per_class

CLEAN = "clean"

METRIC_NOTES = {
    "silhouette_class": "silhouette score with classes as clusters (-1..1; high: classes separated)",
    "silhouette_condition": "silhouette score with clean/each corruption as clusters (high: quality separates "
                            "features, i.e. NOT quality-independent)",
    "intra_class_clean": "mean distance between clean images of the same class",
    "intra_class_corrupted": "mean distance between corrupted images of the same class",
    "inter_class": "mean distance between images of different classes",
    "between_image": "mean distance between clean features of different images",
    "pair": "mean distance from a corrupted image to the clean version of the same image",
    "pair_to_inter_class": "pair / inter_class (< 1: a corrupted copy stays nearer its clean image than other classes)",
    "pair_to_between_image": "pair / between_image (< 1: corruption moves a feature less than changing the image)",
    "intra_corrupted_to_clean": "intra_class_corrupted / intra_class_clean (> 1: corruption spreads classes out)",
}


@dataclass
class FeatureSet:
    """Features of clean images and their corrupted copies (one row per (image, condition)).

    Attributes:
        before / after: (N, d) features before and after the VQSA block.
        labels: (N,) class of each row.
        conditions: (N,) ``"clean"`` or the corruption name.
        image_ids: (N,) index of the source image (rows with equal ids are versions of one image).
    """

    before: np.ndarray
    after: np.ndarray
    labels: np.ndarray
    conditions: np.ndarray
    image_ids: np.ndarray

    def select(self, mask: np.ndarray) -> FeatureSet:
        """The rows where ``mask`` is True."""
        return FeatureSet(self.before[mask], self.after[mask], self.labels[mask], self.conditions[mask],
                          self.image_ids[mask])


def collect_features(
    model: nn.Module, images: np.ndarray, labels: np.ndarray, indices: np.ndarray, corruptions: Sequence[str],
    severity: int, *, seed: int = 0, profile: str = "auto", batch_size: int = 128,
) -> FeatureSet:
    """Features of ``images[indices]`` clean and under each corruption at ``severity`` (seeded per dataset index)."""
    indices = np.asarray(indices, dtype=np.int64)
    batches = [images[indices]] + [corrupt_images(images, c, severity, indices=indices, seed=seed, profile=profile)
                                   for c in corruptions]
    feats = extract_features(model, np.concatenate(batches), batch_size=batch_size)
    n = len(indices)
    return FeatureSet(
        before=feats.before, after=feats.after, labels=np.tile(np.asarray(labels)[indices], len(batches)),
        conditions=np.repeat(np.array([CLEAN, *corruptions]), n), image_ids=np.tile(indices, len(batches)),
    )


def _mean(d: np.ndarray, mask: np.ndarray) -> float | None:
    return float(d[mask].mean()) if mask.any() else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _silhouette(x: np.ndarray, groups: np.ndarray) -> float | None:
    from sklearn.metrics import silhouette_score

    k = len(np.unique(groups))
    return float(silhouette_score(x, groups)) if 2 <= k <= len(x) - 1 else None


def feature_metrics(
    x: np.ndarray, labels: np.ndarray, conditions: np.ndarray, image_ids: np.ndarray
) -> dict[str, float | None]:
    """Cluster and distance statistics of features ``x`` (N, d) (Euclidean; see ``METRIC_NOTES``).

    Undefined values (e.g. a silhouette with a single class) are None. Memory is O(N^2).
    """
    x = np.asarray(x, dtype=np.float64)
    labels, conditions, image_ids = (np.asarray(a) for a in (labels, conditions, image_ids))
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"features must be (N >= 2, d), got shape {x.shape}")
    if not (len(labels) == len(conditions) == len(image_ids) == len(x)):
        raise ValueError("labels, conditions and image_ids need one entry per feature row")
    if not np.isfinite(x).all():
        raise ValueError("features contain NaN or Inf")
    from scipy.spatial.distance import pdist, squareform

    d = squareform(pdist(x))
    off = ~np.eye(len(x), dtype=bool)
    same_class = labels[:, None] == labels[None, :]
    clean = conditions == CLEAN
    both_clean, both_corr = clean[:, None] & clean[None, :], ~clean[:, None] & ~clean[None, :]
    pairs = (image_ids[:, None] == image_ids[None, :]) & ~clean[:, None] & clean[None, :]
    out: dict[str, float | None] = {
        "silhouette_class": _silhouette(x, labels),
        "silhouette_condition": _silhouette(x, conditions),
        "intra_class_clean": _mean(d, same_class & both_clean & off),
        "intra_class_corrupted": _mean(d, same_class & both_corr & off),
        "inter_class": _mean(d, ~same_class),
        "between_image": _mean(d, both_clean & off),
        "pair": _mean(d, pairs),
    }
    out["pair_to_inter_class"] = _ratio(out["pair"], out["inter_class"])
    out["pair_to_between_image"] = _ratio(out["pair"], out["between_image"])
    out["intra_corrupted_to_clean"] = _ratio(out["intra_class_corrupted"], out["intra_class_clean"])
    return out


def embed_tsne(x: np.ndarray, *, seed: int = 0, perplexity: float | None = None, max_iter: int = 1000) -> np.ndarray:
    """2-D t-SNE (scikit-learn, PCA init) of ``x`` (N, d); perplexity defaults to min(30, (N - 1) / 3).

    scikit-learn's OpenMP threads are limited to one here: on a busy CPU they spin against each other (measured on
    2 shared cores: 14 s instead of 0.15 s for 60 points, 90 s instead of 5 s for 600).
    """
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2 or len(x) < 4:
        raise ValueError(f"t-SNE needs at least 4 feature rows (N, d), got shape {x.shape}")
    perplexity = min(30.0, (len(x) - 1) / 3) if perplexity is None else float(perplexity)
    if not 0 < perplexity < len(x):
        raise ValueError(f"perplexity must lie in (0, {len(x)}), got {perplexity}")
    with threadpool_limits(1, user_api="openmp"):
        return TSNE(2, perplexity=perplexity, init="pca", random_state=seed, max_iter=max_iter).fit_transform(x)


def _view(fs: FeatureSet, seed: int, max_iter: int) -> dict[str, Any]:
    """Metrics and embeddings before and after the VQSA block."""
    out: dict[str, Any] = {}
    for stage in ("before", "after"):
        x = getattr(fs, stage)
        emb = embed_tsne(x, seed=seed, max_iter=max_iter)
        out[stage] = {
            "features": feature_metrics(x, fs.labels, fs.conditions, fs.image_ids),
            "embedding": feature_metrics(emb, fs.labels, fs.conditions, fs.image_ids),
            "_xy": emb,
        }
    return out


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f}"


def plot_corruption_wise(fs: FeatureSet, view: dict[str, Any], title: str, path: str | os.PathLike) -> None:
    """Fig. 5: before / after panels, one colour per condition (clean and each corruption)."""
    import matplotlib
    from matplotlib.figure import Figure

    conds = list(dict.fromkeys(fs.conditions.tolist()))
    colours = matplotlib.colormaps["tab20"].colors
    fig = Figure(figsize=(11, 5))
    axes = fig.subplots(1, 2)
    for ax, stage in zip(axes, ("before", "after")):
        xy = view[stage]["_xy"]
        for i, c in enumerate(conds):
            m = fs.conditions == c
            ax.scatter(xy[m, 0], xy[m, 1], s=14, color=colours[i % len(colours)], label=c.replace("_", " "),
                       marker="o" if c == CLEAN else "^", edgecolors="none")
        f = view[stage]["features"]
        ax.set_title(f"{stage.capitalize()}: silhouette by corruption {_fmt(f['silhouette_condition'])}, "
                     f"pair/between-image {_fmt(f['pair_to_between_image'])}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    atomic_save_figure(fig, path)


def plot_class_wise(
    fs: FeatureSet, view: dict[str, Any], class_names: dict[int, str], title: str, path: str | os.PathLike
) -> None:
    """Fig. 6: before / after panels, one colour per class, clean as dots and corrupted as triangles."""
    import matplotlib
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    classes = list(dict.fromkeys(fs.labels.tolist()))
    colours = matplotlib.colormaps["tab10"].colors
    clean = fs.conditions == CLEAN
    fig = Figure(figsize=(11, 5))
    axes = fig.subplots(1, 2)
    for ax, stage in zip(axes, ("before", "after")):
        xy = view[stage]["_xy"]
        for i, c in enumerate(classes):
            col = colours[i % len(colours)]
            m = fs.labels == c
            ax.scatter(xy[m & ~clean, 0], xy[m & ~clean, 1], s=14, marker="^", color=col, alpha=0.55,
                       edgecolors="none")
            ax.scatter(xy[m & clean, 0], xy[m & clean, 1], s=16, marker="o", color=col, edgecolors="k",
                       linewidths=0.3)
        f = view[stage]["features"]
        ax.set_title(f"{stage.capitalize()}: silhouette by class {_fmt(f['silhouette_class'])}, "
                     f"pair/inter-class {_fmt(f['pair_to_inter_class'])}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    handles = [Line2D([], [], ls="", marker="s", color=colours[i % len(colours)], label=class_names.get(c, str(c)))
               for i, c in enumerate(classes)]
    handles += [Line2D([], [], ls="", marker="o", color="0.4", label="clean"),
                Line2D([], [], ls="", marker="^", color="0.4", label="corrupted")]
    axes[1].legend(handles=handles, fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    atomic_save_figure(fig, path)


def _public(view: dict[str, Any]) -> dict[str, Any]:
    return {stage: {k: v for k, v in part.items() if k != "_xy"} for stage, part in view.items()}


def analyze_tsne(
    model: nn.Module,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    corruptions: Sequence[str],
    severity: int = 3,
    classes: Sequence[int] | None = None,
    per_class: int = 20,
    class_names: Sequence[str] | None = None,
    out_dir: str | os.PathLike | None = None,
    seed: int = 0,
    profile: str = "auto",
    max_iter: int = 1000,
    batch_size: int = 128,
    label: str | None = None,
) -> dict[str, Any]:
    """Corruption-wise (Fig. 5, the first of ``classes``) and class-wise (Fig. 6) t-SNE with their metrics.

    Args:
        model: a VQSA classifier (``vqsa.create_model`` / ``vqsa.load_model``).
        images / labels: the dataset, uint8 (N, H, W, 3) and (N,) ints; images are picked from it.
        corruptions: corruption names applied to every picked image at ``severity``.
        classes: class indices shown (default: the first five present); the first is the corruption-wise class.
        per_class: images per class.
        class_names: names for the legend, indexed by class.
        out_dir: when given, writes ``tsne_corruption.png``, ``tsne_class.png`` and ``tsne.json`` there.
        seed: image choice, corruption draws and t-SNE seed.
        label: the model's name in the figure titles (default: its backbone name).

    Returns:
        JSON-able dict with the settings, the metrics of both views before/after the VQSA block in feature space
        and embedding, and the metric definitions.
    """
    labels = np.asarray(labels)
    if not corruptions:
        raise ValueError("t-SNE needs at least one corruption")
    if len(labels) != len(images):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    present = np.unique(labels)
    classes = list(present[:5]) if classes is None else list(classes)
    missing = [c for c in classes if c not in present]
    if missing or not classes:
        raise ValueError(f"classes {missing or classes} have no images (classes present: {present.tolist()})")
    names = {c: (class_names[c] if class_names is not None and c < len(class_names) else str(c)) for c in classes}
    idx = select_per_class(labels, classes, per_class, seed)
    fs = collect_features(model, images, labels, idx, corruptions, severity, seed=seed, profile=profile,
                          batch_size=batch_size)
    corr_fs = fs.select(fs.labels == classes[0])
    corr_view, class_view = _view(corr_fs, seed, max_iter), _view(fs, seed, max_iter)
    label = label or getattr(model, "model_config", {}).get("name", type(model).__name__)
    result = {
        "model": getattr(model, "model_config", {}), "severity": severity, "corruptions": list(corruptions),
        "seed": seed, "profile": profile, "per_class": per_class,
        "corruption_wise": {"class": names[classes[0]], "n_points": len(corr_fs.labels), **_public(corr_view)},
        "class_wise": {"classes": [names[c] for c in classes], "n_points": len(fs.labels), **_public(class_view)},
        "metric_notes": METRIC_NOTES,
    }
    if out_dir is not None:
        out = Path(out_dir)
        plot_corruption_wise(corr_fs, corr_view, f"{label}: class '{names[classes[0]]}' under {len(corruptions)} "
                             f"corruption(s), severity {severity}", out / "tsne_corruption.png")
        plot_class_wise(fs, class_view, names, f"{label}: {len(classes)} classes, clean (o) and corrupted (^), "
                        f"severity {severity}", out / "tsne_class.png")
        atomic_write_json(out / "tsne.json", result)
    return result
