"""TensorFlow's ``padding='same'`` for PyTorch convolutions (the padding of Keras and TFLite ports).

TensorFlow pads so that the output has ``ceil(size / stride)`` positions and, where the total padding of an axis is
odd, puts the extra row/column after the input (bottom/right); PyTorch's symmetric ``padding`` differs exactly
there, e.g. for a 3x3 convolution with stride 2 on an even-sized input (0 rows on top, 1 at the bottom).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def same_padding(size: int, kernel: int, stride: int = 1, dilation: int = 1) -> tuple[int, int]:
    """(before, after) padding of one spatial axis of length ``size`` under TensorFlow's ``padding='same'``."""
    outputs = -(-size // stride)
    total = max((outputs - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


class SameConv2d(nn.Conv2d):
    """``nn.Conv2d`` (same parameters and state dict) padded as TensorFlow's ``padding='same'`` for each input size."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, bias: bool = True):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top, bottom = same_padding(x.shape[-2], self.kernel_size[0], self.stride[0], self.dilation[0])
        left, right = same_padding(x.shape[-1], self.kernel_size[1], self.stride[1], self.dilation[1])
        if bottom > top or right > left:  # the odd row/column goes after; the symmetric part is the conv's own
            x = F.pad(x, (0, right - left, 0, bottom - top))
        return F.conv2d(x, self.weight, self.bias, self.stride, (top, left), self.dilation, self.groups)
