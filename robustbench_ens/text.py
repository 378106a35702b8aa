"""Plain-text helpers light enough for model code to import (no pandas, no matplotlib)."""
from __future__ import annotations


def plural(count: int, noun: str) -> str:
    """``count`` and ``noun``, with an s unless there is exactly one: "1 cell", "3 cells"."""
    return f"{count} {noun}{'s' if count != 1 else ''}"
