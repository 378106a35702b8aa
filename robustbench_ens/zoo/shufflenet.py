"""ShuffleNetV2 x0.5 for CIFAR-10 (Ma et al., "ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture
Design", ECCV 2018), as in chenyaofo/pytorch-cifar-models.

torchvision's ShuffleNetV2 x0.5 (stage repeats 4, 8, 4; channels 24, 48, 96, 192, conv5 1024; torchvision's
state-dict keys) with the CIFAR change: ``conv1`` is conv3x3 with stride 1 (no bias) -> BN -> ReLU, and there is no
max-pool, so the stages see 32x32, 16x16, 8x8 and 4x4 maps.
"""
from __future__ import annotations

from torch import nn
from torchvision.models import ShuffleNetV2, shufflenet_v2_x0_5

from .normalize import CIFAR10_MEAN, CIFAR10_STD_PER_IMAGE
from .registry import register_model


@register_model("shufflenetv2-x0.5-cifar", mean=CIFAR10_MEAN, std=CIFAR10_STD_PER_IMAGE)
def shufflenetv2_x0_5_cifar(num_classes: int = 10) -> ShuffleNetV2:
    """torchvision's ShuffleNetV2 x0.5 (untrained) with a stride-1 stem conv and no max-pool."""
    net = shufflenet_v2_x0_5(num_classes=num_classes)
    stem = net.conv1[0]
    net.conv1[0] = nn.Conv2d(stem.in_channels, stem.out_channels, 3, stride=1, padding=1, bias=False)
    net.maxpool = nn.Identity()
    return net
