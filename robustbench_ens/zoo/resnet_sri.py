"""The SRI ResNet of the VNN-COMP 2022 ``sri_resnet_a`` / ``sri_resnet_b`` benchmarks (SRI International;
Müller et al., "The Third International Verification of Neural Networks Competition (VNN-COMP 2022)").

``resnet-sri-3b``: trained with BatchNorm, exported with it folded into the convolutions (so every conv
has a bias and there is no BN layer). Stem conv3x3 3->16 stride 2 -> ReLU; three residual blocks
16->32, 32->64, 64->128, each halving the resolution, ``ReLU(shortcut(x) + conv2(ReLU(conv1(x))))`` with a
conv1x1 stride-2 shortcut; flatten (128x2x2, channels first) -> fc 100 -> ReLU -> fc.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .initialization import he_init
from .normalize import CIFAR10_MEAN, CIFAR10_STD_PER_IMAGE
from .registry import register_model
from .vnncomp import BiasBlock


class SriBlock(BiasBlock):
    """The VNN-COMP ResNets' bias block with its projection shortcut stored as a bare conv (key ``shortcut``)."""

    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__(in_planes, planes, stride)
        self.shortcut = self.shortcut[0]


class SriResNet(nn.Module):
    """``stem`` (stride 2) -> ``blocks`` (each stride 2) -> flatten -> ``fc1`` -> ReLU -> ``fc2``."""

    def __init__(self, stem: int = 16, widths: tuple[int, ...] = (32, 64, 128), hidden: int = 100,
                 num_classes: int = 10, image_size: int = 32):
        super().__init__()
        self.stem = nn.Conv2d(3, stem, 3, stride=2, padding=1)
        channels = (stem, *widths)
        self.blocks = nn.Sequential(*(SriBlock(c_in, c_out, 2) for c_in, c_out in zip(channels, widths)))
        size = image_size // 2 ** (len(widths) + 1)
        self.fc1 = nn.Linear(widths[-1] * size * size, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)
        he_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.blocks(F.relu(self.stem(x)))
        return self.fc2(F.relu(self.fc1(torch.flatten(out, 1))))


@register_model("resnet-sri-3b", mean=CIFAR10_MEAN, std=CIFAR10_STD_PER_IMAGE)
def resnet_sri_3b(num_classes: int = 10) -> SriResNet:
    """SRI ResNet: stem 3->16, blocks to 32, 64, 128 (32x32 -> 2x2); 512 -> 100 -> classes."""
    return SriResNet(num_classes=num_classes)
