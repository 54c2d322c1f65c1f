"""Import the authors' released VQSA weights (yangzhou321/VQSA, ``train_sa.py`` layout) into a VQSAClassifier.

Their model keeps torchvision's ResNet children but ``avgpool``/``fc`` in ``resnet_layer`` (an nn.Sequential:
index 0..7 = conv1, bn1, relu, maxpool, layer1..4), the codebook as ``codebook.embeddings.weight`` (n, d), the
attention maps as raw (d, d) parameters ``K``, ``Q``, ``V`` (token t -> W @ x_t), ``fc_fuse.0`` (2d -> d) and the
pretrained ``fc`` (d -> classes); keys may carry DDP's ``module.`` prefix.
"""
from __future__ import annotations

import os
import re

import torch

from .classifier import VQSAClassifier
from .weights_io import clean_state_dict, load_state_dict, read_checkpoint

_BACKBONE_KEY = re.compile(r"^resnet_layer\.(\d+)\.(.+)$")


def convert_official_state_dict(state: dict[str, torch.Tensor], body_names: list[str]) -> dict[str, torch.Tensor]:
    """Map the authors' keys to ours; ``body_names`` are our backbone's child names in order."""
    state = clean_state_dict(state)
    for key in ("codebook.embeddings.weight", "K", "Q", "V", "fc_fuse.0.weight", "fc_fuse.0.bias"):
        if key not in state:
            raise ValueError(f"not an official VQSA state dict: key {key!r} is missing")
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        m = _BACKBONE_KEY.match(key)
        if m:
            i = int(m.group(1))
            if i >= len(body_names):
                raise ValueError(f"official key {key!r} has no counterpart ({len(body_names)} backbone children)")
            out[f"backbone.body.{body_names[i]}.{m.group(2)}"] = value
        elif key == "codebook.embeddings.weight":
            out["vq.codebook"] = value
        elif key in ("K", "Q", "V"):
            continue
        elif key.startswith(("fc_fuse.", "fc.")):
            out[key] = value
        else:
            raise ValueError(f"unexpected key {key!r} in the official state dict")
    out["attn.qkv.weight"] = torch.cat([state["Q"], state["K"], state["V"]], dim=0)
    out["vq.initted"] = torch.tensor(True)  # trained codes: never k-means re-initialised
    return out


def convert_official(
    path_or_state: str | os.PathLike | dict[str, torch.Tensor], backbone: str = "tv:resnet50"
) -> VQSAClassifier:
    """Build the authors' architecture on ``backbone`` and load their weights; returns the model in eval mode.

    The codebook size, feature dim and number of classes are read from the weights. The architecture is
    fusion="concat" + attention, cosine nearest code, as their code. Save it with :func:`vqsa.save_model`.
    """
    from ._factory import create_model

    state = path_or_state if isinstance(path_or_state, dict) else read_checkpoint(path_or_state)[0]
    state = clean_state_dict(state)
    if "codebook.embeddings.weight" not in state or "fc_fuse.0.weight" not in state:
        raise ValueError("not an official VQSA state dict: codebook.embeddings.weight / fc_fuse.0.weight missing")
    codebook_size, dim = state["codebook.embeddings.weight"].shape
    num_classes = state["fc.weight"].shape[0] if "fc.weight" in state else 0
    model = create_model(backbone, num_classes, codebook_size=int(codebook_size), fusion="concat", attention=True,
                         distance="cosine")
    if model.head_hidden_size != dim:
        raise ValueError(f"the official codebook has dim {dim} but {backbone!r} gives {model.head_hidden_size} "
                         "features")
    body_names = [n for n, _ in model.backbone.body.named_children()]
    load_state_dict(model, convert_official_state_dict(state, body_names), strict=True, source="official weights")
    return model.eval()
