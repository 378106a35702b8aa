"""A model handed in by a user (``robustbench_ens.benchmark``) as a defense of a suite."""
from __future__ import annotations

import torch
from torch import nn

from .registry import register_defense


class SuppliedDefense(nn.Module):
    """The user's model, attacked and evaluated as it is."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class SuppliedEnsemble(SuppliedDefense):
    """The user's model with the members it aggregates: an adaptive attack differentiates their mean logits
    (:func:`~defenses.adaptive_view`) and the images are judged on the model itself."""

    def __init__(self, model: nn.Module, members: list[nn.Module]):
        super().__init__(model)
        self.members = nn.ModuleList(members)

    def predictor_logits(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([member(x) for member in self.members], dim=1)


@register_defense("supplied")
def build_supplied(members: list[nn.Module]) -> SuppliedDefense:
    """``members[0]`` is the user's model; any further members are the models it aggregates."""
    model, predictors = members[0], members[1:]
    return SuppliedEnsemble(model, predictors) if predictors else SuppliedDefense(model)
