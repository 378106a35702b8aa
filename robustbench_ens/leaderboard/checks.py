"""Gradient-masking checks, read off a leaderboard's cells (after Carlini et al., "On Evaluating
Adversarial Robustness", 2019).

A white-box attack that works sees robust accuracy fall as eps and steps grow, reach about 0
at a large eps, and beats any transfer or black-box attack, which knows less (neither reads
the defense's gradient). Where the cells say otherwise,
the defense's white-box numbers are suspect (masked or obfuscated gradients) and its row gets
a warning. Checks need the cells they compare: a white-box attack at several eps, at a large
eps, the same attack with more steps, and transfer attacks at the same eps.

A certified floor is checked too (:func:`certificate_checks`): a point that interval bound propagation certifies at
eps (:mod:`robustbench_ens.certify`) stays right under every perturbation in its eps-ball, so an attack at that
eps or a smaller one that turns it wrong reveals an eps or evaluation bug, not a strong attack.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..text import plural
from .format import fmt_eps

if TYPE_CHECKING:
    from .tables import Leaderboard

TOLERANCE = 0.01  # a difference smaller than this (1 point) is noise, not a failed check
LARGE_EPS = {"Linf": 64 / 255, "L2": 4.0}  # a budget at which a working attack leaves about 0 %
NEAR_ZERO = 0.05
WHITEBOX_KINDS = ("white-box", "adaptive")
GRADIENT_FREE_KINDS = ("transfer", "black-box")  # attacks that never read the defense's gradient


def masking_warnings(lb: Leaderboard, setting: dict) -> dict[str, list[str]]:
    """Per defense, the checks it fails, each as one sentence (none: an empty list)."""
    whitebox = [a for a in lb.attacks if lb.kind(a) in WHITEBOX_KINDS]
    gradient_free = [a for a in lb.attacks if lb.kind(a) in GRADIENT_FREE_KINDS]
    large_eps = LARGE_EPS.get((setting.get("threat") or {}).get("norm", "Linf"), LARGE_EPS["Linf"])
    warnings: dict[str, list[str]] = {}
    for defense in lb.defenses:
        found = []
        for eps in lb.eps_list:
            best_wb = _best(lb, eps, whitebox, defense)
            best_gf = _best(lb, eps, gradient_free, defense)
            if best_wb and best_gf and best_gf[1] < best_wb[1] - TOLERANCE:
                found.append(f"at {fmt_eps(eps)} the {lb.kind(best_gf[0])} attack {best_gf[0]} "
                             f"({100 * best_gf[1]:.1f} %) beats every white-box attack ({100 * best_wb[1]:.1f} %)")
        for attack in whitebox:
            series = [(eps, _acc(lb, eps, attack, defense)) for eps in lb.eps_list]
            series = [(eps, acc) for eps, acc in series if acc is not None]
            for (low, acc_low), (high, acc_high) in zip(series, series[1:]):
                if acc_high > acc_low + TOLERANCE:
                    found.append(f"{attack}: robust accuracy rises from {100 * acc_low:.1f} % at {fmt_eps(low)} "
                                 f"to {100 * acc_high:.1f} % at {fmt_eps(high)}")
            for eps, acc in series:
                if eps >= large_eps and acc > NEAR_ZERO:
                    found.append(f"{attack} leaves {100 * acc:.1f} % robust at the large eps {fmt_eps(eps)}")
        found += _steps_warnings(lb, setting, defense)
        warnings[defense] = found
    return warnings


def certificate_checks(lb: Leaderboard) -> dict[str, dict[float, list[str] | None]]:
    """Per certified defense and eps of its certificate, the attacks that break it, each as one sentence: an attack
    at that eps or a smaller one (whose ball lies inside) that turns a certified point wrong (right clean, wrong
    adversarial). An empty list: every attack with per-example outcomes there respected it; None: none had them.
    A worst case below the certified accuracy is such a break, so it needs no rule of its own."""
    checks: dict[str, dict[float, list[str] | None]] = {}
    for (defense, certified_eps), certified in lb.certificates.items():
        broken: dict[tuple[str, float], np.ndarray] = {}  # (attack, eps) -> the certified points it breaks, any seed
        for (eps, attack, name, _), run in lb.runs.items():
            if name == defense and attack in lb.attacks and eps <= certified_eps and run.outcome is not None:
                clean, adv = (np.asarray(o, dtype=bool) for o in run.outcome)  # ~ on 0/1 ints is no not
                if len(clean) != len(certified):
                    raise ValueError(f"the certificate of {defense!r} at {fmt_eps(certified_eps)} covers "
                                     f"{len(certified)} points, the outcomes of {attack} at {fmt_eps(eps)} "
                                     f"{len(clean)}")
                broken[attack, eps] = broken.get((attack, eps), False) | (certified & clean & ~adv)
        checks.setdefault(defense, {})[certified_eps] = None if not broken else [
            f"attack {attack} at {fmt_eps(eps)} turns {plural(int(points.sum()), 'point')} wrong that IBP certifies "
            f"at {fmt_eps(certified_eps)}: an eps or evaluation bug" for (attack, eps), points in broken.items()
            if points.any()]
    return checks


def _steps_warnings(lb: Leaderboard, setting: dict, defense: str) -> list[str]:
    """White-box attacks that differ only in ``steps``: more steps must not leave more points robust."""
    families: dict[str, list[tuple[int, str]]] = {}
    for attack in setting.get("attacks", []):
        params = dict(attack.get("params") or {})
        steps = params.pop("steps", None)
        if attack.get("kind") in WHITEBOX_KINDS and isinstance(steps, int):
            family = repr((attack.get("class"), attack.get("kind"), sorted(params.items())))
            families.setdefault(family, []).append((steps, attack["name"]))
    found = []
    for members in families.values():
        members.sort()
        for eps in lb.eps_list:
            series = [(steps, name, _acc(lb, eps, name, defense)) for steps, name in members]
            series = [item for item in series if item[2] is not None]
            for (few, name_few, acc_few), (many, name_many, acc_many) in zip(series, series[1:]):
                if many > few and acc_many > acc_few + TOLERANCE:
                    found.append(f"at {fmt_eps(eps)} {name_many} ({many} steps) leaves more robust "
                                 f"({100 * acc_many:.1f} %) than {name_few} ({few} steps, {100 * acc_few:.1f} %)")
    return found


def _acc(lb: Leaderboard, eps: float, attack: str, defense: str) -> float | None:
    stat = lb.robust.get((eps, attack, defense))
    return stat.mean if stat is not None and stat.has_value else None


def _best(lb: Leaderboard, eps: float, attacks: list[str], defense: str) -> tuple[str, float] | None:
    """The attack (of ``attacks``) with the lowest robust accuracy at ``eps``, and that accuracy."""
    results = [(attack, _acc(lb, eps, attack, defense)) for attack in attacks]
    results = [(attack, acc) for attack, acc in results if acc is not None]
    return min(results, key=lambda item: item[1]) if results else None
