"""Input normalisation inside the model (RobustBench convention).

Every zoo model takes float images in [0, 1], NCHW, and subtracts/divides its own
per-channel mean/std, so attacks work in pixel space and an epsilon means the same thing
for every model. Checkpoints store the state dict of the bare network (``.net``); the
normalisation travels as checkpoint metadata, never as state-dict entries.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

# CIFAR-10 training-set channel statistics (the exact values).
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2471, 0.2435, 0.2616)
# The std that many CIFAR repositories (DVERGE among them) use: it is the mean of per-image stds.
CIFAR10_STD_PER_IMAGE = (0.2023, 0.1994, 0.2010)
# ImageNet statistics, which the pytorch_resnet_cifar10 project applies to CIFAR-10.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Networks that take raw 0-255 pixels (Keras and TFLite ports): no shift, a scale of 255.
RAW_PIXEL_MEAN = (0.0, 0.0, 0.0)
RAW_PIXEL_STD = (1 / 255, 1 / 255, 1 / 255)


def as_channel_stats(values: Sequence[float], what: str) -> tuple[float, ...]:
    """Three finite floats (one per RGB channel) as a tuple; ValueError otherwise."""
    try:
        stats = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be 3 numbers (one per RGB channel), got {values!r}") from None
    if len(stats) != 3 or not all(torch.isfinite(torch.tensor(stats))):
        raise ValueError(f"{what} must be 3 finite numbers (one per RGB channel), got {values!r}")
    return stats


class Normalized(nn.Module):
    """``net`` preceded by per-channel normalisation: ``forward(x) = net((x - mean) / std)``.

    ``mean``/``std`` are non-persistent buffers of shape [1, 3, 1, 1] (they move with
    ``.to(device)`` but stay out of ``state_dict()``); ``normalize_mean``/``normalize_std``
    keep the exact floats for checkpoint metadata. ``arch`` is the registered name of ``net``.
    """

    def __init__(self, net: nn.Module, mean: Sequence[float], std: Sequence[float], arch: str):
        super().__init__()
        self.net = net
        self.arch = arch
        self.normalize_mean = as_channel_stats(mean, "mean")
        self.normalize_std = as_channel_stats(std, "std")
        if min(self.normalize_std) <= 0:
            raise ValueError(f"std must be positive, got {self.normalize_std}")
        self.register_buffer("mean", torch.tensor(self.normalize_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(self.normalize_std).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(x))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Images [N, 3, H, W] in [0, 1] -> the network's input (other shapes are refused: a 1-channel batch would
        broadcast against the three channels' statistics and run as nonsense)."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"{self.arch} takes RGB images shaped [N, 3, H, W], got {tuple(x.shape)}")
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"arch={self.arch!r}, mean={self.normalize_mean}, std={self.normalize_std}"
