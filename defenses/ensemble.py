"""Plain ensembles of classifiers, and a single model as a defense."""
from __future__ import annotations

import torch
from torch import nn

from attacks.acceleration import member_outputs

from .crossmax import check_crossmax, crossmax
from .registry import register_defense

AGGREGATIONS = ("mean_prob", "mean_logits", "crossmax")


class Ensemble(nn.Module):
    """An ensemble of classifiers as one classifier; members stay reachable as ``.members``.

    Aggregations (output: logits-like scores whose argmax is the prediction):
    - ``"mean_prob"`` (default; the DVERGE paper's output): log(1/K sum_k softmax(f_k(x)));
    - ``"mean_logits"``: 1/K sum_k f_k(x);
    - ``"crossmax"``: :func:`defenses.crossmax.crossmax` of the members' logits, with
      ``crossmax_k`` (None: the median over members; an integer: the k-th highest).
    """

    def __init__(self, members: list[nn.Module], aggregation: str = "mean_prob", crossmax_k: int | None = None):
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
        if crossmax_k is not None and aggregation != "crossmax":
            raise ValueError("crossmax_k applies only to aggregation='crossmax'")
        if aggregation == "crossmax":
            check_crossmax(len(members), crossmax_k)
        self.members = nn.ModuleList(members)
        self.aggregation = aggregation
        self.crossmax_k = crossmax_k

    def predictor_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Every member's logits, stacked as [batch, members, classes] (the predictors, as in SelfEnsemble)."""
        return torch.stack(member_outputs(self.members, x), dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.predictor_logits(x)
        if self.aggregation == "mean_logits":
            return logits.mean(dim=1)
        if self.aggregation == "crossmax":
            return crossmax(logits, self.crossmax_k)
        return torch.logsumexp(torch.log_softmax(logits, dim=2), dim=1) - torch.log(
            torch.tensor(float(len(self.members)), device=x.device, dtype=logits.dtype))


@register_defense("ensemble")
def build_ensemble(members: list[nn.Module], aggregation: str = "mean_prob", crossmax_k: int | None = None) -> Ensemble:
    return Ensemble(members, aggregation=aggregation, crossmax_k=crossmax_k)


@register_defense("single")
def build_single(members: list[nn.Module]) -> nn.Module:
    if len(members) != 1:
        raise ValueError(f"a 'single' defense takes exactly one model, got {len(members)}")
    return members[0]
