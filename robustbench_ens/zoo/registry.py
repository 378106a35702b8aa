"""Model registry: architecture names map to constructors of bare networks.

``create_model(name)`` builds the registered network and wraps it in :class:`Normalized`
with either the given mean/std or the architecture family's default normalisation.
"""
from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .normalize import CIFAR10_MEAN, CIFAR10_STD, Normalized


class UnknownModelError(KeyError):
    """An architecture name that is not registered; the message suggests the closest ones."""

    def __str__(self) -> str:
        return self.args[0]


@dataclass(frozen=True)
class _Entry:
    constructor: Callable[..., nn.Module]
    mean: tuple[float, ...]
    std: tuple[float, ...]


_MODELS: dict[str, _Entry] = {}


def register_model(name: str, *, mean: Sequence[float] = CIFAR10_MEAN, std: Sequence[float] = CIFAR10_STD):
    """Decorator registering ``constructor(num_classes=...) -> nn.Module`` under ``name``.

    ``mean``/``std`` are the family's default normalisation, used by :func:`create_model`
    when the caller gives none.
    """
    def decorator(constructor):
        if name in _MODELS:
            raise ValueError(f"model {name!r} is already registered")
        _MODELS[name] = _Entry(constructor, tuple(float(m) for m in mean), tuple(float(s) for s in std))
        return constructor
    return decorator


def list_models() -> list[str]:
    return sorted(_MODELS)


def _entry(name: str) -> _Entry:
    if name not in _MODELS:
        close = difflib.get_close_matches(name, list(_MODELS), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UnknownModelError(f"unknown model architecture {name!r}{hint} (known: {', '.join(list_models())})")
    return _MODELS[name]


def default_normalization(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The (mean, std) that ``create_model(name)`` uses when none is given."""
    entry = _entry(name)
    return entry.mean, entry.std


def create_model(name: str, num_classes: int = 10, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None, *, seed: int | None = None) -> Normalized:
    """Build the registered network ``name`` wrapped in :class:`Normalized`.

    With ``seed`` the initial weights come from ``torch.manual_seed(seed)`` inside a forked
    RNG state, so they are reproducible and the caller's global RNG is left untouched.
    """
    entry = _entry(name)
    if seed is None:
        net = entry.constructor(num_classes=num_classes)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = entry.constructor(num_classes=num_classes)
    return Normalized(net, entry.mean if mean is None else mean, entry.std if std is None else std, arch=name)
