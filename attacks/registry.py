"""Attack registry: suites name attacks; names map to classes only through this table."""
from __future__ import annotations

import difflib

_ATTACKS: dict[str, type] = {}


class UnknownAttackError(KeyError):
    def __str__(self) -> str:
        return self.args[0]


def register_attack(cls: type) -> type:
    """Class decorator: registers ``cls`` under its lower-cased class name."""
    _ATTACKS[cls.__name__.lower()] = cls
    return cls


def list_attacks() -> list[str]:
    return sorted(_ATTACKS)


def get_attack(name: str) -> type:
    key = name.lower()
    if key not in _ATTACKS:
        close = difflib.get_close_matches(key, list(_ATTACKS), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UnknownAttackError(f"unknown attack {name!r}{hint} (known: {', '.join(list_attacks())})")
    return _ATTACKS[key]


def create_attack(name: str, models, **params):
    """``create_attack("ens", models, eps=8/255, steps=10)`` -> an attack instance."""
    return get_attack(name)(models, **params)
