"""Square Attack (Andriushchenko et al., ECCV 2020): the score-based black-box check, through torchattacks."""
from __future__ import annotations

import torch

from .base import Attack, LabelsChecked, positive_number
from .registry import register_attack


@register_attack
class Square(Attack):
    r"""Random search over square-shaped updates, using only the model's output scores.

    Update (Linf)::

        x_0     = x + eps * s,  s: vertical stripes of +-1 (one sign per column and channel)
        at query i: draw a window W of side round(sqrt(p_i * h * w)) at a random place, and
        x'      = clip_{x, eps}(x_i with W set to x + eps * (+-1 per channel))
        x_{i+1} = x' if margin(f(x'), y) < margin(f(x_i), y) else x_i
        margin(z, y) = z_y - max_{k != y} z_k;   p_i halves on a fixed schedule from p_init

    (L2 puts a pair of opposite-signed bumps inside the window and rescales.) It never reads a
    gradient, so a defense that masks gradients gains nothing against it: a black-box attack
    that beats every white-box attack is a sign of masking (Carlini et al., 2019). AutoAttack's
    ``standard`` version runs it last, only on the points its gradient attacks left robust.

    Args:
        models: the one model queried (images in [0, 1] -> logits).
        eps: perturbation budget (default 8/255).
        norm: ``"Linf"`` or ``"L2"``.
        n_queries: model queries per image (default 5000, the paper's and AutoAttack's).
        p_init: initial fraction of pixels in the window (default 0.8, AutoAttack's for Linf).
        n_restarts: independent restarts (default 1).
        seed: torchattacks seeds torch's global RNG with it; the caller's state is restored afterwards.
    """

    gradient_free = True

    def __init__(self, models, *, eps: float = 8 / 255, norm: str = "Linf", n_queries: int = 5000,
                 p_init: float = 0.8, n_restarts: int = 1, seed: int = 0):
        super().__init__(models, eps=eps, norm=norm, seed=seed)
        if len(self.models) != 1:
            raise ValueError(f"Square queries one model (the defense itself), got {len(self.models)}")
        for value, name in ((n_queries, "n_queries"), (n_restarts, "n_restarts")):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if not 0 < positive_number(p_init, "p_init") <= 1:
            raise ValueError(f"p_init must be in (0, 1], got {p_init!r}")
        self.n_queries, self.p_init, self.n_restarts = n_queries, float(p_init), n_restarts

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        import torchattacks  # here, not at the top: it pulls in scipy, 2 s of `import attacks` for every user

        model = LabelsChecked(self.models[0], labels)
        attack = torchattacks.Square(model, norm=self.norm, eps=self.eps, n_queries=self.n_queries,
                                     n_restarts=self.n_restarts, p_init=self.p_init, loss="margin",
                                     resc_schedule=True, seed=self.seed)
        with torch.no_grad():  # torchattacks seeds the global RNG: Attack.__call__ restores the caller's afterwards
            return attack(images, labels)
