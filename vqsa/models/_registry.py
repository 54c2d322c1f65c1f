"""Name registry: vqsa's own small backbones plus timm names and ``tv:``-prefixed torchvision names."""
from __future__ import annotations

import fnmatch
from collections.abc import Callable

import torch.nn as nn

TV_PREFIX = "tv:"

_BACKBONES: dict[str, Callable[..., nn.Module]] = {}


def register_backbone(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register a backbone entrypoint ``fn(pretrained=False, num_classes=..., **kwargs)`` under ``fn.__name__``.

    The returned module must follow timm's interface: ``forward_features``, ``forward_head(x, pre_logits)``,
    ``get_classifier``, ``reset_classifier``, ``num_features``, ``pretrained_cfg`` (mean/std) and ``feature_info``.
    """
    name = fn.__name__
    if name in _BACKBONES:
        raise ValueError(f"backbone {name!r} is already registered")
    _BACKBONES[name] = fn
    return fn


def vqsa_backbone(name: str) -> Callable[..., nn.Module] | None:
    """The entrypoint of one of vqsa's own backbones, or None."""
    return _BACKBONES.get(name)


def _tv_names() -> list[str]:
    """torchvision classification models that have a ``.fc`` head (ResNet, ResNeXt, Wide ResNet, RegNet)."""
    import torchvision.models as tvm

    prefixes = ("resnet", "resnext", "wide_resnet", "regnet")
    return sorted(n for n in tvm.list_models(module=tvm) if n.startswith(prefixes))


def list_models(pattern: str = "*", *, source: str = "all", pretrained: bool = False) -> list[str]:
    """Backbone names accepted by ``create_model``, filtered by an fnmatch ``pattern``.

    Args:
        pattern: shell-style wildcard, e.g. ``"*resnet*"`` or ``"tv:resnext*"``.
        source: ``"all"``, ``"vqsa"`` (built-in small backbones), ``"timm"`` or ``"tv"``.
        pretrained: only names with pretrained weights (vqsa's shipped ones, timm's listing; all listed torchvision
            models have them).
    """
    if source not in ("all", "vqsa", "timm", "tv"):
        raise ValueError(f"source must be 'all', 'vqsa', 'timm' or 'tv', got {source!r}")
    names: list[str] = []
    if source in ("all", "vqsa"):
        from .zoo import shipped_weights

        own = sorted(n for n in _BACKBONES if not pretrained or n in shipped_weights())
        own += sorted(n for n, e in shipped_weights().items() if e.model_config is not None)  # <backbone>.<tag>
        names += fnmatch.filter(own, pattern)
    if source in ("all", "timm"):
        import timm

        names += timm.list_models(pattern, pretrained=pretrained)
    if source in ("all", "tv"):
        names += fnmatch.filter([TV_PREFIX + n for n in _tv_names()], pattern)
    return names


def is_model(name: str) -> bool:
    """True when ``create_model`` accepts ``name`` as a backbone."""
    if not isinstance(name, str):
        return False
    if name in _BACKBONES:
        return True
    if name.startswith(TV_PREFIX):
        return name[len(TV_PREFIX):] in _tv_names()
    import timm

    return timm.is_model(name)
