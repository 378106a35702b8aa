"""Ensemble transfer attacks and white-box attacks in plain PyTorch: ``from attacks import Ens``.

Every attack is called as ``x_adv = attack(images, labels)`` on images in [0, 1]; see
:mod:`attacks.base` for the contract. This package imports nothing from the runner.
"""
from .adaea import AdaEA
from .autoattack import AutoAttack
from .base import Attack, MomentumIterativeAttack
from .bpda import BPDA
from .cwa import CWA
from .ens import Ens
from .lgv import LGV
from .pgd import PGD
from .registry import UnknownAttackError, create_attack, get_attack, list_attacks, register_attack
from .sgm import SGM
from .smer import SMER
from .square import Square
from .svre import SVRE
from .transforms import DI, SI, TI, Admix, Transformation

__all__ = ["Attack", "AutoAttack", "BPDA", "MomentumIterativeAttack", "Ens", "CWA", "AdaEA", "SVRE", "SMER", "SGM",
           "LGV", "PGD", "Square", "DI", "TI", "SI", "Admix", "Transformation", "UnknownAttackError", "create_attack",
           "get_attack", "list_attacks", "register_attack"]
