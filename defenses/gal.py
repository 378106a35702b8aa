"""GAL: gradient alignment loss (Kariyappa & Qureshi, "Improving Adversarial Robustness of Ensembles with Diversity
Training", 2019)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .joint import JointRecipe, register_joint_method

LOG_OFFSET = 1e-20


def input_gradients(logits: list[torch.Tensor], images: torch.Tensor, labels: torch.Tensor) -> list[torch.Tensor]:
    """Each member's gradient of its batch-mean cross-entropy with respect to ``images`` (which must require grad),
    flattened per image and kept in the graph, so that a loss on them trains the members (double backpropagation)."""
    return [torch.autograd.grad(F.cross_entropy(z, labels), images, create_graph=True)[0].flatten(1) for z in logits]


def pairwise_cosines(grads: list[torch.Tensor]) -> torch.Tensor:
    """[N, K(K-1)/2]: the cosine similarity of every pair of members' gradients, per image."""
    return torch.stack([F.cosine_similarity(grads[i], grads[j], dim=1)
                        for i in range(len(grads)) for j in range(i + 1, len(grads))], dim=1)


def gal_loss(logits: list[torch.Tensor], images: torch.Tensor, labels: torch.Tensor,
             lam: float = 0.5) -> tuple[torch.Tensor, dict[str, float]]:
    r"""The GAL objective of K members' logits z_k = f_k(x) on a batch (``images`` requiring grad)::

        L = (1/K) sum_k CE(z_k, y) + lambda * mean_x log sum_{i<j} exp(cos(grad_x CE_i, grad_x CE_j))

    The log-sum-exp is a smooth maximum of the pairwise gradient alignments; lambda = 0.5 as in the DVERGE
    repository's GAL baseline (which trains leaky-ReLU members on Gaussian-noise-augmented data; the members here
    are whatever the caller gives, e.g. the ReLU baseline ResNet-20s).
    """
    grads = input_gradients(logits, images, labels)
    coherence = torch.log(pairwise_cosines(grads).exp().sum(dim=1) + LOG_OFFSET).mean()
    ce = sum(F.cross_entropy(z, labels) for z in logits) / len(logits)
    loss = ce + lam * coherence
    return loss, {"ce": ce.item(), "coherence": coherence.item()}


def gal_objective(lam: float = 0.5):
    """GAL's training objective for :func:`~defenses.joint.train_jointly`."""
    def objective(members, images, labels, progress):
        images = images.detach().requires_grad_(True)
        return gal_loss([member(images) for member in members], images, labels, lam)
    return objective


GAL_RECIPE = JointRecipe()  # the DVERGE repository's GAL baseline: as ADP's
register_joint_method("gal", gal_objective, {"lam": 0.5}, GAL_RECIPE, "GAL ensemble (Kariyappa & Qureshi, 2019)")
