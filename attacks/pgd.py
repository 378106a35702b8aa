"""PGD with Expectation over Transformation: the white-box baseline (Madry et al., ICLR 2018;
Athalye et al., ICML 2018)."""
from __future__ import annotations

import torch

from .base import check_finite
from .checks import positive_int, positive_number
from .ens import Ens
from .losses import classification_loss
from .registry import register_attack


@register_attack
class PGD(Ens):
    r"""Projected gradient ascent on the models' loss, with the gradient averaged over EOT samples.

    Update (Linf; L2 steps along the normalised gradient instead of its sign)::

        g_t     = (1/S) sum_{s=1..S} grad_x CE(f(x_t), y)      # S = eot_samples fresh forward passes
        x_{t+1} = clip_{x, eps}(x_t + alpha sign(g_t)), then clipped to [0, 1]

    The projection is always around the clean image x. ``x_0`` is a uniform point in the
    eps-ball (``random_start``). With S > 1 and a randomised model (one that draws new
    noise, crops or input stacks at every call) each sample sees new randomness, which is
    what EOT needs; with a deterministic model it only costs time. With several models the
    loss is that of their fused output (as :class:`~attacks.Ens`): give the defense itself, or
    an adaptive view of it, as the one model for a white-box attack.

    ``early_stop=True`` (one deterministic model, no EOT, no transformation) stops spending on a
    point once the model misclassifies it: the step that finds f(x_t) wrong keeps x_t and drops
    the point from the batch. A later step could only have moved it back towards the boundary,
    so the points fooled are a superset of plain PGD's (up to float rounding in batches of
    another size), and the work left is that of the points still classified correctly.

    Args:
        models: the model(s) attacked (images in [0, 1] -> logits).
        eps: perturbation budget (default 8/255).
        alpha: step size (default 2.5 eps / steps, Madry et al.'s choice).
        steps: iterations (default 50).
        eot_samples: forward/backward passes averaged per step, S (default 1: plain PGD).
        random_start: start from a uniform point in the eps-ball (default True).
        early_stop: keep a point once the model misclassifies it (see above; default False).
        fusion, weights, norm, targeted, seed, transforms, loss: as for :class:`~attacks.Ens`.
    """

    def __init__(self, models, *, eps: float = 8 / 255, alpha: float | None = None, steps: int = 50,
                 eot_samples: int = 1, fusion: str = "logits", weights=None, norm: str = "Linf",
                 targeted: bool = False, random_start: bool = True, seed: int = 0, transforms=(),
                 loss: str = "ce", early_stop: bool = False):
        eot_samples = positive_int(eot_samples, "eot_samples")
        eps, steps = positive_number(eps, "eps"), positive_int(steps, "steps")
        if alpha is None:
            alpha = 2.5 * eps / steps
        super().__init__(models, eps=eps, alpha=alpha, steps=steps, decay=0.0, fusion=fusion, weights=weights,
                         norm=norm, targeted=targeted, random_start=random_start, seed=seed, transforms=transforms,
                         loss=loss)
        self.eot_samples = eot_samples
        self.early_stop = bool(early_stop)
        if self.early_stop and (len(self.models) != 1 or eot_samples != 1 or self.transforms):
            raise ValueError("early_stop judges each point on the attacked model's own prediction: it needs one "
                             "deterministic model, eot_samples=1 and no transformation")

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if not self.early_stop:
            return super().forward(images, labels)
        x_adv = self.init_adversarial(images)
        active = torch.arange(len(images), device=images.device)  # the points the model still gets right
        for _ in range(self.steps):
            x = x_adv[active].detach().requires_grad_(True)
            logits = self.models[0](x)
            grad = torch.autograd.grad(self.signed(classification_loss(logits, labels[active], self.loss)), x)[0]
            check_finite(grad, self)
            prediction = logits.detach().argmax(1)
            still = prediction == labels[active] if not self.targeted else prediction != labels[active]
            active, grad, x = active[still], grad[still], x.detach()[still]
            if not len(active):
                break
            x_adv[active] = self.project(images[active], x + self.step(grad)).detach()
        return x_adv

    def gradient(self, images: torch.Tensor, x_adv: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        total = torch.zeros_like(x_adv)
        for _ in range(self.eot_samples):
            total += super().gradient(images, x_adv, labels)
        return total / self.eot_samples
