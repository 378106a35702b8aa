"""AutoAttack (Croce & Hein, ICML 2020) through the ``pyautoattack`` package, as one attack of this package."""
from __future__ import annotations

import torch

from .base import Attack, LabelsChecked
from .registry import register_attack

VERSIONS = ("standard", "rand", "plus", "custom")
LIBRARY_ATTACKS = ("apgd-ce", "apgd-dlr", "apgd-t", "fab", "fab-t", "square")  # the names version="custom" takes
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
        unknown = [name for name in attacks or () if name not in LIBRARY_ATTACKS]
        if unknown or attacks == []:
            raise ValueError(f"attacks must be a non-empty list of {', '.join(LIBRARY_ATTACKS)}; got {attacks!r}")
        if n_iter is not None and (isinstance(n_iter, bool) or not isinstance(n_iter, int) or n_iter < 1):
            raise ValueError(f"n_iter must be None or an integer >= 1, got {n_iter!r}")
        self.version, self.attacks, self.n_iter = version, None if attacks is None else list(attacks), n_iter

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if len(images) == 0:  # nothing to attack (the library cannot split an empty batch)
            return images.clone()
        import pyautoattack  # here, not at the top, as torchattacks in square.py: `import attacks` stays light

        model = LabelsChecked(self.models[0], labels)
        adversary = pyautoattack.AutoAttack(model, eps=self.eps, norm=self.norm, version=self.version,
                                            attacks=self.attacks, device=images.device, seed=self.seed)
        adversary.verbose = False
        if self.n_iter is not None:
            adversary.apgd.n_iter = adversary.apgd_targeted.n_iter = self.n_iter
        # the library seeds the global RNG: Attack.__call__ restores the caller's afterwards
        return adversary.run_standard_evaluation(images, labels, batch_size=len(images))[0]
