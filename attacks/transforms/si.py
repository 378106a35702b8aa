"""SI: scale invariance (Lin et al., "Nesterov Accelerated Gradient and Scale Invariance for
Adversarial Attacks", ICLR 2020)."""
from __future__ import annotations

import torch

from ..checks import positive_int
from .base import Transformation


class SI(Transformation):
    r"""The gradient averaged over ``scales`` scaled copies of the input::

        grad = (1/m) sum_{i=0..m-1} grad_x L(f(x / 2^i), y)

    m = 5 as in the paper (and TransferAttack), on ImageNet and CIFAR alike: the copies are
    darker images of the same size. Costs m surrogate passes per gradient.
    """

    name = "si"

    def __init__(self, scales: int = 5):
        self.scales = positive_int(scales, "scales")

    def copies(self, x: torch.Tensor, generator: torch.Generator) -> list[torch.Tensor]:
        return [x / 2 ** i for i in range(self.scales)]
