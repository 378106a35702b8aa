"""Certified robustness by interval bound propagation (IBP), a sound floor under any attack's robust accuracy.

IBP (Gowal et al., "On the effectiveness of interval bound propagation for training verifiably robust models",
2018, eqs. 5-6) carries a box [lower, upper] through the network layer by layer: an affine layer maps the box's
centre through the layer and its radius through the layer's absolute weights (``mid' = W mid + b``,
``rad' = |W| rad``), and a monotone activation (ReLU, Sigmoid) maps each end. The last Linear layer is not bounded
as logits: the specification ``z_y - z_j`` is folded into it (Gowal et al., Sec. 3), so each difference of rows
``W_y - W_j`` is bounded directly, which is tighter than subtracting the logits' intervals.

A point is certified at eps when the model classifies it correctly and every margin ``z_y - z_j`` (j != y) has a
positive lower bound over the Linf ball of radius eps around it, intersected with the image box [0, 1]: then no
perturbation in that ball, by any attack, can turn it wrong. An attack that does is an eps or evaluation bug. An L2
ball of radius eps lies inside the Linf ball of the same radius, so the same bounds certify it too (soundly, and
loosely: at the L2 radii of CIFAR-10 suites they rarely certify anything).

Only chains of layers whose computation is known are bounded: the zoo's :class:`~.zoo.normalize.Normalized`
(a per-channel affine map with a positive std), ``nn.Sequential``, Conv2d (zero padding), Linear, ReLU, Sigmoid
and Flatten, each of exactly that type (a subclass may compute something else). Any other module raises
:class:`UnsupportedModelError` naming it. Bounds are computed in float64, so that their own rounding stays far
below the float32 model's.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .zoo.normalize import Normalized

Bounds = tuple[torch.Tensor, torch.Tensor]  # (lower, upper), elementwise
Step = Callable[[Bounds], Bounds]
NORM = "Linf"  # the only ball a box bounds exactly
NORMS = (NORM, "L2")  # L2 through the Linf ball that holds it
SUPPORTED = "Normalized, Sequential, Conv2d (zero padding), Linear, ReLU, Sigmoid and Flatten"


class UnsupportedModelError(ValueError):
    """IBP cannot bound this model soundly (a layer it does not know), or not for this norm; the message says which."""


def certified(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, eps: float, norm: str = NORM,
              batch_size: int = 250, device: str | torch.device = "cpu") -> np.ndarray:
    """Which points IBP certifies at ``eps``: True where ``model`` (on ``device``) classifies the point correctly and
    every margin ``z_y - z_j`` (j != y) has a positive lower bound over the ball (see the module's docstring)."""
    lower = margin_lower_bounds(model, images, labels, eps, norm, batch_size, device)
    with torch.no_grad():
        predicted = torch.cat([model(images[i:i + batch_size].to(device)).argmax(1).cpu()
                               for i in range(0, len(images), batch_size)])
    return ((predicted == labels.cpu()) & (lower > 0).all(dim=1)).numpy()


@torch.no_grad()
def margin_lower_bounds(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, eps: float,
                        norm: str = NORM, batch_size: int = 250, device: str | torch.device = "cpu") -> torch.Tensor:
    """IBP lower bounds of ``z_y - z_j`` over the Linf ball of radius ``eps`` around each image (which holds the L2
    ball of that radius), intersected with [0, 1]: float64, [N, classes] on the CPU, +inf at j = y.
    UnsupportedModelError for a norm other than Linf or L2, or a layer IBP cannot bound."""
    if norm not in NORMS:
        raise UnsupportedModelError(f"IBP bounds Linf (and, through the enclosing Linf ball, L2) balls, "
                                    f"not norm {norm!r}")
    if not 0 <= float(eps) < math.inf:
        raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    chain = layers(model)
    if not chain:
        raise UnsupportedModelError("the model has no layers to bound")
    steps = [_STEPS[type(layer)](layer, device) for layer in chain[:-1]]
    margins = _margin_of(chain[-1], device)
    out = []
    for i in range(0, len(images), batch_size):
        x, y = images[i:i + batch_size].to(device, torch.float64), labels[i:i + batch_size].to(device)
        bounds = ((x - eps).clamp(0, 1), (x + eps).clamp(0, 1))
        for step in steps:
            bounds = step(bounds)
        out.append(margins(bounds, y).scatter(1, y.view(-1, 1), math.inf).cpu())
    return torch.cat(out)


def layers(model: nn.Module, name: str = "") -> list[nn.Module]:
    """The chain of leaf layers ``model`` computes, in order (a Normalized wrapper counts as its affine map, followed
    by its network's layers). UnsupportedModelError names (by its path in the model) the first module that is not a
    known layer or chain."""
    kind = type(model)
    if kind is nn.Sequential:
        return [leaf for child, module in model.named_children() for leaf in layers(module, _child(name, child))]
    if kind not in _STEPS:
        raise UnsupportedModelError(f"cannot bound layer {name or 'model'!r} ({kind.__name__}) with IBP: it supports "
                                    f"{SUPPORTED}, each of exactly that type")
    if kind is nn.Conv2d and model.padding_mode != "zeros":
        raise UnsupportedModelError(f"cannot bound layer {name or 'model'!r} (Conv2d with padding_mode "
                                    f"{model.padding_mode!r}) with IBP: only zero padding is supported")
    return [model, *layers(model.net, _child(name, "net"))] if kind is Normalized else [model]


def _child(parent: str, child: str) -> str:
    return f"{parent}.{child}" if parent else child


def _normalize_step(layer: Normalized, device) -> Step:
    """(x - mean) / std per channel: increasing in x, since std > 0."""
    mean, std = (torch.tensor(v, dtype=torch.float64, device=device).view(1, 3, 1, 1)
                 for v in (layer.normalize_mean, layer.normalize_std))
    return lambda bounds: ((bounds[0] - mean) / std, (bounds[1] - mean) / std)


def _affine_step(layer: nn.Conv2d | nn.Linear, device) -> Step:
    return partial(_affine, *_operator(layer, device))


def _monotone_step(function: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[nn.Module, object], Step]:
    """An elementwise increasing activation maps each end of the box."""
    return lambda layer, device: lambda bounds: (function(bounds[0]), function(bounds[1]))


def _reshape_step(layer: nn.Flatten, device) -> Step:
    return lambda bounds: (layer(bounds[0]), layer(bounds[1]))


_STEPS: dict[type, Callable[[nn.Module, object], Step]] = {  # the box map of each supported leaf layer
    Normalized: _normalize_step, nn.Conv2d: _affine_step, nn.Linear: _affine_step,
    nn.ReLU: _monotone_step(torch.relu), nn.Sigmoid: _monotone_step(torch.sigmoid), nn.Flatten: _reshape_step}


def _operator(layer: nn.Conv2d | nn.Linear, device) -> tuple[Callable, torch.Tensor, torch.Tensor | None]:
    """The layer's linear map ``op(x, weight, bias)``, with its weight and bias in float64 on ``device``."""
    weight = layer.weight.detach().to(device, torch.float64)
    bias = None if layer.bias is None else layer.bias.detach().to(device, torch.float64)
    if isinstance(layer, nn.Linear):
        return F.linear, weight, bias
    return partial(F.conv2d, stride=layer.stride, padding=layer.padding, dilation=layer.dilation,
                   groups=layer.groups), weight, bias


def _affine(op: Callable, weight: torch.Tensor, bias: torch.Tensor | None, bounds: Bounds) -> Bounds:
    """Gowal et al., eq. 6: the centre through the layer, the radius through its absolute weights."""
    mid, rad = (bounds[1] + bounds[0]) / 2, (bounds[1] - bounds[0]) / 2
    mid, rad = op(mid, weight, bias), op(rad, weight.abs(), None)
    return mid - rad, mid + rad


def _margin_of(layer: nn.Module, device) -> Callable[[Bounds, torch.Tensor], torch.Tensor]:
    """Lower bounds of ``z_y - z_j`` from the box of the last layer's input: for a Linear layer, the rows
    ``W_y - W_j`` (and ``b_y - b_j``) bounded directly; otherwise from the logits' box, ``lower_y - upper_j``."""
    if type(layer) is not nn.Linear:
        step = _STEPS[type(layer)](layer, device)

        def from_logits(bounds: Bounds, labels: torch.Tensor) -> torch.Tensor:
            lower, upper = step(bounds)
            return lower.gather(1, labels.view(-1, 1)) - upper
        return from_logits

    weight, bias = _operator(layer, device)[1:]
    bias = torch.zeros(len(weight), dtype=torch.float64, device=device) if bias is None else bias

    def elided(bounds: Bounds, labels: torch.Tensor) -> torch.Tensor:
        mid, rad = (bounds[1] + bounds[0]) / 2, (bounds[1] - bounds[0]) / 2
        rows = weight[labels].unsqueeze(1) - weight.unsqueeze(0)  # [N, classes, features]: W_y - W_j
        return (torch.einsum("nkf,nf->nk", rows, mid) - torch.einsum("nkf,nf->nk", rows.abs(), rad)
                + bias[labels].unsqueeze(1) - bias.unsqueeze(0))
    return elided
