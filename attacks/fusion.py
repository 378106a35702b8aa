"""How an ensemble attack fuses its surrogates' outputs into one loss (to be ascended).

With weights w_k (summing to 1), logits z_k = f_k(x) and L the attack's per-example loss
(cross-entropy, or the CW margin: :mod:`attacks.losses`):

- ``"logits"``: L(sum_k w_k z_k, y)                  (Dong et al. 2018, eq. 6)
- ``"probs"``:  L(log sum_k w_k softmax(z_k), y)     (for CE: NLL of the averaged probabilities)
- ``"loss"``:   sum_k w_k L(z_k, y)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .losses import classification_loss

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


def fused_loss(logits: list[torch.Tensor], labels: torch.Tensor, fusion: str, weights,
               loss: str = "ce") -> torch.Tensor:
    """The fused ensemble's ``loss`` ("ce" or "cw"; mean over the batch); ``weights`` sum to 1."""
    if fusion == "logits":
        return classification_loss(_weighted_sum(logits, weights), labels, loss)
    if fusion == "probs":
        log_probs = torch.log(_weighted_sum([z.softmax(dim=1) for z in logits], weights).clamp_min(1e-12))
        return F.nll_loss(log_probs, labels) if loss == "ce" else classification_loss(log_probs, labels, loss)
    return _weighted_sum([classification_loss(z, labels, loss) for z in logits], weights)


def _weighted_sum(tensors: list[torch.Tensor], weights) -> torch.Tensor:
    if len(tensors) == 1:  # keeps a single surrogate bit-identical to plain MI-FGSM
        return tensors[0]
    return sum(w * t for w, t in zip(weights, tensors))
