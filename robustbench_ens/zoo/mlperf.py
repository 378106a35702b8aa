"""The ResNets of the MLPerf Tiny image-classification benchmark (Banbury et al., "MLPerf Tiny Benchmark",
NeurIPS 2021 Datasets and Benchmarks; mlcommons/tiny, benchmark/training/image_classification).

Keras networks on raw 0-255 pixels in which every convolution has a bias and TensorFlow's ``padding='same'``
(:class:`~.tf_padding.SameConv2d`). Stem conv3x3 -> BN -> ReLU; basic blocks conv3x3(stride) -> BN -> ReLU ->
conv3x3 -> BN, plus a ``shortcut`` conv1x1(stride) (no BN) where the shape changes, else the identity, -> ReLU;
global average pooling -> ``fc``. Keras BatchNorm has eps 1e-3.

* ``resnet8-mlperf``: the EEMBC ResNet-8 (Keras .h5): stem 16, blocks 16->16, 16->32 s2, 32->64 s2;
* ``resnet8w40-mlperf-folded``: stem 40, blocks 40->40, 40->80 s2, 80->160 s2;
* ``resnet14-6blk-mlperf-folded``: stem 32, six stride-1 blocks 32->32, 32->64, 64->64, 64->64, 64->128, 128->128.

The two ``-folded`` ones come from TFLite files in which every BatchNorm is folded into the convolution before it,
so they have no BN layers.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .initialization import he_init
from .normalize import RAW_PIXEL_MEAN, RAW_PIXEL_STD
from .registry import register_model
from .tf_padding import SameConv2d

KERAS_BN_EPS = 1e-3
# name -> (stem width, (width, stride) of each block, BatchNorm folded into the convolutions)
FAMILY: dict[str, tuple[int, tuple[tuple[int, int], ...], bool]] = {
    "resnet8-mlperf": (16, ((16, 1), (32, 2), (64, 2)), False),
    "resnet8w40-mlperf-folded": (40, ((40, 1), (80, 2), (160, 2)), True),
    "resnet14-6blk-mlperf-folded": (32, ((32, 1), (64, 1), (64, 1), (64, 1), (128, 1), (128, 1)), True),
}


def _norm_layer(folded: bool) -> Callable[[int], nn.Module]:
    return (lambda channels: nn.Identity()) if folded else (lambda channels: nn.BatchNorm2d(channels, eps=KERAS_BN_EPS))


class MlperfBlock(nn.Module):
    """conv3x3(stride) -> BN -> ReLU -> conv3x3 -> BN, plus shortcut, -> ReLU (BN: Identity when folded)."""

    residual_branch_end = "bn2"  # the last module of the residual branch (attacks.SGM scales its gradient)

    def __init__(self, in_planes: int, planes: int, stride: int, norm: Callable[[int], nn.Module]):
        super().__init__()
        self.conv1 = SameConv2d(in_planes, planes, 3, stride)
        self.bn1 = norm(planes)
        self.conv2 = SameConv2d(planes, planes, 3)
        self.bn2 = norm(planes)
        changes_shape = stride != 1 or in_planes != planes
        self.shortcut = SameConv2d(in_planes, planes, 1, stride) if changes_shape else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + self.shortcut(x))


class MlperfResNet(nn.Module):
    """Stem ``conv`` -> ``bn`` -> ReLU -> ``blocks`` -> global average pooling -> ``fc``."""

    def __init__(self, stem: int, blocks: Sequence[tuple[int, int]], folded: bool, num_classes: int = 10):
        super().__init__()
        norm = _norm_layer(folded)
        self.conv = SameConv2d(3, stem, 3)
        self.bn = norm(stem)
        layers, in_planes = [], stem
        for planes, stride in blocks:
            layers.append(MlperfBlock(in_planes, planes, stride, norm))
            in_planes = planes
        self.blocks = nn.Sequential(*layers)
        self.fc = nn.Linear(in_planes, num_classes)
        he_init(self, linear="kaiming")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.blocks(F.relu(self.bn(self.conv(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))


def _register(name: str) -> None:
    stem, blocks, folded = FAMILY[name]

    @register_model(name, mean=RAW_PIXEL_MEAN, std=RAW_PIXEL_STD)
    def constructor(num_classes: int = 10) -> MlperfResNet:
        return MlperfResNet(stem, blocks, folded, num_classes=num_classes)

    constructor.__doc__ = f"MLPerf Tiny ResNet {name!r}: stem {stem}, blocks {blocks} (width, stride)."


for _name in FAMILY:
    _register(_name)
