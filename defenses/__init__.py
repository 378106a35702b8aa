"""Defenses: each is an ``nn.Module`` classifier (images in [0, 1] -> logits) plus how to build it."""
from .dverge import DVERGE, DVERGERecipe, train_dverge
from .ensemble import Ensemble
from .registry import UnknownDefenseError, build_defense, list_defenses, register_defense
from .self_ensemble import SelfEnsemble

__all__ = ["DVERGE", "DVERGERecipe", "train_dverge", "Ensemble", "SelfEnsemble",
           "UnknownDefenseError", "build_defense", "list_defenses", "register_defense"]
