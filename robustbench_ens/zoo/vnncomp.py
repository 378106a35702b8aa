"""The small CIFAR ResNets of the VNN-COMP 2021 ``cifar10_resnet`` benchmark.

ResNet-2B and ResNet-4B (used for the verification competition, see Bak et al., "The
Second International Verification of Neural Networks Competition (VNN-COMP 2021)", 2021)
are residual networks without BatchNorm: every conv has a bias, the stem has stride 2, and
the head is dense (flatten -> linear1 -> ReLU -> linear2) rather than pooled.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .initialization import he_init
from .normalize import CIFAR10_MEAN, CIFAR10_STD
from .registry import register_model


class BiasBlock(nn.Module):
    """conv3x3(stride, bias) -> ReLU -> conv3x3(bias), plus shortcut, -> ReLU.

    The shortcut is ``shortcut.0`` = conv1x1(stride, bias) where the shape changes and the
    identity (an empty Sequential, no state) otherwise.
    """

    residual_branch_end = "conv2"  # the last module of the residual branch (attacks.SGM scales its gradient)

    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1)
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride))
        else:
            self.shortcut = nn.Sequential()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(F.relu(self.conv1(x)))
        return F.relu(out + self.shortcut(x))


class VnnResNet(nn.Module):
    """Stem conv (stride 2) -> stages of BiasBlocks (each stage halves the resolution) -> dense head."""

    def __init__(self, stem: int, stages: list[tuple[int, int]], num_classes: int = 10,
                 hidden: int = 100, image_size: int = 32):
        super().__init__()
        self.conv1 = nn.Conv2d(3, stem, 3, stride=2, padding=1)
        in_planes, size = stem, image_size // 2
        for index, (planes, blocks) in enumerate(stages, start=1):
            layer = [BiasBlock(in_planes if b == 0 else planes, planes, 2 if b == 0 else 1) for b in range(blocks)]
            self.add_module(f"layer{index}", nn.Sequential(*layer))
            in_planes, size = planes, size // 2
        self.num_stages = len(stages)
        self.linear1 = nn.Linear(in_planes * size * size, hidden)
        self.linear2 = nn.Linear(hidden, num_classes)
        he_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.conv1(x))
        for index in range(1, self.num_stages + 1):
            out = getattr(self, f"layer{index}")(out)
        out = F.relu(self.linear1(torch.flatten(out, 1)))
        return self.linear2(out)


@register_model("resnet2b", mean=CIFAR10_MEAN, std=CIFAR10_STD)
def resnet2b(num_classes: int = 10) -> VnnResNet:
    """ResNet-2B: stem 3->8; one stage of 2 blocks to 16 channels; 1024 -> 100 -> classes."""
    return VnnResNet(stem=8, stages=[(16, 2)], num_classes=num_classes)


@register_model("resnet4b", mean=CIFAR10_MEAN, std=CIFAR10_STD)
def resnet4b(num_classes: int = 10) -> VnnResNet:
    """ResNet-4B: stem 3->16; two stages of 2 blocks to 32 channels; 512 -> 100 -> classes."""
    return VnnResNet(stem=16, stages=[(32, 2), (32, 2)], num_classes=num_classes)
