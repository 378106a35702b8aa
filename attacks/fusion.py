"""How an ensemble attack fuses its surrogates' outputs into one loss (to be ascended).

With weights w_k (summing to 1) and logits z_k = f_k(x):

- ``"logits"``: CE(sum_k w_k z_k, y)                 (Dong et al. 2018, eq. 6)
- ``"probs"``:  NLL(log sum_k w_k softmax(z_k), y)
- ``"loss"``:   sum_k w_k CE(z_k, y)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

FUSIONS = ("logits", "probs", "loss")


def check_fusion(fusion: str) -> str:
    if fusion not in FUSIONS:
        raise ValueError(f"fusion must be one of {FUSIONS}, got {fusion!r}")
    return fusion


def normalised_weights(weights, n_models: int) -> list[float]:
    """Uniform weights by default; given weights must be >= 0 and are rescaled to sum to 1."""
    if weights is None:
        return [1.0 / n_models] * n_models
    weights = [float(w) for w in weights]
    if len(weights) != n_models:
        raise ValueError(f"weights has {len(weights)} entries for {n_models} models")
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError("weights must be >= 0 with a positive sum")
    total = sum(weights)
    return [w / total for w in weights]


def fused_loss(logits: list[torch.Tensor], labels: torch.Tensor, fusion: str, weights) -> torch.Tensor:
    """The cross-entropy-type loss of the fused ensemble (mean over the batch); ``weights`` sum to 1."""
    if fusion == "logits":
        return F.cross_entropy(_weighted_sum(logits, weights), labels)
    if fusion == "probs":
        probs = _weighted_sum([z.softmax(dim=1) for z in logits], weights)
        return F.nll_loss(torch.log(probs.clamp_min(1e-12)), labels)
    return _weighted_sum([F.cross_entropy(z, labels) for z in logits], weights)


def _weighted_sum(tensors: list[torch.Tensor], weights) -> torch.Tensor:
    if len(tensors) == 1:  # keeps a single surrogate bit-identical to plain MI-FGSM
        return tensors[0]
    return sum(w * t for w, t in zip(weights, tensors))
