"""Ens: MI-FGSM on an ensemble of surrogates (Liu et al., ICLR 2017; Dong et al., CVPR 2018)."""
from __future__ import annotations

import torch

from .base import MomentumIterativeAttack
from .fusion import check_fusion, normalised_weights
from .registry import register_attack


@register_attack
class Ens(MomentumIterativeAttack):
    r"""MI-FGSM against the fused output of K surrogates.

    Fusion of the surrogates f_1..f_K with weights w_k (uniform by default, summing to 1):

    - ``"logits"`` (default; Dong et al. 2018, eq. 6): loss = CE(sum_k w_k f_k(x), y)
    - ``"probs"``: loss = NLL(log sum_k w_k softmax(f_k(x)), y)
    - ``"loss"``: loss = sum_k w_k CE(f_k(x), y)

    Update (per sample, Linf): g_{t+1} = mu g_t + grad / ||grad||_1;
    x_{t+1} = clip_{x, eps}(x_t + alpha sign(g_{t+1})), then clipped to [0, 1].
    With one surrogate this is exactly ``torchattacks.MIFGSM``.

    Args:
        models: surrogate ``nn.Module``s (images in [0, 1] -> logits).
        eps: perturbation budget (default 8/255).
        alpha: step size (default eps / steps, as in MI-FGSM).
        steps: iterations T (default 10).
        decay: momentum decay mu (default 1.0).
        fusion: ``"logits"``, ``"probs"`` or ``"loss"``.
        weights: per-model weights (default uniform); normalised to sum to 1.
        norm: ``"Linf"`` or ``"L2"``.
        targeted: ``labels`` are target classes and the loss is minimised.
        random_start: start from a uniform point in the eps-ball.
        seed: seed of the attack's own generator.
        transforms: input transformations applied to every surrogate pass, in order (DI, TI, SI,
            Admix: :mod:`attacks.transforms`; instances or registry names). With one surrogate,
            ``transforms=[DI()]`` is ``torchattacks.DIFGSM`` and ``[TI()]`` (or ``[DI(), TI()]``)
            is ``torchattacks.TIFGSM``, given the same settings and the same seed.
        loss: ``"ce"`` (cross-entropy) or ``"cw"`` (the CW margin, :mod:`attacks.losses`).
    """

    def __init__(self, models, *, eps: float = 8 / 255, alpha: float | None = None, steps: int = 10,
                 decay: float = 1.0, fusion: str = "logits", weights=None, norm: str = "Linf",
                 targeted: bool = False, random_start: bool = False, seed: int = 0, transforms=(),
                 loss: str = "ce"):
        super().__init__(models, eps=eps, alpha=alpha, steps=steps, decay=decay, norm=norm,
                         targeted=targeted, random_start=random_start, seed=seed, transforms=transforms, loss=loss)
        self.fusion = check_fusion(fusion)
        self.weights = normalised_weights(weights, len(self.models))

    def gradient(self, images: torch.Tensor, x_adv: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.ensemble_gradient(self.models, x_adv, labels, self.fusion, self.weights)

