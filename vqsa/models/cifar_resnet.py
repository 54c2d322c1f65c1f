"""The classic CIFAR ResNets of He et al. (2016, Sec. 4.2): 3 stages of 16/32/64 channels, 6n + 2 layers.

ResNet-20 (0.27 M parameters, 64-d features) trains at several hundred 32-px images/s on two CPU cores, which makes
it the backbone of ``vqsa demo`` and of the test suite. The models follow timm's interface (``forward_features``,
``forward_head(pre_logits=...)``, ``get_classifier``, ``reset_classifier``, ``num_features``, ``pretrained_cfg``,
``feature_info``) so the factory wraps them exactly like a timm backbone.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._cifar_base import CifarStagesNet
from ._registry import register_backbone

#: CIFAR-10 training-set channel statistics (per pixel, over the 50,000 training images).
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


class BasicBlock(nn.Module):
    """3x3-3x3 residual block; the shortcut is a strided 1x1 conv + BN when the shape changes (option B)."""

    def __init__(self, in_chs: int, out_chs: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_chs, out_chs, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_chs)
        self.conv2 = nn.Conv2d(out_chs, out_chs, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_chs)
        self.downsample = None
        if stride != 1 or in_chs != out_chs:
            self.downsample = nn.Sequential(nn.Conv2d(in_chs, out_chs, 1, stride, bias=False), nn.BatchNorm2d(out_chs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(out + shortcut, inplace=True)


class CifarResNet(CifarStagesNet):
    """ResNet for 32-px inputs: 3x3 stem, three stages of ``depth`` blocks, global average pool, linear classifier.

    Args:
        depth: blocks per stage (n in the paper's 6n + 2 layers: 3 -> ResNet-20).
        num_classes: classifier outputs; 0 leaves the classifier out (``forward`` returns pooled features).
        widths: channels of the three stages.
        in_chans: input channels.
    """

    def __init__(
        self, depth: int = 3, num_classes: int = 10, widths: tuple[int, int, int] = (16, 32, 64), in_chans: int = 3
    ) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self.conv1 = nn.Conv2d(in_chans, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        stages, in_chs = [], widths[0]
        for i, w in enumerate(widths):
            blocks = [BasicBlock(in_chs if j == 0 else w, w, 2 if (i > 0 and j == 0) else 1) for j in range(depth)]
            stages.append(nn.Sequential(*blocks))
            in_chs = w
        self.layer1, self.layer2, self.layer3 = stages
        self.num_features = widths[-1]
        self.fc: nn.Module = self.new_classifier(num_classes)
        self.num_classes = num_classes
        self.pretrained_cfg = {"mean": CIFAR10_MEAN, "std": CIFAR10_STD, "input_size": (3, 32, 32), "pool_size": (8, 8)}
        self.feature_info = [
            {"num_chs": w, "reduction": 2**i, "module": f"layer{i + 1}"} for i, w in enumerate(widths)
        ]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def stem_forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn1(self.conv1(x)), inplace=True)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global average pool, then the classifier unless ``pre_logits``."""
        x = x.mean((2, 3))
        return x if pre_logits else self.fc(x)


def _cifar_resnet(depth: int, pretrained: bool, **kwargs) -> CifarResNet:
    if pretrained:
        raise RuntimeError("vqsa's CIFAR ResNets have no pretrained weights: pass pretrained=False")
    return CifarResNet(depth, **kwargs)


@register_backbone
def cifar_resnet8(pretrained: bool = False, **kwargs) -> CifarResNet:
    """CIFAR ResNet-8 (n = 1, 0.08 M parameters): the fastest backbone, for smoke tests."""
    return _cifar_resnet(1, pretrained, **kwargs)


@register_backbone
def cifar_resnet20(pretrained: bool = False, **kwargs) -> CifarResNet:
    """CIFAR ResNet-20 (n = 3, 0.27 M parameters), He et al. 2016."""
    return _cifar_resnet(3, pretrained, **kwargs)


@register_backbone
def cifar_resnet32(pretrained: bool = False, **kwargs) -> CifarResNet:
    """CIFAR ResNet-32 (n = 5, 0.46 M parameters), He et al. 2016."""
    return _cifar_resnet(5, pretrained, **kwargs)
