"""DI: diverse inputs (Xie et al., "Improving Transferability of Adversarial Examples with Input
Diversity", CVPR 2019)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..checks import positive_number, probability
from .base import Transformation


class DI(Transformation):
    r"""With probability ``prob``, a random resize and a random zero-padding of the whole batch.

    One draw per surrogate pass, in the order of the paper's code (and ``torchattacks.DIFGSM``):
    a side r uniform in [low, high), offsets top and left uniform in [0, high - r), then the
    coin; the image is resized (bilinear) to r x r and padded with zeros to high x high::

        W = input side;  (low, high) = (int(W * resize_rate), W)  if resize_rate < 1   (shrink, pad back to W)
                                       (W, int(W * resize_rate))  if resize_rate > 1   (enlarge, pad to W * rate)

    Defaults for 32 x 32 CIFAR images: ``resize_rate`` 0.9 (sides 28..31, padded back to 32, as
    torchattacks' default): the models keep their input size, which CIFAR models with a flatten
    or a patch embedding need. The paper's ImageNet setting, 299 -> [299, 330) padded to 330
    (``resize_rate`` = 330/299 ≈ 1.104), enlarges the input: use it only with models that accept
    any input size. ``prob`` 0.5 is the paper's.
    """

    name = "di"

    def __init__(self, resize_rate: float = 0.9, prob: float = 0.5):
        self.resize_rate = positive_number(resize_rate, "resize_rate")
        if self.resize_rate == 1:
            raise ValueError("DI's resize_rate must differ from 1 (below 1: shrink and pad back; above 1: enlarge)")
        self.prob = probability(prob, "prob")

    def copies(self, x: torch.Tensor, generator: torch.Generator) -> list[torch.Tensor]:
        side = x.shape[-1]
        low, high = sorted((side, int(side * self.resize_rate)))
        if low >= high:
            raise ValueError(f"DI's resize_rate {self.resize_rate} leaves no size to draw for {side}-pixel images")
        resized = int(torch.randint(low, high, (1,), generator=generator, dtype=torch.int32).item())
        remainder = high - resized
        top = int(torch.randint(0, remainder, (1,), generator=generator, dtype=torch.int32).item())
        left = int(torch.randint(0, remainder, (1,), generator=generator, dtype=torch.int32).item())
        if torch.rand(1, generator=generator).item() >= self.prob:
            return [x]
        out = F.interpolate(x, size=(resized, resized), mode="bilinear", align_corners=False)
        return [F.pad(out, (left, remainder - left, top, remainder - top))]
