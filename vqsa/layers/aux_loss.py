"""Carry an auxiliary loss in the backward pass of a tensor, so that a loss computed on that tensor alone also
back-propagates the auxiliary loss (with weight 1).

``y = attach_aux_loss(x, aux)`` returns ``x``'s values; in backward, ``x`` gets ``y``'s gradient and ``aux`` gets
gradient 1, exactly as if the caller had added ``aux`` to the loss once. This is how a codebook's ``L_vq + beta
L_cmt`` reaches its parameters in a training loop that only computes ``cross_entropy(model(x), y)``. The gradient
of ``aux`` is not multiplied by any scale the caller puts on its loss (a GradScaler, ``loss / accumulation_steps``):
such loops should take ``aux_loss`` from ``model(x, return_aux=True)`` and scale it with the rest.
"""
from __future__ import annotations

import torch


class _AttachAuxLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, aux: torch.Tensor) -> torch.Tensor:
        ctx.aux_meta = (aux.shape, aux.dtype, aux.device)
        return x.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape, dtype, device = ctx.aux_meta
        return grad, torch.ones(shape, dtype=dtype, device=device)


def attach_aux_loss(x: torch.Tensor, aux: torch.Tensor) -> torch.Tensor:
    """``x`` whose backward also back-propagates ``aux`` (a 0-dim loss) with gradient 1 (see the module docstring).
    Returns ``x`` itself when ``aux`` needs no gradient, and under symbolic tracing (a ``torch.fx`` graph computes
    outputs and features; train through the model itself)."""
    if isinstance(aux, torch.fx.Proxy) or not aux.requires_grad:
        return x
    if aux.ndim != 0:
        raise ValueError(f"the auxiliary loss must be a 0-dim tensor, got shape {tuple(aux.shape)}")
    return _AttachAuxLoss.apply(x, aux)
