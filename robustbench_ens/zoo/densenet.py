"""DenseNet-40 (k = 12), "fast" variant, for CIFAR-10 (Huang et al., "Densely Connected Convolutional Networks",
CVPR 2017; the Keras 1 ``densenet_fast.py`` of titu1994/DenseNet, on raw 0-255 pixels).

Not the paper's BN-ReLU-conv layers: no BatchNorm inside the dense blocks and no bias anywhere but the head.
Stem conv3x3 3->16 -> BN (``stem_bn``); three dense blocks of 12 layers, each layer
``x = cat(x, conv3x3(ReLU(x)))`` adding 12 channels; after blocks 1 and 2 a transition conv1x1 (c->c, ``trans``)
-> avg-pool 2 -> BN (``trans_bn``); after block 3: ReLU -> global average pooling -> ``fc`` (448 -> classes).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .initialization import he_init
from .normalize import RAW_PIXEL_MEAN, RAW_PIXEL_STD
from .registry import register_model


class DenseNetFast(nn.Module):
    """``stem`` -> ``stem_bn`` -> (dense block, transition) x 2 -> dense block -> ReLU -> pool -> ``fc``."""

    def __init__(self, depth: int = 40, growth: int = 12, stem: int = 16, num_blocks: int = 3,
                 num_classes: int = 10):
        super().__init__()
        if (depth - 4) % num_blocks:
            raise ValueError(f"DenseNet depth must be {num_blocks}n + 4, got {depth}")
        layers = (depth - 4) // num_blocks
        self.stem = nn.Conv2d(3, stem, 3, padding=1, bias=False)
        self.stem_bn = nn.BatchNorm2d(stem)
        self.blocks, self.trans, self.trans_bn = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        channels = stem
        for index in range(num_blocks):
            self.blocks.append(nn.ModuleList(nn.Conv2d(channels + i * growth, growth, 3, padding=1, bias=False)
                                             for i in range(layers)))
            channels += layers * growth
            if index < num_blocks - 1:
                self.trans.append(nn.Conv2d(channels, channels, 1, bias=False))
                self.trans_bn.append(nn.BatchNorm2d(channels))
        self.fc = nn.Linear(channels, num_classes)
        he_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem_bn(self.stem(x))
        for index, block in enumerate(self.blocks):
            for conv in block:
                x = torch.cat([x, conv(F.relu(x))], dim=1)
            if index < len(self.trans):
                x = self.trans_bn[index](F.avg_pool2d(self.trans[index](x), 2))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(F.relu(x), 1), 1))


@register_model("densenet40-k12-fast", mean=RAW_PIXEL_MEAN, std=RAW_PIXEL_STD)
def densenet40_k12_fast(num_classes: int = 10) -> DenseNetFast:
    """DenseNet-40, growth rate 12, without BN in the dense blocks (titu1994's "DenseNet-Fast")."""
    return DenseNetFast(num_classes=num_classes)
