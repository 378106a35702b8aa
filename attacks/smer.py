"""SMER: stochastic mini-batch black-box attack with ensemble reweighing (Tang et al., "Ensemble
Diversity Facilitates Adversarial Transferability", CVPR 2024), on MI-FGSM."""
from __future__ import annotations

import math

import torch

from .base import MomentumIterativeAttack, l1_normalised, positive_number
from .checks import positive_int
from .losses import log_cross_entropy
from .registry import register_attack

GRANULARITIES = ("sample", "batch")


@register_attack
class SMER(MomentumIterativeAttack):
    r"""An inner I-FGSM over the surrogates one at a time, in shuffled order, with learned model weights.

    Weights w (one per model, starting at 1) are learned by SGD over the whole attack. Outer
    iteration t, from x_t (K models, M = ``inner_passes`` x K inner steps)::

        x~ = x_t;  G~ = 0
        order = ``inner_passes`` random permutations of the K models, concatenated
        for j = 1..M, k = order[j]:
            g   = grad_x L(w_k f_k(x~), y)                           # one model, its logits scaled by w_k
            w  <- SGD step on -log CE((1/K) sum_m w_m f_m(x~), y)    # reweighing: raise the ensemble's loss
            G~  = G~ + g / ||g||_1                                     # inner momentum, no decay
            x~  = clip(x~ + beta * sign(G~))
        G       = decay * G + G~ / ||G~||_1
        x_{t+1} = clip(x_t + alpha * sign(G))                          # from x_t: the inner path is discarded

    Defaults are those of the official code (tangbwb/SMER, ``MI_FGSM_SMER``): 4 passes over the
    models per outer step, beta = alpha = eps / steps, SGD with learning rate 0.02 and weight decay
    0.002, momentum decay 1.0, 10 steps. The weights' gradient is taken at x~ before the step, as
    there; the reweighing loss is the cross-entropy whatever ``loss`` is (its logarithm needs a
    positive loss), and its logarithm is computed stably (:func:`~attacks.losses.log_cross_entropy`):
    CIFAR surrogates are often so sure of a clean label that CE is 0 in float32, where ``-CE.log()``
    (as in the official code) has a NaN gradient; for a targeted attack (absent from the official
    code) the weights descend log CE towards the target instead. Decisions where the official code
    is not what a benchmark can use:

    - ``weight_granularity="sample"`` learns one set of weights per image (its own SGD run on its
      own loss, as if it were attacked alone). The official code learns one set for the batch from
      the batch's mean loss, so one image's result depends on the others in its batch;
      ``"batch"`` reproduces that.
    - The reweighing needs every model's logits at x~: those of model k come from its gradient
      pass, the other K - 1 from forward passes without autograd (the official code recomputes all
      K with autograd).

    Linf only, as in the paper.

    Args:
        models: surrogate ``nn.Module``s (images in [0, 1] -> logits).
        eps: Linf budget (default 8/255; the paper uses 16/255 on ImageNet).
        alpha: outer step (default eps / steps); also the inner step beta unless ``inner_alpha`` is given.
        steps: outer iterations (default 10).
        decay: outer momentum decay (default 1.0).
        inner_passes: shuffled passes over the models per outer step (default 4: M = 4K).
        inner_alpha: inner step beta (default alpha).
        weight_lr, weight_decay: the weights' SGD learning rate and weight decay (0.02, 0.002).
        weight_granularity: ``"sample"`` or ``"batch"`` weights.
        targeted, random_start, seed, transforms, loss: as in :class:`~attacks.Ens`.
    """

    norms = ("Linf",)

    def __init__(self, models, *, eps: float = 8 / 255, alpha: float | None = None, steps: int = 10,
                 decay: float = 1.0, inner_passes: int = 4, inner_alpha: float | None = None,
                 weight_lr: float = 0.02, weight_decay: float = 0.002, weight_granularity: str = "sample",
                 norm: str = "Linf", targeted: bool = False, random_start: bool = False, seed: int = 0,
                 transforms=(), loss: str = "ce"):
        super().__init__(models, eps=eps, alpha=alpha, steps=steps, decay=decay, norm=norm, targeted=targeted,
                         random_start=random_start, seed=seed, transforms=transforms, loss=loss)
        self.inner_passes = positive_int(inner_passes, "inner_passes")
        self.inner_alpha = positive_number(self.alpha if inner_alpha is None else inner_alpha, "inner_alpha")
        self.weight_lr = positive_number(weight_lr, "weight_lr")
        self.weight_decay = positive_number(weight_decay, "weight_decay")
        if weight_granularity not in GRANULARITIES:
            raise ValueError(f"weight_granularity must be one of {GRANULARITIES}, got {weight_granularity!r}")
        self.weight_granularity = weight_granularity
        self._weights: torch.Tensor | None = None

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        rows = images.shape[0] if self.weight_granularity == "sample" else 1
        self._weights = torch.ones(rows, len(self.models), device=images.device, dtype=images.dtype)
        try:
            return super().forward(images, labels)
        finally:
            self._weights = None

    def gradient(self, images: torch.Tensor, x_adv: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The final inner momentum G~ of one pass of the reweighed inner loop."""
        x_inner, inner_momentum = x_adv, torch.zeros_like(x_adv)
        for k in self.inner_order():
            logits_k: list[torch.Tensor] = []
            grad = self.model_gradient(_Scaled(self.models[k], self._weights[:, k:k + 1], logits_k), x_inner, labels)
            # model k's logits at x~ come from its gradient pass unless the transformations changed its input
            self.reweigh(k, x_inner, None if self.transforms else logits_k[0], labels)
            inner_momentum = inner_momentum + l1_normalised(grad)
            x_inner = self.project(images, x_inner + self.step(inner_momentum, self.inner_alpha))
        return inner_momentum

    def inner_order(self) -> list[int]:
        """``inner_passes`` random permutations of the models, one after the other."""
        n = len(self.models)
        return [k for _ in range(self.inner_passes) for k in torch.randperm(n, generator=self.host_generator).tolist()]

    @torch.no_grad()
    def reweigh(self, k: int, x: torch.Tensor, logits_k: torch.Tensor | None, labels: torch.Tensor) -> None:
        """One SGD step of the weights on -log CE of the weighted ensemble at ``x`` (model k's logits if given)."""
        logits = [logits_k if m == k and logits_k is not None else model(x) for m, model in enumerate(self.models)]
        weights = self._weights.clone().requires_grad_(True)
        with torch.enable_grad():
            fused = sum(weights[:, m:m + 1] * z for m, z in enumerate(logits)) / len(logits)
            log_ce = log_cross_entropy(fused, labels)  # finite where a confident ensemble's CE underflows to 0
            if self.weight_granularity == "batch":  # log of the batch's mean CE
                log_ce = (torch.logsumexp(log_ce, dim=0) - math.log(len(log_ce))).unsqueeze(0)
            objective = (log_ce if self.targeted else -log_ce).sum()
            grad = torch.autograd.grad(objective, weights)[0]
        self._weights -= self.weight_lr * (grad + self.weight_decay * self._weights)


class _Scaled(torch.nn.Module):
    """``weight * model(x)``, keeping the unscaled output (detached) in ``record``."""

    def __init__(self, model, weight: torch.Tensor, record: list):
        super().__init__()
        self.model, self.weight, self.record = model, weight, record

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        self.record.append(out.detach())
        return self.weight * out
