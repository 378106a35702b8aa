"""BPDA: Backward Pass Differentiable Approximation (Athalye, Carlini & Wagner, ICML 2018)."""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class BPDA(nn.Module):
    """Runs ``module`` forward, but lets gradients flow as if it were ``approximation``.

    For a component whose gradient is zero or useless (quantisation, JPEG, a thresholding
    or sorting step), wrap it so that a gradient attack sees through it::

        forward:  y = module(x)
        backward: dy/dx = d approximation(x) / dx    (approximation defaults to the identity:
                                                      the straight-through estimator)

    Example: ``nn.Sequential(BPDA(quantise), classifier)`` is attacked with any attack of
    this package; the real defense ``nn.Sequential(quantise, classifier)`` is then evaluated.
    """

    def __init__(self, module: Callable[[torch.Tensor], torch.Tensor],
                 approximation: Callable[[torch.Tensor], torch.Tensor] | None = None):
        super().__init__()
        self.module, self.approximation = module, approximation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        approximate = x if self.approximation is None else self.approximation(x)
        with torch.no_grad():
            exact = self.module(x)
        return approximate + (exact - approximate).detach()
