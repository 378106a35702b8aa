"""Input transformations that compose with every gradient attack: ``Ens(models, transforms=[DI(), TI()])``.

A suite names them by their registry names, alone or with settings:
``params = { transforms = ["di", { name = "ti", kernel_size = 7 }] }``.
"""
from __future__ import annotations

import difflib

from .admix import Admix
from .base import Transformation
from .di import DI
from .si import SI
from .ti import TI

TRANSFORMS: dict[str, type[Transformation]] = {cls.name: cls for cls in (DI, TI, SI, Admix)}


def resolve_transforms(spec) -> tuple[Transformation, ...]:
    """``spec`` (a sequence of :class:`Transformation`s, registry names, or ``{"name": ..., **settings}``
    tables) as transformation instances, in order."""
    if spec is None:
        return ()
    if isinstance(spec, (str, dict, Transformation)):
        spec = [spec]
    return tuple(_one(item) for item in spec)


def _one(item) -> Transformation:
    if isinstance(item, Transformation):
        return item
    settings = {}
    if isinstance(item, dict):
        settings = dict(item)
        item = settings.pop("name", None)
    if not isinstance(item, str):
        raise TypeError(f"a transformation is a Transformation, a name or a table with a name, got {item!r}")
    key = item.lower()
    if key not in TRANSFORMS:
        close = difflib.get_close_matches(key, list(TRANSFORMS), n=2)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown transformation {item!r}{hint} (known: {', '.join(TRANSFORMS)})")
    try:
        return TRANSFORMS[key](**settings)
    except TypeError as error:
        raise ValueError(f"transformation {item!r}: {error}") from None


__all__ = ["Admix", "DI", "SI", "TI", "TRANSFORMS", "Transformation", "resolve_transforms"]
