"""VGG with BatchNorm for CIFAR-10 (Simonyan & Zisserman, "Very Deep Convolutional Networks
for Large-Scale Image Recognition", ICLR 2015; BatchNorm after every conv as in Ioffe &
Szegedy 2015).

The CIFAR variant: the five max-pools take 32x32 down to 1x1, so the classifier is a single
linear layer 512 -> classes instead of the ImageNet model's three dense layers.
"""
from __future__ import annotations

import torch
from torch import nn

from .initialization import he_init
from .normalize import CIFAR10_MEAN, CIFAR10_STD
from .registry import register_model

# Channel counts per conv; "M" is a 2x2 max-pool.
CONFIGS: dict[int, tuple] = {
    11: (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    13: (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    16: (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    19: (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
         512, 512, 512, 512, "M"),
}


class VGG(nn.Module):
    """``features`` (conv3x3-BN-ReLU blocks and max-pools) -> flatten -> ``classifier``."""

    def __init__(self, config: tuple, num_classes: int = 10):
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = 3
        for item in config:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(in_channels, item, 3, padding=1, bias=False),
                           nn.BatchNorm2d(item), nn.ReLU(inplace=True)]
                in_channels = item
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(in_channels, num_classes)
        he_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


def _register(depth: int) -> None:
    @register_model(f"vgg{depth}_bn", mean=CIFAR10_MEAN, std=CIFAR10_STD)
    def constructor(num_classes: int = 10) -> VGG:
        return VGG(CONFIGS[depth], num_classes=num_classes)

    constructor.__doc__ = f"VGG-{depth} with BatchNorm, CIFAR variant (linear 512 -> classes head)."


for _depth in CONFIGS:
    _register(_depth)
