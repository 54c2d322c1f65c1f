"""Parameter and FLOP breakdowns (the paper's Table 2), split into backbone / codebook / attention / head.

FLOPs are counted with ``torch.utils.flop_counter`` (matmuls and convolutions; elementwise ops, pooling and
normalisation are not counted) and are real FLOPs: one multiply-add = 2 FLOPs, so MACs = FLOPs / 2. The paper's
"4.11G FLOPS" for ResNet-50 is the usual MAC count.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

#: Parts of a VQSAClassifier: part name -> top-level child modules.
PARTS = {"backbone": ("backbone",), "codebook": ("vq",), "attention": ("attn",), "head": ("fc_fuse", "fc")}


def _part_of(child: str, model: nn.Module) -> str:
    if hasattr(model, "vq") and hasattr(model, "backbone"):
        for part, children in PARTS.items():
            if child in children:
                return part
        return "other"
    return child


def count_params(model: nn.Module, by: str | None = None, trainable_only: bool = False) -> int | dict[str, int]:
    """Number of parameters, in total (``by=None``) or per part (``by="module"``).

    For a VQSAClassifier the parts are ``backbone``, ``codebook``, ``attention``, ``head`` (+ ``other`` if any);
    for another module they are its top-level children (``<self>`` for parameters it holds directly). The dict
    has a ``total`` entry equal to the sum of the parts.
    """
    if by not in (None, "module"):
        raise ValueError(f"by must be None or 'module', got {by!r}")
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad or not trainable_only]
    total = sum(p.numel() for _, p in params)
    if by is None:
        return total
    out: dict[str, int] = dict.fromkeys(PARTS, 0) if hasattr(model, "vq") and hasattr(model, "backbone") else {}
    for name, p in params:
        child = name.split(".", 1)[0] if "." in name else "<self>"
        part = _part_of(child, model)
        out[part] = out.get(part, 0) + p.numel()
    out["total"] = total
    return out


def count_flops(
    model: nn.Module, input_size: Sequence[int] = (1, 3, 224, 224), by: str | None = "module"
) -> dict[str, int]:
    """FLOPs of one forward pass in eval mode on a [0, 1] input of ``input_size``, split like ``count_params``.

    Returns ``{part: flops, ..., "total": flops}`` (``{"total": flops}`` with ``by=None``). Divide by 2 for MACs.
    """
    from torch.utils.flop_counter import FlopCounterMode

    if by not in (None, "module"):
        raise ValueError(f"by must be None or 'module', got {by!r}")
    if len(input_size) != 4:
        raise ValueError(f"input_size must be (B, C, H, W), got {tuple(input_size)}")
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.rand(*input_size, device=device))
    finally:
        model.train(was_training)
    counts = {k: sum(v.values()) for k, v in counter.get_flop_counts().items()}
    total = int(counter.get_total_flops())
    if by is None:
        return {"total": total}
    root = type(model).__name__
    is_vqsa = hasattr(model, "vq") and hasattr(model, "backbone")
    out: dict[str, int] = dict.fromkeys(PARTS, 0) if is_vqsa else {}
    for key, flops in counts.items():
        parts = key.split(".")
        if len(parts) == 2 and parts[0] == root:
            part = _part_of(parts[1], model)
            out[part] = out.get(part, 0) + int(flops)
    # The backbone runs through forward_features (not its own __call__), so it has no entry of its own: it is
    # everything the other parts do not account for (the normalisation has no counted FLOPs).
    rest = "backbone" if is_vqsa else "other"
    out[rest] = total - sum(v for k, v in out.items() if k != rest)
    out["total"] = total
    return out
