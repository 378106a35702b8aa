"""Defenses: each is an ``nn.Module`` classifier (images in [0, 1] -> logits) plus how to build it."""
from .ensemble import Ensemble
from .registry import UnknownDefenseError, build_defense, list_defenses, register_defense

__all__ = ["Ensemble", "UnknownDefenseError", "build_defense", "list_defenses", "register_defense"]
