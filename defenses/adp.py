"""ADP: adaptive diversity promoting regularisation (Pang, Xu, Du, Chen & Zhu, "Improving Adversarial Robustness via
Promoting Ensemble Diversity", ICML 2019)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .joint import JointRecipe, register_joint_method

LOG_OFFSET = 1e-20  # inside the entropy's log
DET_OFFSET = 1e-6  # added to the Gram matrix's diagonal before its log-determinant


def adp_loss(logits: list[torch.Tensor], labels: torch.Tensor, alpha: float = 2.0,
             beta: float = 0.5) -> tuple[torch.Tensor, dict[str, float]]:
    r"""The ADP objective of K members' logits z_k on a batch (to be minimised)::

        L = sum_k CE(z_k, y) - alpha * H(mean_k softmax(z_k)) - beta * log det(M M^T + 1e-6 I)

    H: the entropy of the ensemble's mean prediction (batch mean). M [K, C-1]: each member's predicted
    probabilities of the C-1 classes other than y (its "non-maximal" predictions), scaled to unit L2 norm; the
    log-determinant of their Gram matrix (batch mean) is the volume they span, large when the members disagree on
    the wrong classes. alpha = 2 and beta = 0.5 are the paper's (and DVERGE's baseline code's).
    """
    ce = sum(F.cross_entropy(z, labels) for z in logits)
    probs = [z.softmax(dim=1) for z in logits]
    mean = sum(probs) / len(probs)
    entropy = -(mean * torch.log(mean + LOG_OFFSET)).sum(dim=1).mean()
    keep = ~F.one_hot(labels, logits[0].shape[1]).bool()
    others = torch.stack([p[keep].view(len(labels), -1) for p in probs], dim=1)  # [N, K, C-1]
    others = others / others.norm(dim=2, keepdim=True)
    gram = others @ others.transpose(1, 2) + DET_OFFSET * torch.eye(len(logits), device=others.device)
    log_det = torch.logdet(gram).mean()
    loss = ce - alpha * entropy - beta * log_det
    return loss, {"ce": ce.item(), "entropy": entropy.item(), "log_det": log_det.item()}


def adp_objective(alpha: float = 2.0, beta: float = 0.5):
    """ADP's training objective for :func:`~defenses.joint.train_jointly`."""
    def objective(members, images, labels, progress):
        return adp_loss([member(images) for member in members], labels, alpha, beta)
    return objective


# the DVERGE repository's ADP baseline: 200 epochs, Adam lr 0.001 (x0.1 at 100 and 150), weight decay 1e-4
ADP_RECIPE = JointRecipe()
register_joint_method("adp", adp_objective, {"alpha": 2.0, "beta": 0.5}, ADP_RECIPE,
                      "ADP ensemble (Pang et al., ICML 2019)")
