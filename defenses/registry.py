"""Defense registry: a suite's ``kind`` maps to a builder ``(members, **params) -> nn.Module``."""
from __future__ import annotations

import difflib
from collections.abc import Callable

from torch import nn

_DEFENSES: dict[str, Callable[..., nn.Module]] = {}


class UnknownDefenseError(KeyError):
    def __str__(self) -> str:
        return self.args[0]


def register_defense(kind: str):
    """Decorator: registers a builder taking the member models and keyword parameters."""
    def decorator(builder):
        _DEFENSES[kind] = builder
        return builder
    return decorator


def list_defenses() -> list[str]:
    return sorted(_DEFENSES)


def get_defense(kind: str) -> Callable[..., nn.Module]:
    """The builder registered as ``kind``; an UnknownDefenseError naming the closest kinds if there is none."""
    if kind not in _DEFENSES:
        close = difflib.get_close_matches(kind, list(_DEFENSES), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UnknownDefenseError(f"unknown defense kind {kind!r}{hint} (known: {', '.join(list_defenses())})")
    return _DEFENSES[kind]


def build_defense(kind: str, members: list[nn.Module], **params) -> nn.Module:
    return get_defense(kind)(members, **params)
