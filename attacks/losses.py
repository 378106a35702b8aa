"""The per-example losses a gradient attack ascends: cross-entropy, or the Carlini-Wagner margin.

- ``"ce"``: CE(z, y) = -log softmax(z)_y.
- ``"cw"``: the margin of the best wrong class over the true one, capped at ``kappa``:
  min(max_{j != y} z_j - z_y, kappa) (Carlini & Wagner, S&P 2017, objective f_6; the
  untargeted form). ``kappa`` = 50 is the confidence of advertorch's ``CarliniWagnerLoss``,
  which DVERGE's evaluation uses for its "cw" transfer attacks; ascending it pushes a point
  past the decision boundary and on until its margin reaches ``kappa``. For a targeted attack
  (``labels`` are the targets and the attack minimises the loss) it pulls the target's logit
  above every other by up to ``kappa``.

Both are averaged over the batch, so each image's gradient is its own.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

LOSSES = ("ce", "cw")
CW_KAPPA = 50.0


def check_loss(loss: str) -> str:
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    return loss


def classification_loss(logits: torch.Tensor, labels: torch.Tensor, loss: str = "ce") -> torch.Tensor:
    """The batch mean of ``loss`` ("ce" or "cw") of ``logits`` [N, classes] against ``labels`` [N]."""
    if loss == "ce":
        return F.cross_entropy(logits, labels)
    return cw_margin(logits, labels).clamp_max(CW_KAPPA).mean()


def cw_margin(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per example: the largest logit of a class other than ``labels``, minus the logit of ``labels``."""
    true = logits.gather(1, labels.unsqueeze(1)).squeeze(1)
    others = logits.masked_fill(F.one_hot(labels, logits.shape[1]).bool(), float("-inf"))
    return others.amax(dim=1) - true


def log_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per example: log CE(z, y), finite and with a finite gradient also where CE underflows to 0 in float32 (a
    surrogate that is very sure of the label: CE = -log(1 - q) with q the probability off the label, and for
    q < 1e-4, log CE = log q + q / 2 to within q^2, with log q a difference of two logsumexps)."""
    others = logits.masked_fill(F.one_hot(labels, logits.shape[1]).bool(), float("-inf"))
    log_q = torch.logsumexp(others, dim=1) - torch.logsumexp(logits, dim=1)
    q = log_q.exp()
    small = q < 1e-4
    ce = F.cross_entropy(logits, labels, reduction="none")
    return torch.where(small, log_q + q / 2, torch.log(torch.where(small, torch.ones_like(ce), ce)))
