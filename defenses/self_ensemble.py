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
from robustbench_ens.zoo.train import TrainRecipe, train_model

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

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        """Images -> a fresh random stack, normalised -> the backbone's stem."""
        return self.backbone.stem((self.stack(x) - self.mean) / self.std)

    def predictor_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Every predictor's logits [B, P, classes]: the heads in block order, then the backbone's classifier."""
        out = self.stem(x)
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


class _BackboneView(nn.Module):
    """The backbone and its own classifier on the stack: phase 1 of training (parameters: the backbone's)."""

    def __init__(self, model: SelfEnsemble):
        super().__init__()
        self.backbone = model.backbone
        self._model = [model]  # not a submodule: its heads stay out of parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        backbone = self.backbone
        return backbone.classify(backbone.layer3(backbone.layer2(backbone.layer1(self._model[0].stem(x)))))


class _HeadView(nn.Module):
    """One head on the frozen backbone (eval mode, no gradient): phase 2 (parameters: that head's)."""

    def __init__(self, model: SelfEnsemble, index: int):
        super().__init__()
        self.head = model.heads[index]
        self.block = model.head_blocks[index]
        self._model = [model]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        model = self._model[0]
        model.backbone.eval()
        with torch.no_grad():
            out = model.stem(x)
            for block in model.backbone.blocks()[:self.block + 1]:
                out = block(out)
        return self.head(out)


def train_self_ensemble(model: SelfEnsemble, data, backbone_recipe: TrainRecipe, head_recipe: TrainRecipe, *,
                        seed: int = 0, device: str | torch.device = "cpu", progress: bool = True) -> dict:
    """Train as the official notebook does: the backbone with its classifier, then each head alone.

    Phase 1 trains the backbone (and its classifier) on the random multi-resolution stack;
    phase 2 trains the heads one at a time, deepest first, on the frozen backbone. Unlike the
    notebook, the frozen backbone stays in eval mode in phase 2, so its BatchNorm statistics
    do not drift while the heads learn. Returns each phase's :func:`train_model` summary.
    """
    model.to(device)
    backbone = train_model(_BackboneView(model), data, backbone_recipe, seed=seed, device=device, progress=progress)
    heads = {}
    for index in reversed(range(len(model.heads))):
        heads[model.head_blocks[index]] = train_model(_HeadView(model, index), data, head_recipe, seed=seed + 1 + index,
                                                      device=device, progress=progress)
    model.eval()
    return {"backbone": backbone, "heads": heads}


def _head(features: int, num_classes: int) -> nn.Sequential:
    return nn.Sequential(nn.Flatten(), nn.BatchNorm1d(features), nn.Linear(features, num_classes))


@register_defense("self_ensemble")
def build_self_ensemble(members: list[nn.Module], k: int | None = 3) -> SelfEnsemble:
    """The suite's single member must be a trained :class:`SelfEnsemble`; ``k`` may be changed."""
    if len(members) != 1 or not isinstance(members[0], SelfEnsemble):
        raise ValueError("a 'self_ensemble' defense takes exactly one SelfEnsemble model")
    members[0].k = k
    return members[0]
