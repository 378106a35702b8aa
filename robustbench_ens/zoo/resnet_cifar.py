"""CIFAR ResNets of depth 6n+2 (He et al., "Deep Residual Learning for Image Recognition",
CVPR 2016, section 4.2).

A 3x3 stem with 16 channels, three stages of n BasicBlocks with widths 16, 32, 64 (the
first block of stages 2 and 3 has stride 2), global average pooling and a linear head.
Where a block changes shape, the shortcut is either

* option A: parameter-free, ``x[:, :, ::2, ::2]`` zero-padded by planes//4 channels on each
  side (the paper's CIFAR choice; state-dict layout of pytorch_resnet_cifar10, head
  ``linear``), registered as ``resnet{20,32,44,56,110}_a``; or
* option B: a projection ``downsample`` = conv1x1 (no bias) + BatchNorm (layout of the
  DVERGE code base, head ``fc``), registered as ``resnet{20,32,44,56,110}_b``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .initialization import he_init
from .normalize import CIFAR10_MEAN, CIFAR10_STD_PER_IMAGE, IMAGENET_MEAN, IMAGENET_STD
from .registry import register_model

DEPTHS = (20, 32, 44, 56, 110)
WIDTHS = (16, 32, 64)


class PadShortcut(nn.Module):
    """Option-A shortcut: spatial subsampling by 2 and zero channels, no parameters."""

    def __init__(self, planes: int):
        super().__init__()
        self.pad = planes // 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))


def make_shortcut(option: str, in_planes: int, planes: int, stride: int) -> nn.Module | None:
    """The shortcut of a block, or None where input and output shapes agree (identity)."""
    if stride == 1 and in_planes == planes:
        return None
    if option == "A":
        if stride != 2 or planes != 2 * in_planes:
            raise ValueError("option-A shortcuts only halve the resolution and double the width")
        return PadShortcut(planes)
    if option == "B":
        return nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes))
    raise ValueError(f"shortcut option must be 'A' or 'B', got {option!r}")


class BasicBlock(nn.Module):
    """conv3x3(stride) -> BN -> ReLU -> conv3x3 -> BN, plus shortcut, -> ReLU."""

    residual_branch_end = "bn2"  # the last module of the residual branch (attacks.SGM scales its gradient)

    def __init__(self, in_planes: int, planes: int, stride: int, option: str):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = make_shortcut(option, in_planes, planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.pre_activations(x)[1])

    def pre_activations(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(first BN's output, the residual sum), both before their ReLU (DVERGE distils these)."""
        first = self.bn1(self.conv1(x))
        identity = x if self.downsample is None else self.downsample(x)
        return first, self.bn2(self.conv2(F.relu(first))) + identity


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for 32x32 inputs; ``option`` picks the shortcut, ``head`` the name of the classifier."""

    def __init__(self, depth: int, option: str, head: str, num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2 (20, 32, 44, 56, 110, ...), got {depth}")
        blocks = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, WIDTHS[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(WIDTHS[0])
        in_planes = WIDTHS[0]
        for index, planes in enumerate(WIDTHS, start=1):
            stride = 1 if index == 1 else 2
            layer = []
            for block in range(blocks):
                layer.append(BasicBlock(in_planes, planes, stride if block == 0 else 1, option))
                in_planes = planes
            self.add_module(f"layer{index}", nn.Sequential(*layer))
        self.head_name = head
        self.add_module(head, nn.Linear(WIDTHS[-1], num_classes))
        he_init(self, linear="kaiming")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.layer3(self.layer2(self.layer1(self.stem(x)))))

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn1(self.conv1(x)))

    def blocks(self) -> list[BasicBlock]:
        return [block for stage in (self.layer1, self.layer2, self.layer3) for block in stage]

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """The head on the last stage's feature map: global average pooling, then the linear layer."""
        return getattr(self, self.head_name)(torch.flatten(F.adaptive_avg_pool2d(features, 1), 1))


def _register(depth: int) -> None:
    @register_model(f"resnet{depth}_a", mean=IMAGENET_MEAN, std=IMAGENET_STD)
    def option_a(num_classes: int = 10) -> CifarResNet:
        return CifarResNet(depth, option="A", head="linear", num_classes=num_classes)

    @register_model(f"resnet{depth}_b", mean=CIFAR10_MEAN, std=CIFAR10_STD_PER_IMAGE)
    def option_b(num_classes: int = 10) -> CifarResNet:
        return CifarResNet(depth, option="B", head="fc", num_classes=num_classes)

    option_a.__doc__ = f"ResNet-{depth} with option-A (zero-padding) shortcuts, head ``linear``."
    option_b.__doc__ = f"ResNet-{depth} with option-B (1x1 conv + BN) shortcuts, head ``fc``."


for _depth in DEPTHS:
    _register(_depth)
