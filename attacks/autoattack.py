"""AutoAttack (Croce & Hein, ICML 2020) through the ``pyautoattack`` package, as one attack of this package."""
from __future__ import annotations

import pyautoattack
import torch

from .base import Attack, own_global_rng
from .registry import register_attack

VERSIONS = ("standard", "rand", "plus", "custom")
RAND_EOT_SAMPLES = 20  # the EOT samples per step of the library's "rand" version (fixed there)


@register_attack
class AutoAttack(Attack):
    """AutoAttack on one model (the defense itself), run by the reference implementation.

    ``version="standard"``: APGD-CE, APGD-T (9 target classes), FAB-T and Square (5000
    queries), each on the points still robust, for deterministic defenses. ``"rand"``: APGD-CE
    and APGD-DLR with EOT over 20 samples per step, for randomised defenses (the library's
    recommendation). ``"custom"`` runs only ``attacks``. Each point keeps the first
    adversarial example found.

    Args:
        models: the one model attacked (images in [0, 1] -> logits).
        eps: perturbation budget (8/255 for Linf, 0.5 for L2 in RobustBench).
        norm: ``"Linf"`` or ``"L2"``.
        version: ``"standard"``, ``"rand"``, ``"plus"`` or ``"custom"``.
        attacks: with ``"custom"`` only: e.g. ``["apgd-ce", "apgd-t"]``.
        n_iter: APGD iterations; None keeps the library's 100. Fewer is cheaper and weaker:
            a result with it is not a standard AutoAttack number.
        seed: passed to the library (which otherwise seeds itself from the clock); the
            caller's global RNG state is restored afterwards.
    """

    def __init__(self, models, *, eps: float = 8 / 255, norm: str = "Linf", version: str = "standard",
                 attacks: list[str] | None = None, n_iter: int | None = None, seed: int = 0):
        super().__init__(models, eps=eps, norm=norm, seed=seed)
        if len(self.models) != 1:
            raise ValueError(f"AutoAttack attacks one model (the defense itself), got {len(self.models)}")
        if version not in VERSIONS:
            raise ValueError(f"version must be one of {', '.join(VERSIONS)}, got {version!r}")
        if (attacks is not None) != (version == "custom"):
            raise ValueError("attacks are chosen with version='custom', and only then")
        if n_iter is not None and (isinstance(n_iter, bool) or not isinstance(n_iter, int) or n_iter < 1):
            raise ValueError(f"n_iter must be None or an integer >= 1, got {n_iter!r}")
        self.version, self.attacks, self.n_iter = version, None if attacks is None else list(attacks), n_iter

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        adversary = pyautoattack.AutoAttack(self.models[0], eps=self.eps, norm=self.norm, version=self.version,
                                            attacks=self.attacks, device=images.device, seed=self.seed)
        adversary.verbose = False
        if self.n_iter is not None:
            adversary.apgd.n_iter = adversary.apgd_targeted.n_iter = self.n_iter
        with own_global_rng(images.device):  # the library seeds the global RNG
            return adversary.run_standard_evaluation(images, labels, batch_size=len(images))[0]
