"""CrossMax: the robust aggregation of "Ensemble everything everywhere" (Fort & Lakshminarayanan,
2024, Algorithm 1), for any stack of logits shaped [batch, predictors, classes].

Beware: CrossMax alone was later shown to mask gradients rather than add robustness (Zhang,
Nikolić, Carlini, Tramèr et al., arXiv 2411.14834); evaluate it with adaptive attacks.
"""
from __future__ import annotations

import torch


def crossmax(logits: torch.Tensor, k: int | None = None) -> torch.Tensor:
    r"""Aggregate ``logits`` [B, N, C] of N predictors into scores [B, C] (argmax = prediction).

    1. Z <- Z - max_c Z        (each predictor's max over classes: no predictor dominates by scale)
    2. Z <- Z - max_n Z        (each class's max over predictors: no class wins on one predictor alone)
    3. Y  = k-th highest of Z over predictors (``k`` given: the paper's self-ensemble, k = 3),
            or the median over predictors (``k=None``: an ensemble of equals).

    ``torch.median`` takes the lower of the two middle values when N is even. After step 2
    every class's highest value over predictors is 0, so a single predictor, or k = 1, would
    give all zeros and a constant prediction (the first class): both are refused
    (:func:`check_crossmax`).
    """
    if not isinstance(logits, torch.Tensor) or logits.dim() != 3:
        raise ValueError("crossmax takes logits shaped [batch, predictors, classes]")
    check_crossmax(logits.shape[1], k)
    z = logits - logits.amax(dim=2, keepdim=True)
    z = z - z.amax(dim=1, keepdim=True)
    if k is None:
        return z.median(dim=1).values
    return z.topk(k, dim=1).values[:, k - 1, :]


def check_crossmax(n_predictors: int, k: int | None) -> None:
    """Refuse a CrossMax whose output would be constant: it needs at least two predictors and, where ``k`` is
    given, an integer k in [2, n_predictors] (the highest value over predictors, k = 1, is 0 for every class)."""
    if n_predictors < 2:
        raise ValueError(f"CrossMax needs at least two predictors, got {n_predictors}: with one, its second step "
                         "leaves every class at 0 and the prediction is constant")
    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or not 2 <= k <= n_predictors):
        raise ValueError(f"k must be None (the median) or an integer in [2, {n_predictors}] (the predictors), got "
                         f"{k!r}: k = 1 takes the highest value over predictors, 0 for every class after step 2")
