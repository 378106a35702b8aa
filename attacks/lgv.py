"""LGV's attack: I-FGSM over a collection of surrogates, a few members per iteration (Gubri et al.,
"LGV: Boosting Adversarial Example Transferability from Large Geometric Vicinity", ECCV 2022)."""
from __future__ import annotations

import torch

from .base import MomentumIterativeAttack, positive_number
from .fusion import check_fusion
from .registry import register_attack


@register_attack
class LGV(MomentumIterativeAttack):
    r"""I-FGSM in which each iteration sees only the next ``models_per_step`` surrogates.

    The surrogates (typically the LGV collection of :func:`robustbench_ens.zoo.collect_lgv`:
    weights sampled along a constant-learning-rate SGD trajectory) are visited in a shuffled
    cycle: a random permutation, consumed ``models_per_step`` at a time, redrawn when used up
    (as torchattacks.LGV's ``order="shuffle"``).
    Iteration t, with S_t the members drawn for it::

        g_t     = grad_x CE(mean_{k in S_t} f_k(x_t), y)
        m_t     = decay * m_{t-1} + g_t / ||g_t||_1        (decay = 0: plain I-FGSM)
        x_{t+1} = clip_{x, eps}(x_t + alpha * sign(m_t))

    Defaults are the LGV paper's: 50 iterations, alpha = eps / 10, no momentum, one member per
    iteration (each of 40 members is thus used about once; the paper attacks at Linf 4/255 on
    ImageNet). With one surrogate and decay 0 this is ``torchattacks.BIM`` (equal up to float rounding).

    Args:
        models: the collection (``nn.Module``s, images in [0, 1] -> logits).
        eps: Linf budget (default 8/255).
        alpha: step size (default eps / 10).
        steps: iterations (default 50).
        decay: momentum decay (default 0.0: I-FGSM, as in the paper).
        models_per_step: members whose fused loss gives each iteration's gradient (default 1).
        fusion: how several members per step are fused (``"logits"``, ``"probs"`` or ``"loss"``).
        norm, targeted, random_start, seed, transforms, loss: as in :class:`~attacks.Ens`.
    """

    def __init__(self, models, *, eps: float = 8 / 255, alpha: float | None = None, steps: int = 50,
                 decay: float = 0.0, models_per_step: int = 1, fusion: str = "logits", norm: str = "Linf",
                 targeted: bool = False, random_start: bool = False, seed: int = 0, transforms=(),
                 loss: str = "ce"):
        eps = positive_number(eps, "eps")
        super().__init__(models, eps=eps, alpha=eps / 10 if alpha is None else alpha, steps=steps, decay=decay,
                         norm=norm, targeted=targeted, random_start=random_start, seed=seed, transforms=transforms,
                         loss=loss)
        if (not isinstance(models_per_step, int) or isinstance(models_per_step, bool)
                or not 1 <= models_per_step <= len(self.models)):
            raise ValueError(f"models_per_step must be an integer in [1, {len(self.models)}] (the number of "
                             f"surrogates), got {models_per_step!r}")
        self.models_per_step = models_per_step
        self.fusion = check_fusion(fusion)
        self._queue: list[int] = []

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        self._queue = []  # every call starts a fresh cycle from the freshly seeded generator
        return super().forward(images, labels)

    def next_members(self) -> list[int]:
        """Indices of the surrogates for this iteration, from the shuffled cycle.

        Where an iteration spans two cycles, a member already drawn for it is left in the queue
        for a later iteration, so no iteration uses a member twice and each cycle uses each once.
        """
        drawn: list[int] = []
        while len(drawn) < self.models_per_step:
            if not self._queue:
                self._queue = torch.randperm(len(self.models), generator=self.host_generator).tolist()
            # A fresh cycle holds all K >= models_per_step > len(drawn) members, so one is always free.
            pick = next(i for i in self._queue if i not in drawn)
            self._queue.remove(pick)
            drawn.append(pick)
        return drawn

    def gradient(self, images: torch.Tensor, x_adv: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        members = [self.models[k] for k in self.next_members()]
        return self.ensemble_gradient(members, x_adv, labels, self.fusion)
