"""AdaEA: adaptive model-ensemble attack (Chen et al., "An Adaptive Model Ensemble Adversarial
Attack for Boosting Adversarial Transferability", ICCV 2023), on MI-FGSM / I-FGSM."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .acceleration import member_outputs
from .base import MomentumIterativeAttack, divided, positive_number
from .fusion import fused_loss, normalised_weights
from .losses import classification_loss
from .registry import register_attack

GRANULARITIES = ("sample", "batch")


@register_attack
class AdaEA(MomentumIterativeAttack):
    r"""MI-FGSM on adaptively weighted logits, with the disparity-reduced filter on the gradient.

    Each iteration, at x_t (K models, g_k = grad CE(f_k(x_t), y)):

    1. AGM (adaptive gradient modulation). Each model's one-step example
       x_k = clip(x_t + alpha * sign(g_k)) is scored by how well it fools the others,
       s_k = beta * sum_{i != k} CE(f_i(x_k), y) / CE(f_i(x_i), y), and the ensemble weights
       are w = softmax(s) over the models.
    2. Fused gradient g = grad CE(sum_k w_k f_k(x_t), y) (weighted logits).
    3. DRF (disparity-reduced filter). D(p) = mean over model pairs i < j of the cosine
       similarity of g_i and g_j across the channels at pixel p; g is zeroed where
       D(p) < ``threshold``.
    4. MI-FGSM step on g: m = decay * m + g / ||g||_1; x_{t+1} = clip(x_t + alpha * sign(m)).
       ``decay=0`` gives the I-FGSM variant.

    Defaults follow the official code's run script (CHENBIN99/AdaEA at commit 416b112, its
    latest): alpha 2/255 at eps 8/255, 10 steps, decay 0.9, beta 10, threshold -0.3, no input
    diversity. As there, the weights are recomputed at every iteration (the repository's first
    commit computed them once, at the first iteration). The official code starts from
    x + 0.001 * N(0, 1) noise; here the start is x itself (or, with ``random_start``, a uniform
    draw in the eps-ball). Decisions where the official code is not what the paper describes:

    - DRF averages the similarity over all model pairs. In the official ``drf`` an ``if``
      placed after the inner loop reads the loop's last index, so the last model's row is
      never filled while the mean still divides by K: pairs with the last model count half
      and D shrinks towards 0 (for K = 2, D is half the cosine), weakening the filter.
    - ``agm_granularity="sample"`` computes the weights per image. The official code
      averages the losses over the batch, so one image's weights (and adversarial example)
      depend on the other images in its batch; ``"batch"`` reproduces that.
    - As in the code, the "others" term is a sum over the K-1 other models (not a mean), so
      the effective softmax temperature grows with K.
    - Targeted attacks (absent from the official code) score s_k with the negated ratio:
      a one-step example is good when the other models' loss towards the target is low.

    With input transformations (``transforms``, e.g. the paper's optional DI), every model sees
    the same copies of x_t in a pass (one DI draw shared by the models, as ``Ens`` + DI); g_k and
    the fused gradient are means over the copies (the graphs of all copies are kept, so memory
    grows with their number), the AGM scores and the DRF mask are computed from those g_k, and the
    gradient smoothing (TI) is applied last, to the masked fused gradient. With ``loss="cw"`` the
    gradients ascend the CW margin while the AGM scores keep the paper's cross-entropy ratios (a
    ratio of margins, which change sign, is no score).

    With ``agm=False`` and ``drf=False`` this is exactly :class:`~attacks.Ens` with logit
    fusion and the same alpha, decay, transformations and loss. Linf only, as in the paper.

    Args:
        models: surrogate ``nn.Module``s (images in [0, 1] -> logits).
        eps: Linf budget (default 8/255).
        alpha: step size, also of the AGM one-step examples (default 2/255).
        steps: iterations (default 10).
        decay: momentum decay (default 0.9; 0 for AdaEA on I-FGSM).
        beta: AGM softmax scale (default 10).
        threshold: DRF threshold on the mean cosine similarity (default -0.3).
        agm, drf: switch each module on or off.
        agm_granularity: ``"sample"`` or ``"batch"`` weights.
        targeted, random_start, seed, transforms, loss: as in :class:`~attacks.Ens`.
    """

    norms = ("Linf",)

    def __init__(self, models, *, eps: float = 8 / 255, alpha: float = 2 / 255, steps: int = 10,
                 decay: float = 0.9, beta: float = 10.0, threshold: float = -0.3, agm: bool = True,
                 drf: bool = True, agm_granularity: str = "sample", norm: str = "Linf", targeted: bool = False,
                 random_start: bool = False, seed: int = 0, transforms=(), loss: str = "ce"):
        super().__init__(models, eps=eps, alpha=alpha, steps=steps, decay=decay, norm=norm, targeted=targeted,
                         random_start=random_start, seed=seed, transforms=transforms, loss=loss)
        if (agm or drf) and len(self.models) < 2:
            raise ValueError("AdaEA's AGM and DRF compare surrogates with each other: give it at least 2 models "
                             "(with one, use Ens, or agm=False and drf=False)")
        if agm_granularity not in GRANULARITIES:
            raise ValueError(f"agm_granularity must be one of {GRANULARITIES}, got {agm_granularity!r}")
        if not -1 <= threshold <= 1:
            raise ValueError(f"threshold is a cosine similarity and must lie in [-1, 1], got {threshold!r}")
        self.beta = positive_number(beta, "beta")
        self.threshold = float(threshold)
        self.agm, self.drf = bool(agm), bool(drf)
        self.agm_granularity = agm_granularity

    def gradient(self, images: torch.Tensor, x_adv: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if not (self.agm or self.drf):
            return self.ensemble_gradient(self.models, x_adv, labels, "logits")
        x = x_adv.detach().requires_grad_(True)
        # one forward per model and copy serves the per-model and the fused gradients
        logits = [member_outputs(self.models, copy) for copy in self.transformed(x)]
        model_grads = [self.mean_gradient([self.signed(classification_loss(z[k], labels, self.loss)) for z in logits],
                                          x, retain_graph=True) for k in range(len(self.models))]
        weights = self.agm_weights(images, x_adv, labels, model_grads) if self.agm else \
            normalised_weights(None, len(self.models))
        grad = self.mean_gradient([self.signed(fused_loss(z, labels, "logits", weights, self.loss)) for z in logits], x)
        return self.smoothed(grad * self.drf_mask(model_grads) if self.drf else grad)

    @staticmethod
    def mean_gradient(losses: list[torch.Tensor], x: torch.Tensor, retain_graph: bool = False) -> torch.Tensor:
        """The mean over the copies of the gradients of their ``losses`` at ``x``."""
        return torch.autograd.grad(sum(losses) / len(losses), x, retain_graph=retain_graph)[0]

    @torch.no_grad()
    def agm_weights(self, images, x_adv, labels, model_grads) -> list[torch.Tensor]:
        """Per-model weights, each of shape [batch, 1] (the same row for every image if "batch")."""
        one_step = [self.project(images, x_adv + self.alpha * g.sign()) for g in model_grads]
        # loss[i][k]: model i's per-image loss on model k's one-step example
        loss = [[F.cross_entropy(model(x_k), labels, reduction="none") for x_k in one_step] for model in self.models]
        if self.agm_granularity == "batch":
            loss = [[row.mean().expand_as(row) for row in per_model] for per_model in loss]
        n = len(self.models)
        scores = torch.stack([sum(loss[i][k] / loss[i][i].clamp_min(1e-12) for i in range(n) if i != k)
                              for k in range(n)])
        weights = torch.softmax(self.beta * (-scores if self.targeted else scores), dim=0)
        return [w.unsqueeze(1) for w in weights]

    def drf_mask(self, model_grads: list[torch.Tensor]) -> torch.Tensor:
        """1 where the models' gradients (at least 2) agree on average (mean pairwise channel cosine >= threshold)."""
        n = len(model_grads)
        # unit channel vectors (as the official code), whatever the gradients' magnitude (a zero gradient stays a zero
        # vector: no agreement with anything); the cosine of two of them is their dot product
        units = [divided(g, torch.linalg.vector_norm(g, dim=1, keepdim=True)) for g in model_grads]
        # sum over pairs i < j of u_i . u_j = (|sum_k u_k|^2 - sum_k |u_k|^2) / 2: K terms, not K(K-1)/2 cosines
        pair_sum = (sum(units).square().sum(1) - sum(u.square().sum(1) for u in units)) / 2
        similarity = pair_sum / (n * (n - 1) / 2)
        return (similarity >= self.threshold).to(model_grads[0].dtype).unsqueeze(1)
