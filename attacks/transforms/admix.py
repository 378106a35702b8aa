"""Admix (Wang et al., "Admix: Enhancing the Transferability of Adversarial Attacks", ICCV 2021)."""
from __future__ import annotations

import torch

from ..checks import positive_int, positive_number
from .base import Transformation


class Admix(Transformation):
    r"""The gradient averaged over copies that mix in a little of other images, then scaled (as SI)::

        grad = 1/(m1 m2) sum_{j=1..m2} sum_{i=0..m1-1} grad_x L(f((x + eta x'_j) / 2^i), y)

    x'_j: the batch's images in a random order (one permutation per j, drawn per surrogate pass;
    the added images carry no gradient), as in TransferAttack's Admix. The paper draws x' from
    other categories; with a random permutation an image may meet one of its own class or itself,
    and an image's result depends on which images share its batch. Defaults are the paper's:
    m1 = 5 scales, m2 = 3 mixed images, eta = 0.2. Costs m1 m2 surrogate passes per gradient.
    """

    name = "admix"

    def __init__(self, scales: int = 5, mixes: int = 3, strength: float = 0.2):
        self.scales = positive_int(scales, "scales")
        self.mixes = positive_int(mixes, "mixes")
        self.strength = positive_number(strength, "strength")

    def copies(self, x: torch.Tensor, generator: torch.Generator) -> list[torch.Tensor]:
        mixed = []
        for _ in range(self.mixes):
            order = torch.randperm(x.shape[0], generator=generator).to(x.device)
            mixed.append(x + self.strength * x[order].detach())
        return [m / 2 ** i for i in range(self.scales) for m in mixed]
