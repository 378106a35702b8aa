"""What an adaptive attack differentiates in place of a defense's own output.

CrossMax (and any aggregation by sorting, voting or clipping) passes little useful gradient:
Zhang, Nikolić, Carlini, Tramèr et al. (arXiv 2411.14834) broke the CrossMax self-ensemble
by attacking the mean of its predictors' logits instead, with EOT over its random input
stack, and carrying the adversarial images to the real defense. :func:`adaptive_view`
gives that surrogate for any defense that exposes its predictors.
"""
from __future__ import annotations

import torch
from torch import nn


class MeanLogitsView(nn.Module):
    """The mean of a defense's predictors' logits (``defense.predictor_logits(x)``: [B, P, C]).

    The defense's randomness (e.g. a random input stack) stays in the view: attack it with EOT.
    """

    def __init__(self, defense: nn.Module):
        super().__init__()
        if not callable(getattr(defense, "predictor_logits", None)):
            raise TypeError(f"{type(defense).__name__} exposes no predictor_logits(x) to average")
        self.defense = defense

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.defense.predictor_logits(x).mean(dim=1)


def adaptive_view(defense: nn.Module) -> nn.Module:
    """The mean-of-logits view of an ensemble or self-ensemble; any other defense is its own view."""
    return MeanLogitsView(defense) if callable(getattr(defense, "predictor_logits", None)) else defense
