"""Per-example worst case: a test point is robust only if every attack fails on it.

This is how RobustBench, AutoAttack and the DVERGE paper count, and it can be far below the
best single attack's robust accuracy. At a budget eps, for one defense and one seed, a
point counts as robust when

* the defense classifies it correctly clean (the clean row, and the clean pass of every cell), and
* no attack of the threat model that ran at eps **or at any smaller eps** turns it wrong
  (an example inside the smaller ball lies inside the larger one too).

A defense whose forward pass is random (the CrossMax self-ensemble) is the exception. Each cell
evaluates it on a fresh draw, so a union over cells would also count every point that some draw
gets wrong with no attack at all: for the cifar10 suite's self-ensemble, 76 % of the points are
right in one draw and 40 % in each of 16 (``leaderboards/cifar10/self_ensemble``). Its worst case
is therefore the lowest robust accuracy of one attack of the union (``per_attack`` is True), as
RobustBench reports randomised defenses; the page says so.

The seeds' values are then averaged (± their sample standard deviation), as for every
other number of the leaderboard. The worst case is only an upper bound (``complete`` is
False, and the page marks it ``≤``) when an attack of the union failed, did not run, or
finished without per-example outcomes (cells of a store written before outcomes were kept);
such a cell still bounds the worst case by its own robust accuracy. A defense on which no
attack of the threat model ran at eps is *not evaluated* there, never given a number.

Threat models (:data:`THREAT_MODELS`): transfer (crafted on surrogates, never querying the
defense: what DVERGE claims), black-box (queries of the defense's outputs: Square),
white-box (gradients of the defense or of its adaptive view: what RobustBench ranks), and
the overall worst case over all of them.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from .format import fmt_eps

if TYPE_CHECKING:
    from .tables import Leaderboard

NAN = float("nan")
THREAT_MODELS = {  # name -> the attack kinds (whitebox.attack_kind) whose union it takes
    "overall": ("transfer", "black-box", "white-box", "adaptive"),
    "transfer": ("transfer",),
    "black-box": ("black-box",),
    "white-box": ("white-box", "adaptive"),
}
THREAT_TITLES = {"overall": "all attacks", "transfer": "transfer attacks (crafted on surrogates)",
                 "black-box": "query-based black-box attacks", "white-box": "white-box and adaptive attacks"}


def union_attacks(lb: Leaderboard, eps: float, defense: str, kinds: tuple[str, ...]) -> list[tuple[float, str]]:
    """The (eps, attack) pairs whose union gives ``defense``'s worst case at ``eps``: every attack of ``kinds`` that
    runs on it at ``eps`` or at a smaller eps."""
    return [(e, a) for e in lb.eps_list if e <= eps for a in lb.attacks_at.get(e, [])
            if lb.kind(a) in kinds and lb.runs_on(a, defense)]


def worst_case(lb: Leaderboard, eps: float, defense: str, kinds: tuple[str, ...]) -> dict[str, Any]:
    """``defense``'s per-example worst case at ``eps`` over the attacks of ``kinds``, with what it rests on.

    Keys: ``robust_acc`` and ``robust_acc_std`` (over seeds), ``complete``, ``evaluated``, the attacks of the union
    that ``failed`` (every seed), are ``partial`` (some seeds failed or are absent), ``missing`` (no cell) or
    ``unpaired`` (no per-example outcomes), ``n_attacks`` in the union, and the best single attack at ``eps``
    (``strongest_attack``, ``single_attack_acc``, ``single_attack_acc_std``) as the per-attack matrix gives it.
    """
    pairs = union_attacks(lb, eps, defense, kinds)
    record = {"eps": eps, "eps_label": fmt_eps(eps), "robust_acc": NAN, "robust_acc_std": NAN, "complete": False,
              "per_attack": defense in lb.randomised,
              "evaluated": any(e == eps for e, _ in pairs), "n_attacks": len(pairs), "failed_attacks": [],
              "partial_attacks": [], "missing_attacks": [], "unpaired_attacks": [],
              **_single_attack(lb, eps, defense, kinds)}
    if not record["evaluated"]:
        return record
    seeds = lb.seeds_of(defense)
    statuses = {pair: [lb.run(pair[0], pair[1], defense, seed) for seed in seeds] for pair in pairs}
    for pair, runs in statuses.items():
        label = _label(pair, eps)
        oks = [run is not None and run.ok for run in runs]
        if not any(run is not None for run in runs):
            record["missing_attacks"].append(label)
        elif not any(oks):
            record["failed_attacks"].append(label)
        elif not all(oks):
            record["partial_attacks"].append(label)
        if any(ok and run.outcome is None for ok, run in zip(oks, runs)) and len(pairs) > 1:
            record["unpaired_attacks"].append(label)
    value = _lowest_single if record["per_attack"] else _seed_value
    values = [v for v in (value(lb, defense, seed, [runs[i] for runs in statuses.values()])
                          for i, seed in enumerate(seeds)) if not math.isnan(v)]
    if values:
        record["robust_acc"] = float(np.mean(values))
        record["robust_acc_std"] = float(np.std(values, ddof=1)) if len(values) >= 2 else NAN
    record["complete"] = bool(values) and not any(record[f"{k}_attacks"] for k in
                                                  ("failed", "partial", "missing", "unpaired"))
    return record


def _label(pair: tuple[float, str], eps: float) -> str:
    return pair[1] if pair[0] == eps else f"{pair[1]} @ {fmt_eps(pair[0])}"


def _seed_value(lb: Leaderboard, defense: str, seed, runs: list) -> float:
    """One seed's worst case: the share of points robust to every cell with outcomes, bounded above by the robust
    accuracy of each ok cell without them; NaN when no cell of the union finished ok for this seed."""
    done = [run for run in runs if run is not None and run.ok]
    if not done:
        return NAN
    robust = None
    clean = lb.run(0.0, "clean", defense, seed)
    if clean is not None and clean.ok and clean.outcome is not None:
        robust = clean.outcome[0].copy()
    bound = math.inf
    for run in done:
        if run.outcome is None:
            bound = min(bound, run.robust_acc)
            continue
        clean_correct, adv_correct = run.outcome
        survived = clean_correct & adv_correct
        robust = survived if robust is None else robust & survived
    value = float(robust.mean()) if robust is not None else math.inf
    return min(value, bound)


def _lowest_single(lb: Leaderboard, defense: str, seed, runs: list) -> float:
    """One seed's worst case for a randomised defense: the lowest robust accuracy of one finished cell (NaN when
    none finished ok)."""
    done = [run.robust_acc for run in runs if run is not None and run.ok]
    return min(done) if done else NAN


def _single_attack(lb: Leaderboard, eps: float, defense: str, kinds: tuple[str, ...]) -> dict[str, Any]:
    """The lowest seed-mean robust accuracy of one attack of ``kinds`` at ``eps`` (the per-attack matrix's minimum)."""
    valued = {a: s for a in lb.attacks_at.get(eps, []) if lb.kind(a) in kinds and lb.runs_on(a, defense)
              and (s := lb.robust.get((eps, a, defense))) is not None and s.has_value}
    if not valued:
        return {"strongest_attack": None, "single_attack_acc": NAN, "single_attack_acc_std": NAN}
    lowest = min(s.mean for s in valued.values())
    tied = [a for a, s in valued.items() if math.isclose(s.mean, lowest, abs_tol=1e-12)]
    return {"strongest_attack": ", ".join(tied), "single_attack_acc": lowest,
            "single_attack_acc_std": valued[tied[0]].std}
