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

    ``torch.median`` takes the lower of the two middle values when N is even. A single
    predictor gives all zeros (step 2 subtracts each value from itself), so its argmax is the
    first class: CrossMax needs several predictors.
    """
    if not isinstance(logits, torch.Tensor) or logits.dim() != 3:
        raise ValueError("crossmax takes logits shaped [batch, predictors, classes]")
    n_predictors = logits.shape[1]
    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n_predictors):
        raise ValueError(f"k must be None (median) or an integer in [1, {n_predictors}], got {k!r}")
    z = logits - logits.amax(dim=2, keepdim=True)
    z = z - z.amax(dim=1, keepdim=True)
    if k is None:
        return z.median(dim=1).values
    return z.topk(k, dim=1).values[:, k - 1, :]
