"""DVERGE's building blocks (Yang et al., "DVERGE: Diversifying Vulnerabilities for Enhanced
Robust Generation of Ensembles", NeurIPS 2020): feature distillation and the cross-training step.

Facts from the official code (zjysteven/DVERGE) that the defaults follow: features are
taken before the ReLU; layers of a CIFAR ResNet-20 are numbered 1..20 (1: the stem's BN,
then each block's first BN and its residual sum, 20: the logits), one layer drawn per
epoch; distillation takes 10 sign steps of 0.007 with momentum 1 on L1-normalised
gradients inside an Linf ball of 0.07, with no random start; member i's loss sums the
cross-entropy on every other member's distilled images, labelled with the source image's
label; "+adv" adds the cross-entropy on PGD examples (8/255, step 2/255, 10 steps, random
start) against member i itself.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
import torchattacks
from torch import nn

from robustbench_ens.zoo.normalize import Normalized
from robustbench_ens.zoo.resnet_cifar import CifarResNet


def feature_layers(model: Normalized) -> int:
    """How many distillation layers ``model`` has (20 for a ResNet-20)."""
    return 2 + 2 * len(_blocks(model))


def features(model: Normalized, x: torch.Tensor, layer: int) -> torch.Tensor:
    """``model``'s pre-ReLU features at DVERGE's ``layer`` (1-based; the last layer is the logits)."""
    blocks = _blocks(model)
    n_layers = 2 + 2 * len(blocks)
    if isinstance(layer, bool) or not isinstance(layer, int) or not 1 <= layer <= n_layers:
        raise ValueError(f"layer must be an integer in [1, {n_layers}], got {layer!r}")
    net = model.net
    stem = net.bn1(net.conv1(model.normalize(x)))
    if layer == 1:
        return stem
    out = F.relu(stem)
    for index, block in enumerate(blocks):
        first, residual = block.pre_activations(out)
        if layer == 2 + 2 * index:
            return first
        if layer == 3 + 2 * index:
            return residual
        out = F.relu(residual)
    return getattr(net, net.head_name)(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))


def distill(model: Normalized, source: torch.Tensor, target: torch.Tensor, layer: int, *, eps: float = 0.07,
            step_size: float = 0.007, steps: int = 10, decay: float = 1.0) -> torch.Tensor:
    r"""x' in the Linf ``eps``-ball around ``source`` whose ``layer`` features imitate ``target``'s.

    Minimises ||h_l(x') - h_l(target)||^2 (mean) from x' = source with
    m <- decay m + g / mean|g|,  x' <- clip_{source, eps}(x' - step_size sign(m)), clamped to [0, 1].
    Gradients are taken with respect to the images only; the model's mode is the caller's.
    """
    with torch.no_grad():
        goal = features(model, target, layer)
    x, momentum = source.detach().clone(), torch.zeros_like(source)
    for _ in range(steps):
        x.requires_grad_(True)
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(F.mse_loss(features(model, x, layer), goal), x)
        momentum = decay * momentum + grad / grad.abs().mean(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)
        x = source + torch.clamp(x.detach() - step_size * momentum.sign() - source, -eps, eps)
        x = torch.clamp(x, 0, 1)
    return x.detach()


def cross_training_loss(member: nn.Module, index: int, distilled: list[torch.Tensor],
                        labels: torch.Tensor) -> torch.Tensor:
    """Member ``index``'s DVERGE loss: sum over j != index of CE(f_index(x'_j), y_source)."""
    return sum(F.cross_entropy(member(x), labels) for j, x in enumerate(distilled) if j != index)


def dverge_step(members: list[Normalized], optimizers: list[torch.optim.Optimizer], source: torch.Tensor,
                labels: torch.Tensor, target: torch.Tensor, layer: int, *, adv: bool = False,
                adv_coeff: float = 1.0, **distill_kwargs) -> list[float]:
    """One DVERGE training step on a batch (members in train mode, as in the official code).

    Every member distils ``source`` towards ``target`` at ``layer``; each member then takes
    one optimiser step on its cross-training loss (times ``adv_coeff`` and plus the PGD
    cross-entropy when ``adv``, the "+adv" variant). Returns the members' losses.
    """
    if len(members) < 2 or len(members) != len(optimizers):
        raise ValueError("DVERGE needs at least two members and one optimiser per member")
    for member in members:
        member.train()
    distilled = [distill(member, source, target, layer, **distill_kwargs) for member in members]
    losses = []
    for i, (member, optimizer) in enumerate(zip(members, optimizers)):
        loss = cross_training_loss(member, i, distilled, labels)
        if adv:
            loss = adv_coeff * loss + F.cross_entropy(member(_pgd(member, source, labels)), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def _pgd(member: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    attack = torchattacks.PGD(member, eps=8 / 255, alpha=2 / 255, steps=10, random_start=True)
    attack.set_model_training_mode(model_training=True, batchnorm_training=True)  # as the official code
    return attack(images, labels)


def _blocks(model: Normalized) -> list:
    if not isinstance(model, Normalized) or not isinstance(model.net, CifarResNet):
        raise TypeError("DVERGE distillation needs a zoo CIFAR ResNet (e.g. create_model('resnet20_b'))")
    return [block for stage in (model.net.layer1, model.net.layer2, model.net.layer3) for block in stage]
