"""Saving and loading vqsa models without unpickling anything untrusted.

Our format is a safetensors file whose metadata holds the model config (JSON), so ``load_model(path)`` rebuilds
the architecture. Training checkpoints (``.pt``) are plain dicts read with ``torch.load(weights_only=True)``; the
file reading itself is :mod:`vqsa.models.weights_io`.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vqsa.utils.io import atomic_write_bytes

from ._factory import create_model
from .weights_io import (  # noqa: F401  (re-exported: the names this module has always offered)
    FORMAT,
    brief,
    clean_state_dict,
    load_state_dict,
    read_checkpoint,
    resolve_weights_file,
    safetensors_bytes,
    torch_load_error_message,
    unwrap,
)


def save_model(model: nn.Module, path: str | os.PathLike) -> Path:
    """Write ``model``'s weights and ``model.model_config`` to a safetensors file, atomically (the same weights and
    config always give the same bytes)."""
    from vqsa.version import __version__

    model = unwrap(model)
    config = getattr(model, "model_config", None)
    if not isinstance(config, dict):
        raise TypeError("save_model needs a model built by vqsa.create_model (it has no model_config)")
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {"format": FORMAT, "vqsa_version": __version__, "model_config": json.dumps(config)}
    path = Path(path)
    atomic_write_bytes(path, safetensors_bytes(tensors, meta))
    return path


def load_checkpoint(model: nn.Module, path: str | os.PathLike, strict: bool = True) -> Any:
    """Load weights from ``path`` (our safetensors, a ``.pt`` state dict or training checkpoint) into ``model``.

    ``module.``/``_orig_mod.`` prefixes are stripped. A classifier of another size raises ValueError pointing to
    ``reset_classifier``; other mismatches list the missing/unexpected keys. Returns torch's incompatible-keys
    result (useful with ``strict=False``).
    """
    state, _ = read_checkpoint(path)
    return load_state_dict(model, state, strict=strict, source=str(path))


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a model from a safetensors file, a training checkpoint ``.pt`` or a run folder; in eval mode.

    A run folder is read from its ``model.safetensors``, else its ``checkpoint_last.pt``.
    """
    path = Path(path)
    if path.is_dir():
        path = resolve_weights_file(path)
    state, config = read_checkpoint(path)
    if config is None:
        raise ValueError(
            f"{path}: no model_config stored, so the architecture is unknown. A vqsa model's weights: build it with "
            "vqsa.create_model(...) and use vqsa.load_checkpoint(model, path). A torchvision / timm network's own "
            "weights: vqsa.create_model(name, ..., pretrained=path), or vqsa evaluate --model NAME --pretrained PATH"
        )
    model = create_model(**{**config, "pretrained": False})
    load_state_dict(model, state, strict=True, source=str(path))
    return model.to(device).eval()
