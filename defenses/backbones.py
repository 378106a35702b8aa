"""Backbones of the self-ensemble: a network seen as a stem, a list of blocks and a classifier.

The zoo's CIFAR ResNets already have that shape (``stem``, ``blocks()``, ``classify``);
:class:`TimmResNet` gives it to a timm ResNet-family network, e.g. an ImageNet ResNet-152
as in "Ensemble everything everywhere", with the user's own pretrained weights.
"""
from __future__ import annotations

import os

import timm
import torch
from torch import nn

_PARTS = ("conv1", "bn1", "act1", "maxpool", "layer1", "layer2", "layer3", "layer4", "forward_head")


class TimmResNet(nn.Module):
    """A timm ResNet-family network (resnet*, resnext*, wide_resnet*, seresnet*, ...) as stem, blocks, classifier.

    Args:
        name: the timm model name, e.g. ``"resnet152"``.
        in_chans: input channels (3 per view of the multi-resolution stack).
        num_classes: the classifier's outputs.
        weights: a file of the network's pretrained weights (``.safetensors``, ``.pth``, as
            timm reads them), or None for a random start. timm adapts them: the first
            convolution's kernel is repeated over ``in_chans`` and scaled by ``3 / in_chans``,
            and a classifier of another size is replaced by a fresh one.
    """

    def __init__(self, name: str, in_chans: int, num_classes: int, weights: str | os.PathLike | None = None):
        super().__init__()
        options = {"in_chans": in_chans, "num_classes": num_classes}
        if weights is not None:
            if not os.path.isfile(weights):
                raise FileNotFoundError(f"no weights file {weights} for the timm model {name!r}")
            options.update(pretrained=True, pretrained_cfg_overlay={"file": str(weights)})
        self.net = timm.create_model(name, **options)
        missing = [part for part in _PARTS if not hasattr(self.net, part)]
        if missing:
            raise ValueError(f"timm model {name!r} is not a ResNet-family network (it lacks {', '.join(missing)}); "
                             "the self-ensemble takes resnet*, resnext*, wide_resnet*, seresnet* and the like")

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        net = self.net
        return net.maxpool(net.act1(net.bn1(net.conv1(x))))

    def blocks(self) -> list[nn.Module]:
        net = self.net
        return [block for stage in (net.layer1, net.layer2, net.layer3, net.layer4) for block in stage]

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        return self.net.forward_head(features)
