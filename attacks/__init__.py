"""Ensemble transfer attacks in plain PyTorch: ``from attacks import Ens``.

Every attack is called as ``x_adv = attack(images, labels)`` on images in [0, 1]; see
:mod:`attacks.base` for the contract. This package imports nothing from the runner.
"""
from .adaea import AdaEA
from .base import Attack, MomentumIterativeAttack
from .cwa import CWA
from .ens import Ens
from .lgv import LGV
from .svre import SVRE
from .registry import UnknownAttackError, create_attack, get_attack, list_attacks, register_attack

__all__ = ["Attack", "MomentumIterativeAttack", "Ens", "CWA", "AdaEA", "SVRE", "LGV", "UnknownAttackError",
           "create_attack", "get_attack", "list_attacks", "register_attack"]
