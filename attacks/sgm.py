"""SGM: the skip gradient method (Wu et al., "Skip Connections Matter: On the Transferability of
Adversarial Examples Generated with ResNets", ICLR 2020)."""
from __future__ import annotations

import contextlib

import torch
from torch import nn

from .checks import positive_number
from .ens import Ens
from .registry import register_attack


@register_attack
class SGM(Ens):
    r"""MI-FGSM on the ensemble (:class:`~attacks.Ens`), with the gradient through the residual
    branches scaled by ``gamma``.

    A residual block computes z_{i+1} = z_i + f_i(z_i); SGM backpropagates through it as if

        dz_{i+1} / dz_i = 1 + gamma * df_i / dz_i         (the forward pass is unchanged)

    so that the gradient favours the skip connections (the paper's eq. 6). Implemented exactly:
    the output r of each residual branch is replaced by r.detach() + gamma * (r - r.detach()).

    Which blocks: as the official code (csdongxian/skip-connections-matter, and TransferAttack's
    port), every block but the first of each stage (``skip_first_block=True``): those are the
    downsampling blocks, whose shortcut is no identity ("we do not manipulate gradients of
    'downsampling' modules"). This matters on CIFAR ResNets with option-A shortcuts (a strided
    subsampling padded with zeros): scaling their branches too lets that subsampling dominate the
    input gradient, which becomes a grid, and the attack then fails even on its own surrogates.
    ``skip_first_block=False`` scales every block.

    The residual branches are found in each surrogate: a module whose class names the submodule
    that ends its branch in a ``residual_branch_end`` attribute (this project's CIFAR ResNets,
    option A and B, the VNN-COMP, SRI and MLPerf ResNets), or torchvision's ``BasicBlock``
    (``bn2``) and ``Bottleneck`` (``bn3``); the first block of a stage is the one at index 0 of
    its ``nn.Sequential``. A surrogate without such a block is refused.

    ``gamma`` = 0.2, the paper's value for ResNets (tuned on ImageNet at 16/255) and the one
    DVERGE's evaluation uses. The official code scales at the blocks' ReLUs (the same gradient)
    and divides each block's gradient by its batch standard deviation; that normalisation is
    left out (one number per batch and block, which would make an image's gradient depend on
    its batch).

    Args:
        gamma: the residual-branch gradient scale, in [0, 1] (default 0.2; 1 is Ens).
        skip_first_block: leave the first (downsampling) block of each stage unscaled (default True).
        the rest: as :class:`~attacks.Ens` (MI-FGSM, 10 steps, decay 1.0, alpha = eps / steps).
    """

    def __init__(self, models, *, gamma: float = 0.2, eps: float = 8 / 255, alpha: float | None = None,
                 steps: int = 10, decay: float = 1.0, fusion: str = "logits", weights=None, norm: str = "Linf",
                 targeted: bool = False, random_start: bool = False, seed: int = 0, transforms=(),
                 loss: str = "ce", skip_first_block: bool = True):
        super().__init__(models, eps=eps, alpha=alpha, steps=steps, decay=decay, fusion=fusion, weights=weights,
                         norm=norm, targeted=targeted, random_start=random_start, seed=seed, transforms=transforms,
                         loss=loss)
        self.gamma = positive_number(gamma, "gamma")
        if self.gamma > 1:
            raise ValueError(f"gamma scales the residual gradients down and must lie in [0, 1], got {gamma!r}")
        self.skip_first_block = bool(skip_first_block)
        self._branch_ends = [residual_branch_ends(model, self.skip_first_block) for model in self.models]
        for index, ends in enumerate(self._branch_ends):
            if not ends:
                name = type(self.models[index]).__name__
                raise ValueError(f"SGM needs residual surrogates: surrogate {index} ({name}) has no residual block "
                                 "it knows beyond the first of each stage (see the class docstring)")

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        # stacked members (attacks.acceleration) share one template: each branch end is hooked once
        ends = list({id(end): end for ends in self._branch_ends for end in ends}.values())
        with skip_gradient(ends, self.gamma):
            return super().forward(images, labels)


def residual_branch_ends(model: nn.Module, skip_first_block: bool = True) -> list[nn.Module]:
    """The module that ends each residual branch of ``model`` (each listed once), without the first block of each
    stage (a block named ``0`` in its parent) if ``skip_first_block``."""
    from_torchvision = _torchvision_blocks()
    ends, seen = [], set()
    for path, module in model.named_modules():
        name = getattr(type(module), "residual_branch_end", None) or from_torchvision.get(type(module))
        if name is None or (skip_first_block and path.rpartition(".")[2] == "0"):
            continue
        if id(end := module.get_submodule(name)) not in seen:
            seen.add(id(end))
            ends.append(end)
    return ends


@contextlib.contextmanager
def skip_gradient(branch_ends: list[nn.Module], gamma: float):
    """Inside: the gradient through the output of each module in ``branch_ends`` is scaled by ``gamma``."""
    def scale(module, inputs, output):
        return output.detach() + gamma * (output - output.detach())
    handles = [end.register_forward_hook(scale) for end in branch_ends]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _torchvision_blocks() -> dict[type, str]:
    try:
        from torchvision.models.resnet import BasicBlock, Bottleneck
    except ImportError:  # torchvision is a dependency; without it only this project's blocks are known
        return {}
    return {BasicBlock: "bn2", Bottleneck: "bn3"}
