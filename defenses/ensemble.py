"""Plain ensembles of classifiers, and a single model as a defense."""
from __future__ import annotations

import torch
from torch import nn

from .registry import register_defense

AGGREGATIONS = ("mean_prob", "mean_logits")


class Ensemble(nn.Module):
    """An ensemble of classifiers as one classifier; members stay reachable as ``.members``.

    Aggregations (output: logits-like scores whose argmax is the prediction):
    - ``"mean_prob"`` (default; the DVERGE paper's output): log(1/K sum_k softmax(f_k(x)));
    - ``"mean_logits"``: 1/K sum_k f_k(x).
    """

    def __init__(self, members: list[nn.Module], aggregation: str = "mean_prob"):
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
        self.members = nn.ModuleList(members)
        self.aggregation = aggregation

    def member_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Every member's logits, stacked as [batch, members, classes]."""
        return torch.stack([member(x) for member in self.members], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.member_logits(x)
        if self.aggregation == "mean_logits":
            return logits.mean(dim=1)
        return torch.logsumexp(torch.log_softmax(logits, dim=2), dim=1) - torch.log(
            torch.tensor(float(len(self.members)), device=x.device, dtype=logits.dtype))


@register_defense("ensemble")
def build_ensemble(members: list[nn.Module], aggregation: str = "mean_prob") -> Ensemble:
    return Ensemble(members, aggregation=aggregation)


@register_defense("single")
def build_single(members: list[nn.Module]) -> nn.Module:
    if len(members) != 1:
        raise ValueError(f"a 'single' defense takes exactly one model, got {len(members)}")
    return members[0]
