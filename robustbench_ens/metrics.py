"""Per-cell metrics: predictions in batches, accuracies, success rate, perturbation norms.

Robust accuracy follows RobustBench: a point counts as robust when the defense classifies
both the clean image and its adversarial image correctly. Attack success rate is taken
over the points the defense classified correctly before the attack.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .data import NUM_CLASSES


class ModelOutputError(ValueError):
    """A model's output is not a batch of finite scores over the data's classes."""


def checked_logits(logits: torch.Tensor, n_images: int, num_classes: int, what: str) -> torch.Tensor:
    """``logits`` if they are finite and of shape (n_images, num_classes); else a ModelOutputError naming ``what``."""
    if logits.shape != (n_images, num_classes):
        raise ModelOutputError(f"{what} outputs shape {tuple(logits.shape)} on {n_images} images; expected "
                               f"({n_images}, {num_classes}): one score per class of the data")
    if not torch.isfinite(logits).all():
        raise ModelOutputError(f"{what} outputs NaN or infinite scores")
    return logits


def refuse_probabilities(scores: torch.Tensor, what: str) -> None:
    """A ModelOutputError naming ``what`` when its ``scores`` are probabilities (every row in [0, 1], summing to 1):
    the attacks differentiate logits (cross-entropy, the CW margin and Ens's logit fusion take scores before the
    softmax), and on probabilities they are weaker, so robust accuracy would come out too high."""
    if len(scores) and (scores >= 0).all() and (scores <= 1).all() and \
            torch.allclose(scores.sum(dim=1), torch.ones(len(scores), dtype=scores.dtype, device=scores.device),
                           atol=1e-4):
        raise ModelOutputError(f"{what} outputs probabilities (every row sums to 1); it must output logits (or "
                               "log-probabilities): the attacks' losses take scores before the softmax")


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int, device: torch.device | str,
            num_classes: int = NUM_CLASSES) -> torch.Tensor:
    """Predicted classes of ``model`` (in eval mode) on ``images``, computed in batches on ``device``.

    Raises ModelOutputError where the model's output is not finite scores over ``num_classes``.
    """
    was_training = model.training
    model.eval()
    try:
        preds = [checked_logits(model(batch.to(device)), len(batch), num_classes, type(model).__name__)
                 .argmax(dim=1).cpu() for batch in images.split(batch_size)]
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


def per_example(labels: torch.Tensor, clean_pred: torch.Tensor, adv_pred: torch.Tensor) -> dict:
    """Which points the defense classified correctly clean and under the attack (bool numpy arrays, test order)."""
    return {"clean_correct": (clean_pred == labels).numpy(), "adv_correct": (adv_pred == labels).numpy()}


def perturbation_norms(images: torch.Tensor, x_adv: torch.Tensor) -> dict:
    delta = (x_adv - images).flatten(1)
    linf, l2 = delta.abs().amax(dim=1), delta.norm(p=2, dim=1)
    return {"linf_mean": linf.mean().item(), "linf_max": linf.max().item(),
            "l2_mean": l2.mean().item(), "l2_max": l2.max().item()}
