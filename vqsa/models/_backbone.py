"""Backbone adapters: every backbone (timm, torchvision, vqsa's own) exposes the same small interface.

``forward_features(x)`` gives the unpooled map, ``pool(map)`` the (B, d) feature z that VQSA quantizes,
``num_features`` is d, ``cam_layer`` the module Grad-CAM should hook, ``mean``/``std`` the input statistics.
The backbone's own classifier is split off by :func:`build_backbone` so that the classifier can reuse it.
"""
from __future__ import annotations

import os
import re
from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from ._registry import TV_PREFIX, vqsa_backbone
from .weights_io import brief, read_checkpoint

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _last_block_name(root: nn.Module, name: str) -> str:
    """Name of the last block of stage ``name`` (``stage[-1]`` for a Sequential), else ``name`` itself."""
    module = root.get_submodule(name)
    if isinstance(module, nn.Sequential) and len(module):
        return f"{name}.{len(module) - 1}"
    return name


class _CamLayerMixin:
    """``cam_layer`` is looked up by name: holding the module itself would register it twice."""

    cam_layer_name: str

    @property
    def cam_layer(self) -> nn.Module:
        return self.get_submodule(self.cam_layer_name)  # type: ignore[attr-defined]


DATA_CFG_KEYS = ("input_size", "crop_pct", "crop_mode", "interpolation", "test_input_size", "test_crop_pct",
                 "min_input_size", "fixed_input_size")
"""The preprocessing keys of a timm ``pretrained_cfg`` that a VQSA model passes on (not mean/std: it normalises
inside)."""


class TimmLikeBackbone(_CamLayerMixin, nn.Module):
    """A timm model (or a vqsa backbone with timm's interface) whose classifier was removed."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.num_features = int(getattr(model, "head_hidden_size", None) or model.num_features)  # d
        self.map_channels = int(model.num_features)  # forward_features' channels (differ when the head has a conv)
        cfg = getattr(model, "pretrained_cfg", None) or {}
        self.mean = tuple(cfg.get("mean", IMAGENET_MEAN))
        self.std = tuple(cfg.get("std", IMAGENET_STD))
        self.input_size = tuple(cfg.get("input_size", (3, 224, 224)))
        self.data_cfg = {k: cfg[k] for k in DATA_CFG_KEYS if k in cfg}
        info = getattr(model, "feature_info", None)
        if info:
            last = info[-1]["module"] if isinstance(info, list) else info.module_name()[-1]
        else:
            last = [n for n, _ in model.named_children()][-1]
        self.cam_layer_name = "model." + _last_block_name(model, last)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(x)

    def pool(self, feats: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(feats, pre_logits=True)


class TorchvisionBackbone(_CamLayerMixin, nn.Module):
    """A torchvision ResNet-style model without ``avgpool``/``fc``: ``body`` holds its other children in order."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        if not isinstance(getattr(model, "fc", None), nn.Linear):
            raise ValueError(f"torchvision model {type(model).__name__} has no .fc classifier: not supported")
        self.num_features = model.fc.in_features
        self.body = nn.Sequential(
            OrderedDict((n, m) for n, m in model.named_children() if n not in ("avgpool", "fc"))
        )
        self.mean, self.std = IMAGENET_MEAN, IMAGENET_STD
        self.input_size = (3, 224, 224)
        reduction = 8 if isinstance(getattr(model, "maxpool", None), nn.Identity) else 32  # cifar_stem: no stride 4
        self.pool_size = (self.input_size[1] // reduction, self.input_size[2] // reduction)
        self.cam_layer_name = "body." + _last_block_name(self.body, list(self.body._modules)[-1])

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def pool(self, feats: torch.Tensor) -> torch.Tensor:
        return feats.mean((2, 3))


def _apply_cifar_stem(model: nn.Module, name: str) -> None:
    """3x3 stride-1 first conv and no max-pool, for 32-px inputs (He et al.'s CIFAR setting)."""
    conv, bn = getattr(model, "conv1", None), getattr(model, "bn1", None)
    if not isinstance(bn, nn.BatchNorm2d) or not hasattr(model, "maxpool") or conv is None:
        raise ValueError(f"cifar_stem=True needs a ResNet-style backbone with conv1/bn1/maxpool; {name!r} has not")
    model.conv1 = nn.Conv2d(3, bn.num_features, 3, 1, 1, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    model.maxpool = nn.Identity()


def _wrap_pretrained_error(name: str, e: Exception) -> RuntimeError:
    return RuntimeError(
        f"could not load pretrained weights for {name!r} ({type(e).__name__}: {e}). Without network access, put "
        "the weights in the torch hub / Hugging Face cache first, or pass the weights file: pretrained='FILE' "
        "(a torchvision / timm state dict, .pth or .safetensors)."
    )


def _own_classifier(model: nn.Module, name: str) -> nn.Module | None:
    """The network's classifier layer; None when it has none (some timm models' get_classifier fails once their
    head is an Identity, e.g. EfficientViT built with num_classes=0)."""
    if name.startswith(TV_PREFIX):
        return model.fc
    try:
        return model.get_classifier()
    except AttributeError:
        return None


def _read_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A weights file read without unpickling (safetensors, or ``torch.load(weights_only=True)``)."""

    return read_checkpoint(path)[0]


def _vqsa_hint(keys) -> str:
    """A pointer to the right loader when the weights file's keys are a vqsa model's."""
    if any(k.startswith(("backbone.", "vq.")) for k in keys):
        return " (it is a vqsa model: use vqsa.load_model or --checkpoint)"
    return ""


def load_backbone_file(model: nn.Module, path: str | os.PathLike, name: str) -> None:
    """Load a torchvision / vqsa weights file of the whole classifier network ``name`` into ``model`` (built
    without weights). Its classifier is loaded when its shape fits and left as built otherwise, as timm does for
    another ``num_classes``; every other weight must be there with its shape (ValueError naming the keys), except
    BatchNorm's ``num_batches_tracked`` counters, which older files lack and torch's own loading tolerates."""

    state = _read_weights(path)
    own = model.state_dict()
    clf = _own_classifier(model, name)
    head = next((n + "." for n, m in model.named_modules() if m is clf and n), None)
    is_head = (lambda k: False) if head is None else (lambda k: k.startswith(head))
    state = {k: v for k, v in state.items() if not (is_head(k) and (k not in own or own[k].shape != v.shape))}
    missing = sorted(k for k in own.keys() - state.keys() if not is_head(k) and not k.endswith("num_batches_tracked"))
    unexpected = sorted(state.keys() - own.keys())
    if missing or unexpected:
        raise ValueError(f"{path}: not weights of {name!r}{_vqsa_hint(unexpected)}: {len(missing)} missing keys "
                         f"{brief(missing)}, {len(unexpected)} unexpected keys {brief(unexpected)}")
    bad = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in state.items() if own[k].shape != v.shape]
    if bad:
        raise ValueError(f"{path}: weight shapes differ from {name!r}: {', '.join(bad[:4])}")
    model.load_state_dict(state, strict=False)


def build_backbone(
    name: str, num_classes: int, *, pretrained: bool | str | os.PathLike = False, cifar_stem: bool = False,
    **kwargs: Any,
) -> tuple[nn.Module, nn.Module]:
    """Build backbone ``name`` and return ``(adapter, classifier)``.

    ``pretrained``: True for the hub's weights (torchvision / timm), or the path of a weights file of the same
    network (:func:`load_backbone_file`). The classifier is the backbone's own ``d -> num_classes`` layer (pretrained
    when the weights have ``num_classes`` outputs; new otherwise), or ``nn.Identity`` when ``num_classes`` is 0.
    """
    weights_file = None if isinstance(pretrained, bool) else pretrained
    hub = pretrained is True
    entry = vqsa_backbone(name)
    if name.startswith(TV_PREFIX):
        if weights_file is not None and num_classes:  # a fine-tuned file's own head loads when it has num_classes
            kwargs = {**kwargs, "num_classes": num_classes}
        model = _build_torchvision(name, hub, **kwargs)
    elif entry is not None:
        model = entry(pretrained=hub, num_classes=num_classes, **kwargs)
    else:
        model = _build_timm(name, num_classes, hub, weights_file, **kwargs)
    if weights_file is not None and (entry is not None or name.startswith(TV_PREFIX)):  # timm's loads it itself
        load_backbone_file(model, weights_file, name)
    if cifar_stem:
        _apply_cifar_stem(model, name)

    fc = _own_classifier(model, name)
    if name.startswith(TV_PREFIX):
        adapter: nn.Module = TorchvisionBackbone(model)
    else:
        model.reset_classifier(0)
        adapter = TimmLikeBackbone(model)
    d = adapter.num_features
    if num_classes == 0:
        classifier: nn.Module = nn.Identity()
    elif isinstance(fc, nn.Linear) and fc.in_features == d and fc.out_features == num_classes:
        classifier = fc
    else:
        classifier = nn.Linear(d, num_classes)
    return adapter, classifier


def _build_torchvision(name: str, pretrained: bool, **kwargs: Any) -> nn.Module:
    import torchvision.models as tvm

    from ._registry import _tv_names

    arch = name[len(TV_PREFIX):]
    if arch not in _tv_names():
        raise ValueError(
            f"unknown torchvision backbone {name!r}; supported: ResNet/ResNeXt/Wide ResNet/RegNet names, "
            "see vqsa.list_models('tv:*')"
        )
    if not pretrained:
        return tvm.get_model(arch, weights=None, **kwargs)
    try:
        return tvm.get_model(arch, weights="DEFAULT", **kwargs)
    except Exception as e:  # the download raises URLError/OSError/HTTPError/RuntimeError depending on the failure
        raise _wrap_pretrained_error(name, e) from e


def _load_report(message: str) -> tuple[list[str], list[str], list[str]]:
    """(missing keys, unexpected keys, "key: shape clash" lines) of torch's ``load_state_dict`` error report."""
    missing, unexpected, clashes = [], [], []
    for line in (raw.strip() for raw in message.splitlines()):
        if line.startswith("Missing key(s)"):
            missing += re.findall(r'"([^"]+)"', line)
        elif line.startswith("Unexpected key(s)"):
            unexpected += re.findall(r'"([^"]+)"', line)
        elif line.startswith("size mismatch for "):
            clashes.append(line[len("size mismatch for "):])
    return missing, unexpected, clashes


def _load_error_summary(message: str, ignore: set[str] = frozenset()) -> str:
    """torch's multi-line ``load_state_dict`` report in one line: key counts, a few names, the first shape clash
    (keys in ``ignore`` left out)."""

    missing, unexpected, clashes = _load_report(message)
    missing, unexpected = [k for k in missing if k not in ignore], [k for k in unexpected if k not in ignore]
    parts = [f"{len(keys)} {what} keys {brief(keys)}" for keys, what in ((missing, "missing"),
                                                                         (unexpected, "unexpected")) if keys]
    if clashes:
        parts.append(f"{len(clashes)} shapes differ (first: {clashes[0]})")
    return ", ".join(parts) or message.strip().splitlines()[-1]


def _build_timm_from_file(name: str, num_classes: int, path: str | os.PathLike, **kwargs: Any) -> nn.Module:
    """A timm model with the weights of ``path``, passed through timm's own pretrained loading (the model's
    checkpoint filter: position embeddings resampled to another ``img_size``, heads renamed from the network's
    original format). The file is read here, without unpickling, whatever the timm version does.

    Loading is strict (timm's own is not when ``num_classes`` differs from its registry's): the model is built with
    the file's head (found under timm's names, else assumed to have the registry's classes) and the head replaced
    afterwards. Only when nothing but the head fails to load (a renamed head of another size, or none) is the head
    left out. timm copies the weights once on the way, so the peak memory holds them three times.
    """
    import timm
    from timm.models._pretrained import PretrainedCfg

    if "state_dict" not in PretrainedCfg.__dataclass_fields__:  # a timm without a state-dict source to filter
        model = timm.create_model(name, pretrained=False, num_classes=num_classes, **kwargs)
        load_backbone_file(model, path, name)
        return model
    state = _read_weights(path)
    heads = timm.models.get_pretrained_cfg_value(name, "classifier") or ()
    heads = (heads,) if isinstance(heads, str) else tuple(heads)
    head_keys = {f"{h}.{p}" for h in heads for p in ("weight", "bias")}
    registry_classes = timm.models.get_pretrained_cfg_value(name, "num_classes") or 0
    present = [h for h in heads if f"{h}.weight" in state]
    built = state[f"{present[0]}.weight"].shape[0] if present else registry_classes

    def build(classes: int, claimed: int) -> nn.Module:  # claimed: the weights' num_classes as timm is told
        overlay = {"source": "", "state_dict": state, "num_classes": claimed, "label_offset": 0}
        return timm.create_model(name, pretrained=True, num_classes=classes, pretrained_cfg_overlay=overlay, **kwargs)

    try:
        try:
            model = build(built, built)
        except RuntimeError as e:
            missing, unexpected, clashes = _load_report(str(e))
            bad = {*missing, *unexpected, *(c.split(":")[0] for c in clashes)}
            if present or not bad <= head_keys:
                raise
            # only the head failed (renamed by the filter, with another size or absent): the rest loaded strictly
            try:
                built, model = num_classes, build(num_classes, num_classes)
            except RuntimeError:
                built, model = num_classes, build(num_classes, -1)  # timm then drops the head keys
    except (RuntimeError, KeyError) as e:  # load_state_dict's key / shape report; a checkpoint filter's KeyError
        why = (f"no key {e} for its checkpoint filter" if isinstance(e, KeyError) else
               _load_error_summary(str(e), ignore=set() if present else head_keys))  # no head: not a fault
        raise ValueError(f"{path}: not weights of {name!r}{_vqsa_hint(state)}: {why}") from e
    for cfg in {id(c): c for c in (getattr(model, "pretrained_cfg", None), getattr(model, "default_cfg", None))
                if isinstance(c, dict)}.values():
        cfg.pop("state_dict", None)  # it would keep a second copy of every weight alive
        cfg["num_classes"] = registry_classes
    if built != num_classes:
        model.reset_classifier(num_classes)
    return model


def _build_timm(name: str, num_classes: int, pretrained: bool, weights_file: str | os.PathLike | None = None,
                **kwargs: Any) -> nn.Module:
    import timm

    if not timm.is_model(name):
        raise ValueError(f"unknown backbone {name!r}{_suggest(name)}; see vqsa.list_models()")
    if weights_file is not None:
        return _build_timm_from_file(name, num_classes, weights_file, **kwargs)
    if not pretrained:
        return timm.create_model(name, pretrained=False, num_classes=num_classes, **kwargs)
    try:
        return timm.create_model(name, pretrained=True, num_classes=num_classes, **kwargs)
    except Exception as e:  # huggingface_hub / urllib raise many types; all mean "weights unavailable"
        raise _wrap_pretrained_error(name, e) from e


def _suggest(name: str) -> str:
    import difflib

    from ._registry import list_models

    close = difflib.get_close_matches(name, list_models(), n=3)
    return f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
