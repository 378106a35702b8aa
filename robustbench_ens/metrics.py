"""Per-cell metrics: predictions in batches, accuracies, success rate, perturbation norms.

Robust accuracy follows RobustBench: a point counts as robust when the defense classifies
both the clean image and its adversarial image correctly. Attack success rate is taken
over the points the defense classified correctly before the attack.
"""
from __future__ import annotations

import math

import torch
from torch import nn


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int, device: torch.device | str) -> torch.Tensor:
    """Predicted classes of ``model`` (in eval mode) on ``images``, computed in batches on ``device``."""
    was_training = model.training
    model.eval()
    try:
        preds = [model(images[i:i + batch_size].to(device)).argmax(dim=1).cpu()
                 for i in range(0, len(images), batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(preds)


def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int,
             device: torch.device | str) -> float:
    """Fraction of ``images`` that ``model`` classifies as ``labels``."""
    return int((predict(model, images, batch_size, device) == labels).sum()) / len(labels)


def accuracy_metrics(labels: torch.Tensor, clean_pred: torch.Tensor, adv_pred: torch.Tensor) -> dict:
    correct = clean_pred == labels
    robust = correct & (adv_pred == labels)
    n_correct = int(correct.sum())
    return {
        "clean_acc": correct.float().mean().item(),
        "robust_acc": robust.float().mean().item(),
        "success_rate": (n_correct - int(robust.sum())) / n_correct if n_correct else math.nan,
    }


def perturbation_norms(images: torch.Tensor, x_adv: torch.Tensor) -> dict:
    delta = (x_adv - images).flatten(1)
    linf, l2 = delta.abs().amax(dim=1), delta.norm(p=2, dim=1)
    return {"linf_mean": linf.mean().item(), "linf_max": linf.max().item(),
            "l2_mean": l2.mean().item(), "l2_max": l2.max().item()}
