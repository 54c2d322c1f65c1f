"""Named codebook settings for ``create_model(..., codebook_preset=...)`` and the data pass of the data-driven inits.

``"paper"`` is the paper-faithful codebook (the library default): U(0, 3) init, cosine, updated by the VQ loss.
It collapses to a handful of used codes at CIFAR-10 scale (docs/codebook_health.md). The two healthy presets
initialise the codebook by k-means++ / Lloyd on backbone features of a pass over the training data and restart
codes left unused for ``dead_code_interval`` steps from a buffer of recent features; ``"healthy_ema"`` also replaces
the loss update by EMA cluster means. Options given explicitly to ``create_model`` override a preset's.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from vqsa.utils import distributed as dist

CODEBOOK_PRESETS: dict[str, dict[str, Any]] = {
    "paper": {"init": "uniform", "codebook_update": "loss"},
    "healthy": {"init": "kmeans", "init_samples": 20000, "kmeans_iters": 10, "codebook_update": "loss",
                "dead_code_threshold": 1.0, "dead_code_interval": 50, "dead_code_buffer": 4096},
    "healthy_ema": {"init": "kmeans", "init_samples": 20000, "kmeans_iters": 10, "codebook_update": "ema",
                    "decay": 0.99, "eps": 1e-5, "dead_code_threshold": 1.0, "dead_code_interval": 50,
                    "dead_code_buffer": 4096},
}


def codebook_preset(name: str) -> dict[str, Any]:
    """The VectorQuantizer options of a named preset (a copy): ``"paper"``, ``"healthy"``, ``"healthy_ema"``."""
    if not isinstance(name, str) or name not in CODEBOOK_PRESETS:
        raise ValueError(f"codebook_preset must be one of {tuple(CODEBOOK_PRESETS)}, got {name!r}")
    return copy.deepcopy(CODEBOOK_PRESETS[name])


def _images(batch: Any) -> torch.Tensor:
    """Images of a batch: a tensor, the first item of a tuple/list, or ``batch["image"]``; uint8 becomes [0, 1]."""
    x = batch["image"] if isinstance(batch, dict) else batch[0] if isinstance(batch, (tuple, list)) else batch
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"batches must hold image tensors, got {type(x).__name__}")
    return x.float() / 255 if x.dtype == torch.uint8 else x


@torch.no_grad()
def init_codebook_from_data(model: nn.Module, batches: Iterable[Any], *, max_features: int | None = None,
                            method: str | None = None) -> int:
    """Initialise ``model.vq`` from pooled backbone features of a pass over ``batches``; call it on every rank.

    Each rank takes ``ceil(max_features / world_size)`` features from its own batches (e.g. its DistributedSampler
    shard), then :meth:`VectorQuantizer.init_from_features` gathers them from all ranks and broadcasts rank 0's
    result, so the codebook is identical everywhere. The backbone runs in training mode (the statistics the first
    training steps see) under a forked RNG, and its buffers (BatchNorm running statistics) are restored afterwards:
    the pass leaves the model and the global random streams as they were, apart from the codebook.

    Args:
        model: a VQSA classifier with a codebook.
        batches: images as float (B, 3, H, W) in [0, 1] (uint8 is scaled), bare, as ``(images, labels)`` or as
            dicts with ``"image"``; already on the model's device or movable there.
        max_features: features gathered over all ranks (default: ``model.vq.init_samples``).
        method: ``"kmeans"`` or ``"features"`` (default: the quantizer's own data-driven init).

    Returns:
        The number of features the codebook was computed from (summed over ranks).
    """
    vq = getattr(model, "vq", None)
    if vq is None:
        raise ValueError("the model has no codebook (vq=False): nothing to initialise")
    limit = vq.init_samples if max_features is None else max_features
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"max_features must be a positive int (or set the model's init_samples), got {limit!r}")
    per_rank = math.ceil(limit / dist.get_world_size())
    device = vq.codebook.device
    saved = {name: buf.clone() for name, buf in model.named_buffers()}
    was_training = model.training
    feats: list[torch.Tensor] = []
    have = 0
    model.train()
    if not any(p.requires_grad for p in model.backbone.parameters()):
        model.backbone.eval()  # a frozen backbone trains as a fixed feature extractor, running statistics included
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        for batch in batches:
            z = model.backbone.pool(model.forward_features(_images(batch).to(device)))
            feats.append(z[:per_rank - have].float())
            have += feats[-1].shape[0]
            if have >= per_rank:
                break
    for name, buf in model.named_buffers():
        buf.copy_(saved[name])
    model.train(was_training)
    local = torch.cat(feats) if feats else torch.zeros(0, vq.dim, device=device)
    vq.init_from_features(local, method)
    return int(dist.all_reduce_sum(torch.tensor([have], device=device))[0])
