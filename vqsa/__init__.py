"""vqsa: Vector Quantization with Self-Attention for quality-independent image classification.

Top-level names are imported lazily so that ``import vqsa`` stays cheap (the corruption engine does not pull in
the model zoo and vice versa).
"""
from __future__ import annotations

import importlib
from typing import Any

from .version import __version__

_LAZY = {
    "create_model": "vqsa.models",
    "list_models": "vqsa.models",
    "is_model": "vqsa.models",
    "load_checkpoint": "vqsa.models",
    "load_model": "vqsa.models",
    "save_model": "vqsa.models",
    "convert_official": "vqsa.models",
    "evaluate": "vqsa.eval",
    "corrupt": "vqsa.corruptions",
    "corrupt_batch": "vqsa.corruptions",
    "get_corruption_names": "vqsa.corruptions",
}

_SUBPACKAGES = ("analysis", "corruptions", "data", "eval", "layers", "metrics", "models", "train", "utils")
"""Reachable as attributes after a plain ``import vqsa`` (``vqsa.data.load_cifar10``), imported on first use."""

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _SUBPACKAGES:
        return importlib.import_module(f"vqsa.{name}")
    raise AttributeError(f"module 'vqsa' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*__all__, *_SUBPACKAGES])
