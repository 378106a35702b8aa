"""Per-defense attacks in the runner: what they differentiate (or query), their kind, and EOT where needed.

An attack entry with ``on = "defense"`` attacks each defense itself; ``on = "adaptive"``
attacks its adaptive view (:func:`defenses.adaptive_view`: the mean of its predictors'
logits, in place of CrossMax or any other aggregation), and the images are evaluated on
the real defense. A defense whose forward pass is random (two passes on the same images
differ) is attacked with EOT: ``eot_samples`` for attacks that take it (PGD), the ``rand``
version for AutoAttack.
"""
from __future__ import annotations

import inspect

import torch
from torch import nn

from attacks import AutoAttack, get_attack
from attacks.autoattack import RAND_EOT_SAMPLES
from defenses import adaptive_view

from .suite import AttackEntry


@torch.no_grad()
def is_randomised(model: nn.Module, images: torch.Tensor, tries: int = 3) -> bool:
    """Whether ``model`` gives different outputs on the same ``images`` in eval mode."""
    was_training = model.training
    model.eval()
    try:
        first = model(images)
        return any(not torch.equal(first, model(images)) for _ in range(tries - 1))
    finally:
        model.train(was_training)


def attacked_model(entry: AttackEntry, defense: nn.Module) -> nn.Module:
    """What a white-box attack differentiates: the defense itself, or its adaptive view."""
    return adaptive_view(defense) if entry.on == "adaptive" else defense


def whitebox_params(entry: AttackEntry, randomised: bool) -> dict:
    """The entry's parameters, with EOT switched on against a randomised defense (and early stopping off: one random
    draw's prediction cannot say that a point is fooled)."""
    params = dict(entry.params)
    if not randomised:
        return params
    params.pop("early_stop", None)
    attack = get_attack(entry.attack)
    if "eot_samples" in inspect.signature(attack).parameters:
        params.setdefault("eot_samples", entry.eot)
    elif issubclass(attack, AutoAttack) and params.get("version", "standard") == "standard":
        params["version"] = "rand"
    return params


def eot_samples(entry: AttackEntry) -> int | None:
    """The EOT samples per step the entry uses against a randomised defense (None: a transfer attack or no EOT)."""
    if not entry.whitebox:
        return None
    params = whitebox_params(entry, randomised=True)
    if "eot_samples" in params:
        return params["eot_samples"]
    return RAND_EOT_SAMPLES if params.get("version") == "rand" and issubclass(get_attack(entry.attack), AutoAttack) \
        else None


def attack_kind(entry: AttackEntry) -> str:
    """transfer (crafted on surrogates), white-box or adaptive (gradients of the defense or its view), or
    black-box (queries of the defense's outputs only)."""
    if not entry.whitebox:
        return "transfer"
    if get_attack(entry.attack).gradient_free:
        return "black-box"
    return "adaptive" if entry.on == "adaptive" else "white-box"
