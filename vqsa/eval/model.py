"""Getting a classifier ready for evaluation: input normalisation for plain models, checkpoints and run folders."""
from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .results import is_run_folder

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Normalized(nn.Module):
    """``model((x - mean) / std)``: makes a plain torchvision/timm classifier take images in [0, 1]."""

    def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != 3 or len(std) != 3 or any(s <= 0 for s in std):
            raise ValueError(f"mean and std need 3 values (std > 0), got mean={mean!r} std={std!r}")
        self.model = model
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x - self.mean) / self.std)


def with_normalization(
    model: nn.Module, mean: Sequence[float] | None = None, std: Sequence[float] | None = None
) -> Normalized:
    """Wrap a model that expects normalised inputs; mean/std default to its timm ``pretrained_cfg``, else ImageNet's.

    Example:
        >>> net = with_normalization(torchvision.models.resnet50(weights="DEFAULT"))
        >>> vqsa.evaluate(net, "imagenet-c", data_root="/data")
    """
    cfg = getattr(model, "pretrained_cfg", None) or {}
    return Normalized(model, mean or cfg.get("mean", IMAGENET_MEAN), std or cfg.get("std", IMAGENET_STD))


def load_for_eval(checkpoint: str | os.PathLike) -> tuple[nn.Module, dict[str, Any], list[str] | str | None]:
    """``(model, description, train corruptions or None)`` from a vqsa weights file, training checkpoint or run
    folder. The training corruption list comes from the run's ``config.yaml`` or the checkpoint's ``config``."""
    from vqsa.models import load_model

    path = Path(checkpoint)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist (give a run folder, .safetensors or .pt)")
    try:
        model = load_model(path)
    except (ValueError, KeyError, RuntimeError) as e:
        raise ValueError(f"cannot load a model from {path}: {e}") from e
    config = getattr(model, "model_config", None) or {}
    arch = config.get("name", type(model).__name__)
    info = {"checkpoint": str(path), "name": arch, "architecture": arch, "config": config,
            "num_params": sum(p.numel() for p in model.parameters()), "label": run_label(path)}
    return model, info, _train_corruptions(path)


def run_label(path: str | os.PathLike) -> str:
    """How results name a checkpoint: the run folder's name for a run folder or a file inside one (``runs/x`` and
    ``runs/x/model.safetensors`` are both ``x``), else the file name without its suffix."""
    path = Path(path)
    if path.is_dir():
        return path.resolve().name
    return path.parent.resolve().name if is_run_folder(path.parent) else path.stem


def _train_corruptions(path: Path) -> list[str] | str | None:
    config = _training_config(path)
    section = config.get("corruption") if isinstance(config, dict) else None
    if isinstance(section, dict):
        return section.get("corruptions")
    return None


def _training_config(path: Path) -> dict[str, Any] | None:
    """The run's training config: its ``config.yaml``, else (missing or unreadable, said in a warning) the copy
    stored in the checkpoint."""
    run_dir = path if path.is_dir() else path.parent
    yaml_path = run_dir / "config.yaml"
    if yaml_path.is_file():
        import yaml

        try:
            cfg = yaml.safe_load(yaml_path.read_text(encoding="utf-8"))
            if not isinstance(cfg, dict):
                raise ValueError(f"a YAML {type(cfg).__name__}, not a mapping")
            return cfg
        except (OSError, UnicodeDecodeError, yaml.YAMLError, ValueError) as e:
            problem = str(e).splitlines()[0] if str(e) else type(e).__name__
            warnings.warn(f"{yaml_path}: unreadable ({problem}); using the config stored in the checkpoint",
                          UserWarning, stacklevel=3)
    file = path if path.is_file() else run_dir / "checkpoint_last.pt"
    if file.suffix == ".pt" and file.is_file():
        import pickle

        try:
            obj = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
        except (pickle.UnpicklingError, RuntimeError, OSError, EOFError):
            return None  # the weights loaded already; an unreadable config only means the train list is unknown
        cfg = obj.get("config") if isinstance(obj, dict) else None
        return cfg if isinstance(cfg, dict) else None
    if file.suffix == ".safetensors" and file.is_file():
        from safetensors import safe_open

        with safe_open(str(file), framework="pt") as f:
            raw = (f.metadata() or {}).get("config")
        return json.loads(raw) if raw else None
    return None
