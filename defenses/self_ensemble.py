"""Multi-resolution self-ensemble with CrossMax (Fort & Lakshminarayanan, 2024, "Ensemble
everything everywhere"), on a CIFAR ResNet trained here.

The backbone sees the multi-resolution stack (:class:`~defenses.multires.MultiResolutionStack`,
12 channels for 4 resolutions); linear heads read intermediate block outputs (BatchNorm
then a linear layer on the flattened map, as the official notebook does), and the backbone's
own classifier is one more predictor. The prediction is CrossMax over the predictors with
the k-th highest value (k = 3 in the paper's self-ensemble). The stack is random at every
call, so this defense is randomised: attack it with EOT.
"""
from __future__ import annotations

import torch
from torch import nn

from robustbench_ens.zoo.normalize import CIFAR10_MEAN, CIFAR10_STD
from robustbench_ens.zoo.resnet_cifar import WIDTHS, CifarResNet

from .crossmax import crossmax
from .multires import MultiResolutionStack
from .registry import register_defense


class SelfEnsemble(nn.Module):
    """Images in [0, 1] -> CrossMax scores [B, classes]; :meth:`predictor_logits` gives [B, P, classes].

    Args:
        depth: CIFAR ResNet depth (6n+2; option-B shortcuts).
        head_blocks: 0-based indices of the blocks whose outputs get a linear head (default:
            the last 7 blocks, so that with the backbone's classifier there are 8 predictors,
            as in the official notebook).
        k: CrossMax's k-th highest (default 3; None for the median).
        stack: the input stack (default: :class:`MultiResolutionStack` with its defaults).
        image_size: input height = width (32 for CIFAR).
    """

    def __init__(self, depth: int = 20, head_blocks: tuple[int, ...] | None = None, k: int | None = 3,
                 stack: MultiResolutionStack | None = None, num_classes: int = 10, image_size: int = 32,
                 mean=CIFAR10_MEAN, std=CIFAR10_STD):
        super().__init__()
        self.stack = stack or MultiResolutionStack()
        views = len(self.stack.resolutions)
        self.backbone = CifarResNet(depth, option="B", head="fc", num_classes=num_classes, in_channels=3 * views)
        blocks = self.backbone.blocks()
        self.head_blocks = tuple(range(max(0, len(blocks) - 7), len(blocks))) if head_blocks is None \
            else tuple(head_blocks)
        if not self.head_blocks or any(not 0 <= b < len(blocks) for b in self.head_blocks):
            raise ValueError(f"head_blocks must be indices in [0, {len(blocks)}), got {head_blocks!r}")
        if k is not None and not 1 <= k <= len(self.head_blocks) + 1:
            raise ValueError(f"k must lie in [1, {len(self.head_blocks) + 1}] (the predictors), got {k!r}")
        self.k = k
        per_stage = len(blocks) // len(WIDTHS)
        self.heads = nn.ModuleList(
            _head(WIDTHS[b // per_stage] * (image_size // 2 ** (b // per_stage)) ** 2, num_classes)
            for b in self.head_blocks)
        self.register_buffer("mean", torch.tensor(list(mean) * views).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(list(std) * views).view(1, -1, 1, 1), persistent=False)

    @property
    def n_predictors(self) -> int:
        return len(self.heads) + 1

    def predictor_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Every predictor's logits [B, P, classes]: the heads in block order, then the backbone's classifier."""
        out = self.backbone.stem((self.stack(x) - self.mean) / self.std)
        logits = []
        heads = dict(zip(self.head_blocks, self.heads))
        for index, block in enumerate(self.backbone.blocks()):
            out = block(out)
            if index in heads:
                logits.append(heads[index](out))
        logits.append(self.backbone.classify(out))
        return torch.stack(logits, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return crossmax(self.predictor_logits(x), self.k)


def _head(features: int, num_classes: int) -> nn.Sequential:
    return nn.Sequential(nn.Flatten(), nn.BatchNorm1d(features), nn.Linear(features, num_classes))


@register_defense("self_ensemble")
def build_self_ensemble(members: list[nn.Module], k: int | None = 3) -> SelfEnsemble:
    """The suite's single member must be a trained :class:`SelfEnsemble`; ``k`` may be changed."""
    if len(members) != 1 or not isinstance(members[0], SelfEnsemble):
        raise ValueError("a 'self_ensemble' defense takes exactly one SelfEnsemble model")
    members[0].k = k
    return members[0]
