"""Small plain CNNs of the verification and Keras literature, laid out as their shared ports.

* ``cnn-a-2c2f``, the small CIFAR net of Wong et al. ("Scaling provable adversarial defenses", NeurIPS
  2018), OVAL's "wide" net, and "CNN-A" of Dathathri et al. ("Enabling certification of
  verification-agnostic networks via memory-efficient semidefinite programming", NeurIPS 2020):
  conv4x4 3->16 s2 p1 -> ReLU -> conv4x4 16->32 s2 p1 -> ReLU -> flatten (32x8x8) -> fc 100 -> ReLU -> fc.
* ``convsmall-eran`` / ``convsmall-eran-sigmoid``, ERAN's ConvSmall (Singh et al., "Fast and Effective
  Robustness Certification", NeurIPS 2018): the same layers without padding (flatten 32x6x6), with
  ReLU or Sigmoid activations.
* ``allconv7-biasfield``, the VNN-COMP 2022 ``cifar_biasfield`` base network: seven conv3x3 + ReLU and
  a conv4x4 to the classes (Springenberg et al.'s all-convolutional design, no dense layer).
* ``vgg-keras-6c3f``, the Keras VGG-style CNN of the PyPI package ``cifar-10-model``: six unpadded
  conv3x3, each conv -> ReLU -> BatchNorm, two max-pools, three dense layers; it takes raw 0-255 pixels.

The first three are plain ``nn.Sequential`` of Conv2d / activation / Flatten / Linear (state-dict keys
``0.weight``, ``2.weight``, ...), so that a bound propagator can walk their layers in order. Their flatten
is PyTorch's channels-first one, as in the PyTorch originals (a channels-last flatten leaves ~10 % accuracy).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .initialization import he_init
from .normalize import CIFAR10_MEAN, CIFAR10_STD_PER_IMAGE, IMAGENET_MEAN, IMAGENET_STD, RAW_PIXEL_MEAN, RAW_PIXEL_STD
from .registry import register_model

# OVAL's and convex_adversarial's CIFAR normalisation: ImageNet means, one std for all channels.
OVAL_STD = (0.225, 0.225, 0.225)
KERAS_BN_EPS = 1e-3


def two_conv_two_fc(padding: int, activation: type[nn.Module], num_classes: int = 10,
                    image_size: int = 32) -> nn.Sequential:
    """conv4x4 3->16 s2 -> act -> conv4x4 16->32 s2 -> act -> flatten -> fc 100 -> act -> fc (CNN-A, ConvSmall)."""
    size = image_size
    for _ in range(2):
        size = (size + 2 * padding - 4) // 2 + 1
    net = nn.Sequential(nn.Conv2d(3, 16, 4, stride=2, padding=padding), activation(),
                        nn.Conv2d(16, 32, 4, stride=2, padding=padding), activation(), nn.Flatten(),
                        nn.Linear(32 * size * size, 100), activation(), nn.Linear(100, num_classes))
    he_init(net)
    return net


@register_model("cnn-a-2c2f", mean=IMAGENET_MEAN, std=OVAL_STD)
def cnn_a(num_classes: int = 10) -> nn.Sequential:
    """CNN-A: 4x4 convs with padding 1, ReLU; 2048 -> 100 -> classes."""
    return two_conv_two_fc(padding=1, activation=nn.ReLU, num_classes=num_classes)


@register_model("convsmall-eran", mean=CIFAR10_MEAN, std=CIFAR10_STD_PER_IMAGE)
def convsmall(num_classes: int = 10) -> nn.Sequential:
    """ERAN ConvSmall: 4x4 convs without padding, ReLU; 1152 -> 100 -> classes."""
    return two_conv_two_fc(padding=0, activation=nn.ReLU, num_classes=num_classes)


@register_model("convsmall-eran-sigmoid", mean=CIFAR10_MEAN, std=CIFAR10_STD_PER_IMAGE)
def convsmall_sigmoid(num_classes: int = 10) -> nn.Sequential:
    """ERAN ConvSmall with Sigmoid activations."""
    return two_conv_two_fc(padding=0, activation=nn.Sigmoid, num_classes=num_classes)


@register_model("allconv7-biasfield", mean=IMAGENET_MEAN, std=IMAGENET_STD)
def allconv7(num_classes: int = 10) -> nn.Sequential:
    """Seven conv3x3 (pad 1) + ReLU, widths 16, 32, 32, 64, 64, 128, 128, strides 1, 2, 1, 2, 1, 2, 1
    (32x32 -> 4x4), then conv4x4 128 -> classes (no padding) -> flatten."""
    layers: list[nn.Module] = []
    in_channels = 3
    for out_channels, stride in ((16, 1), (32, 2), (32, 1), (64, 2), (64, 1), (128, 2), (128, 1)):
        layers += [nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1), nn.ReLU()]
        in_channels = out_channels
    net = nn.Sequential(*layers, nn.Conv2d(in_channels, num_classes, 4), nn.Flatten())
    he_init(net)
    return net


class KerasVGG(nn.Module):
    """Unpadded conv3x3 -> ReLU -> BatchNorm (eps 1e-3) blocks with 2x2 max-pools, then fc -> ReLU -> fc -> ReLU
    -> fc. The Keras original ends in Dense(classes, relu); the logits here are the scores before that ReLU."""

    def __init__(self, widths: tuple[int, ...] = (64, 64, 128, 128, 64, 64), pool_after: tuple[int, ...] = (1, 3),
                 hidden: tuple[int, int] = (1024, 512), num_classes: int = 10, image_size: int = 32):
        super().__init__()
        channels, size = (3, *widths), image_size
        self.convs = nn.ModuleList(nn.Conv2d(c_in, c_out, 3) for c_in, c_out in zip(channels, widths))
        self.bns = nn.ModuleList(nn.BatchNorm2d(width, eps=KERAS_BN_EPS) for width in widths)
        self.pool_after = frozenset(pool_after)
        for index in range(len(widths)):
            size = (size - 2) // 2 if index in self.pool_after else size - 2
        self.fc1 = nn.Linear(widths[-1] * size * size, hidden[0])
        self.fc2 = nn.Linear(hidden[0], hidden[1])
        self.fc3 = nn.Linear(hidden[1], num_classes)
        he_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for index, (conv, bn) in enumerate(zip(self.convs, self.bns)):
            x = bn(F.relu(conv(x)))
            if index in self.pool_after:
                x = F.max_pool2d(x, 2)
        x = F.relu(self.fc1(torch.flatten(x, 1)))
        return self.fc3(F.relu(self.fc2(x)))


@register_model("vgg-keras-6c3f", mean=RAW_PIXEL_MEAN, std=RAW_PIXEL_STD)
def vgg_keras(num_classes: int = 10) -> KerasVGG:
    """Six unpadded convs (64, 64, pool, 128, 128, pool, 64, 64: 32x32 -> 1x1); 64 -> 1024 -> 512 -> classes."""
    return KerasVGG(num_classes=num_classes)
