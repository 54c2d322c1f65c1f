"""Grad-CAM (Selvaraju et al. 2017) with forward hooks, and the paper's Fig. 1 layout for two checkpoints.

Works on any ``nn.Module`` whose ``model(x)`` returns logits (B, C); for a vqsa model the target layer defaults to
``model.cam_target_layers()`` (the backbone's last block). Hooks are a forward hook per layer plus
``Tensor.register_hook`` on its output (no module backward hooks, which break on in-place ops); they live only inside
the ``with`` block (or until :meth:`GradCAM.release`).

    with GradCAM(model) as cam:
        maps = cam(x)                  # (B, H, W) numpy in [0, 1], explaining the predicted classes
        maps = cam(x, targets=[3, 7])  # explaining given classes
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vqsa.utils.io import atomic_save_figure, atomic_write_json

from .features import check_images, corrupt_images, model_device, to_tensor


class GradCAM:
    """Grad-CAM maps for a logits model.

    Args:
        model: maps float images (B, 3, H, W) to logits (B, C).
        target_layers: modules whose output maps are explained; default ``model.cam_target_layers()``. With several
            layers the per-layer maps (each upsampled and normalised) are averaged, as pytorch-grad-cam does.

    ``cam(x, targets)`` runs the model in eval mode (its mode is restored after), with gradients enabled even inside
    ``torch.no_grad()``; parameter gradients are not accumulated. ``cam.logits`` holds the last logits.
    """

    def __init__(self, model: nn.Module, target_layers: Sequence[nn.Module] | None = None) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        if target_layers is None:
            if not hasattr(model, "cam_target_layers"):
                raise ValueError(f"{type(model).__name__} has no cam_target_layers(): pass target_layers=[...]")
            target_layers = model.cam_target_layers()
        target_layers = list(target_layers)
        if not target_layers or not all(isinstance(m, nn.Module) for m in target_layers):
            raise TypeError("target_layers must be a non-empty list of nn.Modules")
        self.model = model
        self.target_layers = target_layers
        self.logits: torch.Tensor | None = None
        self._activations: list[torch.Tensor | None] = [None] * len(target_layers)
        self._gradients: list[torch.Tensor | None] = [None] * len(target_layers)
        self._handles = [layer.register_forward_hook(self._hook(i)) for i, layer in enumerate(target_layers)]

    def _hook(self, i: int):
        def forward_hook(module: nn.Module, inputs: Any, output: Any) -> None:
            if not isinstance(output, torch.Tensor) or output.ndim != 4:
                raise TypeError(f"Grad-CAM target layer {type(module).__name__} must output a (B, C, h, w) tensor")
            self._activations[i] = output.detach().clone()  # later in-place ops must not change it
            if output.requires_grad:
                def save_grad(grad: torch.Tensor) -> None:
                    self._gradients[i] = grad.detach()

                output.register_hook(save_grad)

        return forward_hook

    def release(self) -> None:
        """Remove the hooks (idempotent)."""
        for h in getattr(self, "_handles", ()):
            h.remove()
        self._handles = []
        self._activations, self._gradients = [], []

    def __enter__(self) -> GradCAM:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def __del__(self) -> None:
        self.release()

    def __call__(self, x: torch.Tensor, targets: Sequence[int] | torch.Tensor | None = None) -> np.ndarray:
        """Maps (B, H, W) in [0, 1] at the input size, for classes ``targets`` (default: the predicted ones).

        A map that is zero everywhere (no positive evidence for the class) stays zero.
        """
        if not self._handles:
            raise RuntimeError("this GradCAM was released; create a new one")
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or not x.is_floating_point():
            raise ValueError(f"x must be a float tensor (B, C, H, W), got {getattr(x, 'shape', type(x).__name__)}")
        n = len(self.target_layers)
        self._activations, self._gradients = [None] * n, [None] * n
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.enable_grad():
                x = x.detach().clone().requires_grad_(True)  # a gradient path even through frozen layers
                logits = self.model(x)
                if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or len(logits) != len(x):
                    raise TypeError("Grad-CAM needs model(x) to return logits (B, num_classes); wrap models that "
                                    "return tuples or output objects")
                idx = self._targets(logits, targets)
                score = logits.gather(1, idx[:, None]).sum()
                torch.autograd.grad(score, x)  # fires the tensor hooks; parameter .grad stays untouched
        finally:
            self.model.train(was_training)
        self.logits = logits.detach()
        maps = [self._layer_map(i, x.shape[-2:]) for i in range(len(self.target_layers))]
        return torch.stack(maps).mean(0).cpu().numpy()

    @staticmethod
    def _targets(logits: torch.Tensor, targets: Sequence[int] | torch.Tensor | None) -> torch.Tensor:
        if targets is None:
            return logits.argmax(1)
        idx = torch.as_tensor(targets, device=logits.device).long().reshape(-1)
        if len(idx) != len(logits):
            raise ValueError(f"targets need one class per image ({len(logits)}), got {len(idx)}")
        if (idx < 0).any() or (idx >= logits.shape[1]).any():
            raise ValueError(f"targets must be class indices in [0, {logits.shape[1]})")
        return idx

    def _layer_map(self, i: int, size: torch.Size) -> torch.Tensor:
        act, grad = self._activations[i], self._gradients[i]
        if act is None or grad is None:
            raise RuntimeError(f"target layer {i} ({type(self.target_layers[i]).__name__}) was not reached by the "
                               "forward pass or does not influence the logits")
        weights = grad.float().mean((2, 3), keepdim=True)  # alpha_k: global-average-pooled gradients
        cam = F.relu((weights * act.float()).sum(1, keepdim=True))
        cam = F.interpolate(cam, size=tuple(size), mode="bilinear", align_corners=False)[:, 0]
        lo = cam.flatten(1).min(1).values[:, None, None]
        hi = cam.flatten(1).max(1).values[:, None, None]
        return torch.where(hi > lo, (cam - lo) / (hi - lo).clamp_min(1e-12), torch.zeros_like(cam))


def overlay(image: np.ndarray, cam: np.ndarray, alpha: float = 0.5, colormap: str = "jet") -> np.ndarray:
    """Blend a heat map (H, W) in [0, 1] over a uint8 RGB image (H, W, 3); returns uint8 (H, W, 3)."""
    import matplotlib

    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be uint8 (H, W, 3), got {image.dtype} {image.shape}")
    if cam.shape != image.shape[:2]:
        raise ValueError(f"heat map {cam.shape} and image {image.shape[:2]} differ in size")
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    heat = matplotlib.colormaps[colormap](np.clip(cam, 0, 1))[..., :3]
    return np.round((1 - alpha) * image + alpha * 255 * heat).astype(np.uint8)


def map_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation between paired maps (B, H, W) -> (B,); NaN where a map is constant."""
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    a, b = a - a.mean(1, keepdims=True), b - b.mean(1, keepdims=True)
    denom = np.sqrt((a * a).sum(1) * (b * b).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (a * b).sum(1) / denom, np.nan)


def plot_gradcam(
    clean: np.ndarray, corrupted: np.ndarray, maps: dict[str, dict[str, np.ndarray]], path: str | os.PathLike,
    row_labels: Sequence[str] | None = None, title: str = "",
) -> None:
    """Fig. 1 layout: one row per image; columns clean, corrupted, then per model its map on clean and corrupted."""
    from matplotlib.figure import Figure

    n, cols = len(clean), 2 + 2 * len(maps)
    fig = Figure(figsize=(1.7 * cols, 1.7 * n + 0.6))
    axes = np.asarray(fig.subplots(n, cols, squeeze=False))
    heads = ["clean", "corrupted"] + [f"{m}\n{k}" for m in maps for k in ("clean", "corrupted")]
    for r in range(n):
        panels = [clean[r], corrupted[r]] + [overlay(img[r], maps[m][k][r]) for m in maps
                                             for k, img in (("clean", clean), ("corrupted", corrupted))]
        for c, panel in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(panel, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(heads[c], fontsize=7)
        if row_labels is not None:
            axes[r, 0].set_ylabel(row_labels[r], fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    atomic_save_figure(fig, path, dpi=110)


def analyze_gradcam(
    models: dict[str, nn.Module],
    images: np.ndarray,
    labels: np.ndarray,
    *,
    corruption: str = "defocus_blur",
    severity: int = 3,
    indices: Sequence[int] | None = None,
    target: str = "label",
    class_names: Sequence[str] | None = None,
    out_dir: str | os.PathLike | None = None,
    seed: int = 0,
    profile: str = "auto",
) -> dict[str, Any]:
    """Grad-CAM of each model on clean and corrupted versions of the same images (the paper's Fig. 1).

    Args:
        models: label -> model (one or two, side by side); each must provide ``cam_target_layers()``.
        images / labels: the dataset (uint8 (N, H, W, 3), (N,)); ``indices`` picks the rows (default: all).
        corruption / severity: the corruption applied (Fig. 1: defocus blur, severity 3).
        target: ``"label"`` explains the true class (same target on both versions, so the maps are comparable),
            ``"prediction"`` each version's predicted class.
        out_dir: when given, writes ``gradcam.png`` and ``gradcam.json`` there.

    Returns:
        JSON-able dict: per model, predictions on both versions and the clean/corrupted map correlation per image
        and on average (high: the model looks at the same place whatever the quality).
    """
    if not models:
        raise ValueError("analyze_gradcam needs at least one model")
    if target not in ("label", "prediction"):
        raise ValueError(f"target must be 'label' or 'prediction', got {target!r}")
    check_images(images)
    labels = np.asarray(labels)
    idx = np.arange(len(images)) if indices is None else np.asarray(indices, dtype=np.int64)
    clean = images[idx]
    corrupted = corrupt_images(images, corruption, severity, indices=idx, seed=seed, profile=profile)
    maps: dict[str, dict[str, np.ndarray]] = {}
    report: dict[str, Any] = {}
    for name, model in models.items():
        device = model_device(model)
        targets = torch.as_tensor(labels[idx]) if target == "label" else None
        maps[name], preds = {}, {}
        with GradCAM(model) as cam:
            for key, batch in (("clean", clean), ("corrupted", corrupted)):
                maps[name][key] = cam(to_tensor(batch, device), targets)
                preds[key] = cam.logits.argmax(1).cpu().numpy()
        sim = map_similarity(maps[name]["clean"], maps[name]["corrupted"])
        report[name] = {
            "pred_clean": preds["clean"].tolist(), "pred_corrupted": preds["corrupted"].tolist(),
            "correct_clean": int((preds["clean"] == labels[idx]).sum()),
            "correct_corrupted": int((preds["corrupted"] == labels[idx]).sum()),
            "map_correlation": [None if np.isnan(s) else float(s) for s in sim],
            "mean_map_correlation": None if np.isnan(sim).all() else float(np.nanmean(sim)),
        }
    names = [class_names[y] if class_names is not None and y < len(class_names) else str(y) for y in labels[idx]]
    result = {"corruption": corruption, "severity": severity, "target": target, "indices": idx.tolist(),
              "labels": labels[idx].tolist(), "models": report,
              "note": "map_correlation: Pearson correlation of each image's clean and corrupted Grad-CAM maps"}
    if out_dir is not None:
        out = Path(out_dir)
        plot_gradcam(clean, corrupted, maps, out / "gradcam.png", names,
                     f"Grad-CAM ({target} class), {corruption.replace('_', ' ')} severity {severity}")
        atomic_write_json(out / "gradcam.json", result)
    return result
