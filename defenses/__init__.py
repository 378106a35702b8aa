"""Defenses: each is an ``nn.Module`` classifier (images in [0, 1] -> logits) plus how to build it."""
from .adaptive import MeanLogitsView, adaptive_view
from .adp import adp_loss, adp_objective
from .dverge import DVERGE, DVERGERecipe, train_dverge
from .ensemble import Ensemble
from .gal import gal_loss, gal_objective
from .joint import JointRecipe, train_jointly
from .registry import UnknownDefenseError, build_defense, get_defense, list_defenses, register_defense
from .self_ensemble import SelfEnsemble, train_self_ensemble
from .supplied import SuppliedDefense, SuppliedEnsemble
from .trs import trs_loss, trs_objective

__all__ = ["MeanLogitsView", "adaptive_view", "DVERGE", "DVERGERecipe", "train_dverge", "Ensemble", "SelfEnsemble",
           "train_self_ensemble", "UnknownDefenseError", "build_defense", "get_defense", "list_defenses",
           "register_defense", "JointRecipe", "train_jointly", "adp_loss", "adp_objective", "gal_loss", "gal_objective",
           "trs_loss", "trs_objective", "SuppliedDefense", "SuppliedEnsemble"]
