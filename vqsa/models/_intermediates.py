"""timm's ``forward_intermediates`` for vqsa's own backbones, whose stages run one after the other."""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn


def stage_indices(n: int, indices: int | Sequence[int] | None) -> list[int]:
    """timm's convention: None -> every stage, an int k -> the last k stages, a list -> those (negative from the
    end)."""
    if indices is None:
        return list(range(n))
    if isinstance(indices, int):
        if not 0 < indices <= n:
            raise ValueError(f"indices={indices}: there are {n} stages")
        return list(range(n - indices, n))
    out = [i + n if i < 0 else i for i in indices]
    if any(not 0 <= i < n for i in out):
        raise ValueError(f"indices {list(indices)} out of range for {n} stages")
    return sorted(out)


def forward_intermediates(
    x: torch.Tensor, stem: Callable[[torch.Tensor], torch.Tensor], stages: Sequence[nn.Module],
    indices: int | Sequence[int] | None = None, norm: bool = False, stop_early: bool = False,
    output_fmt: str = "NCHW", intermediates_only: bool = False,
) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
    """Run ``stem`` then ``stages``, keeping the outputs of the stages in ``indices`` (timm's semantics; these
    backbones have no final norm, so ``norm`` changes nothing)."""
    if output_fmt != "NCHW":
        raise ValueError(f"output_fmt={output_fmt!r}: these backbones give NCHW feature maps only")
    take = stage_indices(len(stages), indices)
    x = stem(x)
    kept = []
    last = take[-1] if stop_early or intermediates_only else len(stages) - 1
    for i, stage in enumerate(stages[: last + 1]):
        x = stage(x)
        if i in take:
            kept.append(x)
    return kept if intermediates_only else (x, kept)
