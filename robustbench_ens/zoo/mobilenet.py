"""MobileNetV2 for CIFAR-10 (Sandler et al., "MobileNetV2: Inverted Residuals and Linear
Bottlenecks", CVPR 2018).

Inverted residual blocks (1x1 expansion -> 3x3 depthwise -> linear 1x1 projection, residual
where stride is 1 and widths agree). For 32x32 inputs the stem conv has stride 1 instead of
2 and the second stage (24 channels) stride 1 instead of 2, so the final feature map is 4x4
rather than 1x1; everything else (widths, expansion 6, 1280-channel last conv) is the paper's.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .initialization import he_init
from .normalize import CIFAR10_MEAN, CIFAR10_STD
from .registry import register_model

# (expansion t, output channels c, repeats n, first stride s), paper Table 2 with CIFAR strides.
STAGES = ((1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def conv_bn_relu(in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, stride, padding=kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_channels), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int):
        super().__init__()
        hidden = in_channels * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers.append(conv_bn_relu(in_channels, hidden, 1))
        layers += [conv_bn_relu(hidden, hidden, 3, stride, groups=hidden),
                   nn.Conv2d(hidden, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels)]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + out if self.residual else out


class MobileNetV2(nn.Module):
    def __init__(self, num_classes: int = 10, last_channels: int = 1280):
        super().__init__()
        layers: list[nn.Module] = [conv_bn_relu(3, 32, 3, stride=1)]
        in_channels = 32
        for expansion, channels, repeats, stride in STAGES:
            for index in range(repeats):
                layers.append(InvertedResidual(in_channels, channels, stride if index == 0 else 1, expansion))
                in_channels = channels
        layers.append(conv_bn_relu(in_channels, last_channels, 1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(last_channels, num_classes)
        he_init(self, linear=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(out, 1))


@register_model("mobilenetv2", mean=CIFAR10_MEAN, std=CIFAR10_STD)
def mobilenetv2(num_classes: int = 10) -> MobileNetV2:
    """MobileNetV2 (width 1.0) with stem and stage-2 strides set to 1 for 32x32 inputs."""
    return MobileNetV2(num_classes=num_classes)
