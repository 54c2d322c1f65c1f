"""A fast CIFAR backbone in the style of Keller Jordan's airbench: a 2x2 stem conv, three conv groups (conv, 2x2
max-pool, BatchNorm, GELU, conv, BatchNorm, GELU), global max-pool and a bias-free linear classifier.

Its convolutions are few and wide, which suits oneDNN on CPUs. ``cifar_airnet`` has airbench94's widths
(64/256/256); the recipe that trains the shipped weights and its measurements are in
``configs/cifar10_pretrain.yaml`` and ``docs/results/model_zoo.md``. Convolutions start as partial
identities (Dirac init), BatchNorm uses momentum 0.4, and the pooled features are scaled by 1/9 before the
classifier, as airbench does; the scale lives in ``forward_head`` so that ``pre_logits`` features and the
classifier together give the same logits.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._cifar_base import CifarStagesNet
from ._registry import register_backbone
from .cifar_resnet import CIFAR10_MEAN, CIFAR10_STD

FEATURE_SCALE = 1 / 9


class _Conv(nn.Conv2d):
    """3x3 'same' convolution without bias, initialised as a partial identity on its first ``in_channels``."""

    def __init__(self, in_chs: int, out_chs: int) -> None:
        super().__init__(in_chs, out_chs, 3, padding=1, bias=False)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        w = self.weight.data
        nn.init.dirac_(w[: w.size(1)])


class ConvGroup(nn.Module):
    """conv -> max-pool 2 -> BN -> GELU -> conv -> BN -> GELU (halves the resolution)."""

    def __init__(self, in_chs: int, out_chs: int, bn_momentum: float = 0.4) -> None:
        super().__init__()
        self.conv1 = _Conv(in_chs, out_chs)
        self.bn1 = nn.BatchNorm2d(out_chs, momentum=bn_momentum)
        self.conv2 = _Conv(out_chs, out_chs)
        self.bn2 = nn.BatchNorm2d(out_chs, momentum=bn_momentum)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.bn1(F.max_pool2d(self.conv1(x), 2)))
        return F.gelu(self.bn2(self.conv2(x)))


class CifarAirNet(CifarStagesNet):
    """airbench-style network for 32-px images (see the module docstring).

    Args:
        widths: channels of the three conv groups.
        num_classes: classifier outputs; 0 leaves the classifier out.
        in_chans: input channels.
        stem_width: channels of the 2x2 stem conv.
        bn_momentum: BatchNorm momentum (PyTorch's convention).
    """

    classifier_bias = False

    def __init__(
        self, widths: tuple[int, int, int] = (64, 256, 256), num_classes: int = 10, in_chans: int = 3,
        stem_width: int = 24, bn_momentum: float = 0.4,
    ) -> None:
        super().__init__()
        if len(widths) != 3 or any(int(w) <= 0 for w in widths):
            raise ValueError(f"widths must be three positive channel counts, got {widths!r}")
        self.stem = nn.Conv2d(in_chans, stem_width, 2, bias=True)
        chans = (stem_width, *widths)
        self.layer1, self.layer2, self.layer3 = (ConvGroup(chans[i], chans[i + 1], bn_momentum) for i in range(3))
        self.num_features = widths[-1]
        self.num_classes = num_classes
        self.fc: nn.Module = self.new_classifier(num_classes)
        self.pretrained_cfg = {"mean": CIFAR10_MEAN, "std": CIFAR10_STD, "input_size": (3, 32, 32), "pool_size": (3, 3)}
        self.feature_info = [
            {"num_chs": w, "reduction": 2 ** (i + 1), "module": f"layer{i + 1}"} for i, w in enumerate(widths)
        ]

    def stem_forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.stem(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global max-pool and the 1/9 feature scale, then the classifier unless ``pre_logits``."""
        x = x.amax((2, 3)) * FEATURE_SCALE
        return x if pre_logits else self.fc(x)


@register_backbone
def cifar_airnet(pretrained: bool = False, **kwargs) -> CifarAirNet:
    """airbench-style CIFAR network, widths 64/256/256 (1.97 M parameters)."""
    from .zoo import load_shipped

    model = CifarAirNet((64, 256, 256), **kwargs)
    return load_shipped(model, "cifar_airnet") if pretrained else model
