"""``create_model``: one entry point for every Table 1 row on any timm, torchvision or built-in backbone."""
from __future__ import annotations

import json
import os
from typing import Any

from vqsa.layers import FUSION_MODES, VectorQuantizer

from ._backbone import build_backbone
from .presets import codebook_preset as _codebook_preset
from .classifier import VQSAClassifier
from .weights_io import load_state_dict
from .zoo import ShippedWeights, load_zoo_state, shipped_weights, zoo_model

# VectorQuantizer options create_model forwards (besides codebook_size, distance and commitment_weight).
_VQ_OPTIONS = (
    "init", "init_range", "kmeans_iters", "init_samples", "codebook_update", "decay", "eps", "dead_code_threshold",
    "dead_code_interval", "dead_code_buffer", "chunk_budget", "seed",
)
DEFAULT_CODEBOOK_SIZE = 10000


def _refuse_unpooled(kwargs: dict[str, Any]) -> None:
    """Backbone options that leave no pooled feature for the codebook fail here, not in the first forward pass."""
    if kwargs.get("features_only"):
        raise ValueError("features_only=True builds a multi-scale feature extractor without the pooled feature that "
                         "the codebook quantizes: use timm.create_model(name, features_only=True) for that, or a vqsa "
                         "model's forward_features / forward_intermediates")
    if "global_pool" in kwargs and kwargs["global_pool"] in ("", None):
        raise ValueError(f"global_pool={kwargs['global_pool']!r} leaves the features unpooled, but the codebook "
                         "quantizes the pooled feature: pass a pooling ('avg', 'max', 'token', ...) or leave it out")


def create_model(
    name: str,
    num_classes: int | None = None,
    *,
    pretrained: bool | str | os.PathLike = False,
    codebook_size: int | None = None,
    fusion: str | None = None,
    attention: bool | None = None,
    vq: bool = True,
    distance: str | None = None,
    commitment_weight: float | None = None,
    codebook_preset: str | None = None,
    **kwargs: Any,
) -> VQSAClassifier:
    """Build a VQSA classifier (or, with ``vq=False``, the plain fine-tuning baseline through the same code).

    Args:
        name: a timm model name (``"resnet50"``), a torchvision name with the ``tv:`` prefix (``"tv:resnet50"``,
            ``"tv:resnext101_32x8d"``) or one of vqsa's small backbones (``"cifar_resnet20"``); see ``list_models``.
        num_classes: classifier outputs; 0 builds no final layer (``model(x)`` returns the d-dim pre-logits).
            None: the shipped weights' classes with ``pretrained=True`` for a backbone vqsa ships (10 for
            ``cifar_airnet``), else 1000.
        pretrained: True loads the backbone's pretrained weights from torchvision / timm (RuntimeError when
            unavailable); a path loads them from a weights file of that network instead (a torchvision or timm
            state dict, ``.pth`` or ``.safetensors``: offline machines). Its classifier is kept when it has
            ``num_classes`` outputs.
        codebook_size: number of codes n (default 10000, the paper's value).
        fusion: ``"replace"``, ``"add"`` or ``"concat"`` (default) with a codebook; ``"none"`` without.
        attention: the two-token self-attention of Eq. 8 (default: True for concat, False otherwise; needs concat).
        vq: False builds the Table 1 fine-tuning baseline: backbone + its own classifier, no codebook.
        distance: ``"cosine"`` (default, as the authors) or ``"l2"`` nearest-code search.
        commitment_weight: beta of ``L_vq + beta * L_cmt`` (default 0.25).
        codebook_preset: a bundle of VectorQuantizer options, ``"paper"`` (the default settings), ``"healthy"``
            (k-means++ init from a data pass + dead-code restarts) or ``"healthy_ema"`` (the same with EMA codebook
            updates); see ``vqsa.models.presets``. Options passed explicitly override the preset's. The model
            config stores the expanded options, not the preset's name.
        **kwargs: ``cifar_stem=True`` (3x3 stride-1 stem, no max-pool: for 32-px inputs); ``mean``/``std`` to
            override the normalisation statistics; the VectorQuantizer options ``init``, ``init_range``,
            ``kmeans_iters``, ``init_samples``, ``codebook_update``, ``decay``, ``eps``, ``dead_code_threshold``,
            ``dead_code_interval``, ``dead_code_buffer``, ``chunk_budget``, ``seed``; any other keyword goes to the
            backbone constructor (e.g. ``drop_path_rate`` for timm). None values are dropped, so CLI flags left at
            None never override defaults.

    Example:
        >>> model = create_model("cifar_resnet20", num_classes=10, codebook_size=512, init="kmeans")
        >>> logits = model(torch.rand(8, 3, 32, 32))             # (8, 10)
        >>> out = model(images, return_aux=True)
        >>> loss = F.cross_entropy(out.logits, labels) + out.aux_loss
    """
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if not isinstance(name, str) or not name:
        raise TypeError(f"model name must be a non-empty string, got {name!r}")
    if not isinstance(vq, bool):
        raise TypeError(f"vq must be a bool, got {vq!r}")
    if pretrained is None or (isinstance(pretrained, int) and pretrained in (0, 1)):
        pretrained = bool(pretrained)  # argparse-style None, and 0 / 1
    if not isinstance(pretrained, (bool, str, os.PathLike)):
        raise TypeError(f"pretrained must be True/False or a weights file path, got {pretrained!r}")
    _refuse_unpooled(kwargs)
    zoo = zoo_model(name)
    if zoo is not None:
        options = {"codebook_size": codebook_size, "fusion": fusion, "attention": attention, "distance": distance,
                   "commitment_weight": commitment_weight, "codebook_preset": codebook_preset, **kwargs}
        return _build_zoo_model(name, zoo, num_classes, pretrained, sorted(k for k, v in options.items()
                                                                          if v is not None))
    if num_classes is None:
        shipped = shipped_weights().get(name) if pretrained is True else None
        num_classes = shipped.num_classes if shipped is not None else 1000
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
        raise ValueError(f"num_classes must be an int >= 0, got {num_classes!r}")
    vq_opts = {k: kwargs.pop(k) for k in _VQ_OPTIONS if k in kwargs}
    if codebook_preset is not None:
        if not vq:
            raise ValueError(f"codebook_preset={codebook_preset!r} makes no sense with vq=False (no codebook)")
        vq_opts = {**_codebook_preset(codebook_preset), **vq_opts}
    explicit = {"codebook_size": codebook_size, "distance": distance, "commitment_weight": commitment_weight}
    explicit = {k: v for k, v in explicit.items() if v is not None}

    if vq:
        fusion = "concat" if fusion is None else fusion
        if fusion == "none":
            raise ValueError("fusion='none' is the baseline without a codebook: pass vq=False instead")
        if fusion not in FUSION_MODES:
            raise ValueError(f"fusion must be one of {FUSION_MODES}, got {fusion!r}")
        attention = (fusion == "concat") if attention is None else attention
        if attention and fusion != "concat":
            raise ValueError(f"attention=True needs fusion='concat' (two tokens to attend over), got {fusion!r}")
    else:
        given = sorted([*explicit, *vq_opts])
        if given:
            raise ValueError(f"codebook options {given} make no sense with vq=False (the baseline has no codebook)")
        if fusion not in (None, "none"):
            raise ValueError(f"fusion={fusion!r} needs a codebook: drop it or set vq=True")
        if attention:
            raise ValueError("attention=True needs the codebook (it attends over z_hat and z): set vq=True")
        fusion, attention = "none", False

    cifar_stem = bool(kwargs.pop("cifar_stem", False))
    mean, std = kwargs.pop("mean", None), kwargs.pop("std", None)
    config: dict[str, Any] = {"name": name, "num_classes": num_classes, "vq": vq, "fusion": fusion,
                              "attention": bool(attention)}
    if vq:
        config.update(
            codebook_size=explicit.get("codebook_size", DEFAULT_CODEBOOK_SIZE),
            distance=explicit.get("distance", "cosine"),
            commitment_weight=explicit.get("commitment_weight", 0.25),
            **vq_opts,
        )
    if cifar_stem:
        config["cifar_stem"] = True
    if mean is not None:
        config["mean"] = [float(v) for v in mean]
    if std is not None:
        config["std"] = [float(v) for v in std]
    config.update(kwargs)
    try:  # tuples come back from JSON as lists: keep the canonical (JSON) form in the config
        config = json.loads(json.dumps(config, allow_nan=False))
    except (TypeError, ValueError) as e:
        raise TypeError(f"model options must be JSON-serialisable (they are saved with the weights): {e}") from e

    backbone, classifier = build_backbone(name, num_classes, pretrained=pretrained, cifar_stem=cifar_stem, **kwargs)
    in_chans = int(kwargs.get("in_chans", 3))
    if in_chans != 3 and mean is None and std is None:  # one grey statistic per channel, from the RGB ones
        mean = [sum(backbone.mean) / len(backbone.mean)] * in_chans
        std = [sum(backbone.std) / len(backbone.std)] * in_chans
        config.update(mean=mean, std=std)
    if len(config.get("mean", backbone.mean)) != in_chans or len(config.get("std", backbone.std)) != in_chans:
        raise ValueError(f"in_chans={in_chans} needs mean and std with {in_chans} value(s) each")
    quantizer = None
    if vq:
        vq_keys = ("codebook_size", "distance", "commitment_weight", *vq_opts)
        quantizer = VectorQuantizer(backbone.num_features, **{k: config[k] for k in vq_keys})
    return VQSAClassifier(
        backbone,
        classifier,
        num_classes,
        vq=quantizer,
        fusion=fusion,
        attention=bool(attention),
        mean=tuple(config.get("mean", backbone.mean)),
        std=tuple(config.get("std", backbone.std)),
        model_config=config,
    )


def _build_zoo_model(name: str, entry: ShippedWeights, num_classes: int | None, pretrained: bool | str | os.PathLike,
                     given: list[str]) -> VQSAClassifier:
    """A whole shipped model: its recorded architecture, and with ``pretrained=True`` all its weights (stored in
    float16 or float32, loaded into float32)."""
    if given:
        raise ValueError(f"{name} is a shipped model with its own architecture ({entry.model_config}): drop "
                         f"{', '.join(given)}, or build {name.partition('.')[0]!r} with them")
    if num_classes not in (None, entry.num_classes):
        raise ValueError(f"{name} classifies {entry.num_classes} classes; load it as shipped and call "
                         f"model.reset_classifier({num_classes}) for another head")
    if not isinstance(pretrained, bool):
        raise ValueError(f"{name} is a shipped model: pretrained must be True (its weights) or False, not a file")
    model = create_model(**{**entry.model_config, "pretrained": False})
    if pretrained:
        load_state_dict(model, load_zoo_state(entry), strict=True, source=str(entry.path))
    return model
