"""SVRE: stochastic variance-reduced ensemble attack (Xiong et al., "Stochastic Variance Reduced
Ensemble Adversarial Attack for Boosting the Adversarial Transferability", CVPR 2022)."""
from __future__ import annotations

import torch

from .base import MomentumIterativeAttack, l1_normalised, positive_number
from .checks import positive_int
from .fusion import check_fusion
from .registry import register_attack


@register_attack
class SVRE(MomentumIterativeAttack):
    r"""SVRE-MI-FGSM: an inner loop of variance-reduced single-model steps inside MI-FGSM.

    Outer iteration t, from x_t (K models)::

        g_ens = grad L_ens(x_t)                                   # fused ensemble loss
        x~ = x_t;  G~ = 0
        for m = 1..M:                                             # inner loop
            k    = a model drawn uniformly (one for the whole batch)
            g    = grad L_k(x~) - grad L_k(x_t) + g_ens            # variance-reduced gradient
            G~   = inner_decay * G~ + g / ||g||_1
            x~   = clip(x~ + inner_alpha * sign(G~))
        G       = decay * G + G~ / ||G~||_1                         # outer momentum on the final G~
        x_{t+1} = clip(x_t + alpha * sign(G))                       # from x_t: the inner path is discarded

    Defaults follow the paper and its official code (JHL-HUST/SVRE): M = 4K inner steps,
    inner_alpha = alpha = eps / steps, decay = inner_decay = 1.0, logit fusion for L_ens. The
    official code recomputes grad L_k(x_t) at every inner step; it is the same tensor each
    time, so it is computed once per model and outer step here. Linf only, as in the paper.

    Args:
        models: surrogate ``nn.Module``s (images in [0, 1] -> logits).
        eps: Linf budget (default 8/255; the paper uses 16/255).
        alpha: outer step (default eps / steps).
        steps: outer iterations T (default 10).
        decay: outer momentum decay mu_1 (default 1.0).
        inner_steps: M (default 4 x the number of models).
        inner_alpha: inner step beta (default alpha).
        inner_decay: inner momentum decay mu_2 (default 1.0).
        fusion: how L_ens fuses the models (``"logits"``, ``"probs"`` or ``"loss"``).
        targeted, random_start, seed, transforms, loss: as in :class:`~attacks.Ens`.
    """

    norms = ("Linf",)

    def __init__(self, models, *, eps: float = 8 / 255, alpha: float | None = None, steps: int = 10,
                 decay: float = 1.0, inner_steps: int | None = None, inner_alpha: float | None = None,
                 inner_decay: float = 1.0, fusion: str = "logits", norm: str = "Linf", targeted: bool = False,
                 random_start: bool = False, seed: int = 0, transforms=(),
                 loss: str = "ce"):
        super().__init__(models, eps=eps, alpha=alpha, steps=steps, decay=decay, norm=norm, targeted=targeted,
                         random_start=random_start, seed=seed, transforms=transforms, loss=loss)
        inner_steps = 4 * len(self.models) if inner_steps is None else inner_steps
        self.inner_steps = positive_int(inner_steps, "inner_steps")
        self.inner_alpha = positive_number(self.alpha if inner_alpha is None else inner_alpha, "inner_alpha")
        self.inner_decay = positive_number(inner_decay, "inner_decay")
        self.fusion = check_fusion(fusion)

    def gradient(self, images: torch.Tensor, x_adv: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The final inner momentum G~ of one variance-reduced inner loop."""
        ensemble_grad = self.ensemble_gradient(self.models, x_adv, labels, self.fusion)
        anchor_grads: dict[int, torch.Tensor] = {}  # grad L_k(x_t), computed once per drawn model
        x_inner, inner_momentum = x_adv, torch.zeros_like(x_adv)
        for _ in range(self.inner_steps):
            k = int(torch.randint(len(self.models), (), generator=self.host_generator))
            if k not in anchor_grads:
                anchor_grads[k] = self.model_gradient(self.models[k], x_adv, labels)
            grad = self.model_gradient(self.models[k], x_inner, labels) - anchor_grads[k] + ensemble_grad
            inner_momentum = self.inner_decay * inner_momentum + l1_normalised(grad)
            x_inner = self.project(images, x_inner + self.step(inner_momentum, self.inner_alpha))
        return inner_momentum

