"""What vqsa's own CIFAR backbones share: a stem, three stages run one after the other, a classifier ``fc``, and
timm's interface over them (``forward_features``, ``forward_intermediates``, ``get_classifier``,
``reset_classifier``, ``forward``)."""
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


class CifarStagesNet(nn.Module):
    """Base of a backbone made of ``stem(x)`` then ``layer1``, ``layer2``, ``layer3``; subclasses define ``stem``,
    ``forward_head``, ``num_features`` and whether the classifier has a bias (``classifier_bias``)."""

    classifier_bias = True

    def stem_forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - each subclass has its stem
        raise NotImplementedError

    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        # channels_last makes CPU convolutions 2-3x faster at these widths (measured: 230 -> 670 img/s training
        # ResNet-20 at batch 128 on 2 cores) and is the fast layout for cuDNN under AMP as well.
        return self.stem_forward(x.contiguous(memory_format=torch.channels_last))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Unpooled feature map of the last stage."""
        return self.layer3(self.layer2(self.layer1(self._stem(x))))

    def forward_intermediates(self, x: torch.Tensor, indices: int | Sequence[int] | None = None, norm: bool = False,
                              stop_early: bool = False, output_fmt: str = "NCHW", intermediates_only: bool = False):
        """timm's ``forward_intermediates`` over the three stages."""
        return forward_intermediates(x, self._stem, [self.layer1, self.layer2, self.layer3], indices, norm,
                                     stop_early, output_fmt, intermediates_only)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.fc

    def new_classifier(self, num_classes: int) -> nn.Module:
        return nn.Linear(self.num_features, num_classes, bias=self.classifier_bias) if num_classes else nn.Identity()

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier (0 removes it)."""
        self.num_classes = num_classes
        self.fc = self.new_classifier(num_classes)
