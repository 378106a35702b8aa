"""Attack success with 95 % intervals, and paired tests between transfer attacks, from the per-example outcomes.

Two success rates per (eps, attack, defense, seed) cell, each with its Wilson interval
(:func:`.stats.wilson_interval`):

* over the points the defense classified correctly clean (the leaderboard's success rate):
  ``broken = clean_correct & ~adv_correct`` over ``clean_correct``;
* over all points, as TransferAttack reports it: ``~adv_correct`` over every point.

An attack's mean success over defenses gets a paired bootstrap interval over test points
(:func:`.stats.paired_bootstrap` against an attack that breaks nothing). Every pair of
transfer attacks at the same eps and seed is compared on the same points: per defense by the
exact McNemar test on the discordant points, and over all defenses (``defense = "all"``) and
over each group of defenses the suite names (``defense = "group: <name>"``) by the mean
difference in success with a paired bootstrap interval. p-values are Holm-adjusted within each
eps and seed, separately for the per-defense tests and for the pooled ones; a verdict names the
stronger attack only where the adjusted p-value is below 0.05, and says "no significant
difference" otherwise.
"""
from __future__ import annotations

from itertools import combinations
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .stats import holm, paired_bootstrap, paired_success, verdict, wilson_interval

if TYPE_CHECKING:
    from .tables import Leaderboard

POOLED = "all"  # the ``defense`` of a comparison pooled over every defense; over a group: "group: <name>"
GROUP = "group: "
N_BOOT = 2000
BOOT_SEED = 0


def success_frame(lb: Leaderboard) -> pd.DataFrame:
    """success.csv: one row per attacked cell with outcomes: both success rates and their 95 % Wilson intervals."""
    rows = []
    for (eps, attack, defense, seed), run in lb.runs.items():
        if attack == "clean" or not run.ok or run.outcome is None:
            continue
        clean, adv = run.outcome
        n_correct, n_broken, n_wrong = int(clean.sum()), int((clean & ~adv).sum()), int((~adv).sum())
        low, high = wilson_interval(n_broken, n_correct)
        low_all, high_all = wilson_interval(n_wrong, len(adv))
        rows.append({"eps": eps, "attack": attack, "defense": defense, "seed": seed, "n": len(adv),
                     "n_clean_correct": n_correct, "n_broken": n_broken,
                     "success_rate": n_broken / n_correct if n_correct else np.nan, "ci_low": low, "ci_high": high,
                     "n_wrong": n_wrong, "success_all": n_wrong / len(adv), "ci_all_low": low_all,
                     "ci_all_high": high_all})
    return pd.DataFrame(rows)


def _broken(lb: Leaderboard, eps: float, attack: str, defense: str, seed) -> tuple[np.ndarray, np.ndarray] | None:
    """(clean_correct, broken) of a cell with outcomes, else None."""
    run = lb.run(eps, attack, defense, seed)
    if run is None or not run.ok or run.outcome is None:
        return None
    clean, adv = run.outcome
    return clean, clean & ~adv


def mean_success(lb: Leaderboard, eps: float, attack: str, seed, over_all: bool = False) -> dict[str, Any] | None:
    """``attack``'s mean success over the defenses with outcomes at ``eps`` and ``seed``, with a 95 % paired bootstrap
    interval over points; over all points (``~adv_correct``) if ``over_all``. None if no defense has outcomes."""
    cells = [c for d in lb.defenses if (c := lb.run(eps, attack, d, seed)) is not None and c.ok
             and c.outcome is not None and lb.runs_on(attack, d)]
    if not cells:
        return None
    adv = np.stack([c.outcome[1] for c in cells])
    eligible = np.ones_like(adv) if over_all else np.stack([c.outcome[0] for c in cells])
    broken = eligible & ~adv
    result = paired_bootstrap(broken, np.zeros_like(broken), eligible, n_boot=N_BOOT, seed=BOOT_SEED)
    return {"mean": result["mean_a"], "ci_low": result["ci_low"], "ci_high": result["ci_high"],
            "n_defenses": len(cells)}


def paired_frame(lb: Leaderboard) -> pd.DataFrame:
    """paired_tests.csv: every pair of transfer attacks at each eps and seed, per defense and pooled over defenses."""
    rows = []
    for eps in lb.eps_list:
        transfer = [a for a in lb.attacks_at.get(eps, []) if lb.kind(a) == "transfer"]
        for seed in lb.seeds:
            family = [row for a, b in combinations(transfer, 2) for row in _pair_rows(lb, eps, seed, a, b)]
            for pooled in (False, True):
                members = [row for row in family if is_pooled(row["defense"]) == pooled]
                for row, adjusted in zip(members, holm([row["p_value"] for row in members])):
                    row["p_holm"] = float(adjusted)
                    row["verdict"] = verdict(row["difference"], adjusted, row["attack_a"], row["attack_b"])
            rows += family
    return pd.DataFrame(rows)


def is_pooled(defense: str) -> bool:
    """Whether a paired_tests.csv row with this ``defense`` pools several defenses (all, or a group)."""
    return defense == POOLED or defense.startswith(GROUP)


def _pair_rows(lb: Leaderboard, eps: float, seed, a: str, b: str) -> list[dict]:
    rows, stacked = [], {}
    for defense in lb.defenses:
        first, second = _broken(lb, eps, a, defense, seed), _broken(lb, eps, b, defense, seed)
        if first is None or second is None:
            continue
        eligible = first[0] & second[0]
        test = paired_success(first[1], second[1], eligible)
        rows.append({"eps": eps, "seed": seed, "attack_a": a, "attack_b": b, "defense": defense, "n": test["n"],
                     "success_a": test["success_a"], "success_b": test["success_b"],
                     "difference": test["success_a"] - test["success_b"], "ci_low": np.nan, "ci_high": np.nan,
                     "only_a": test["only_a"], "only_b": test["only_b"], "p_value": test["p_value"],
                     "test": "exact McNemar"})
        stacked[defense] = (first[1], second[1], eligible)
    pools = {POOLED: list(stacked)}
    for group in dict.fromkeys(lb.groups.values()):
        pools[GROUP + group] = [d for d in stacked if lb.groups.get(d) == group]
    for name, defenses in pools.items():
        if defenses:
            rows.append(_pooled_row(eps, seed, a, b, name, [stacked[d] for d in defenses]))
    return rows


def _pooled_row(eps: float, seed, a: str, b: str, name: str, parts: list[tuple]) -> dict:
    """The paired bootstrap of ``a`` against ``b`` over the defenses whose (broken_a, broken_b, eligible) are
    ``parts``."""
    broken_a, broken_b, eligible = (np.stack(arrays) for arrays in zip(*parts))
    boot = paired_bootstrap(broken_a, broken_b, eligible, n_boot=N_BOOT, seed=BOOT_SEED)
    return {"eps": eps, "seed": seed, "attack_a": a, "attack_b": b, "defense": name, "n": int(eligible.shape[1]),
            "success_a": boot["mean_a"], "success_b": boot["mean_b"], "difference": boot["difference"],
            "ci_low": boot["ci_low"], "ci_high": boot["ci_high"],
            "only_a": int((broken_a & ~broken_b & eligible).sum()),
            "only_b": int((broken_b & ~broken_a & eligible).sum()), "p_value": boot["p_value"],
            "test": f"paired bootstrap over points ({N_BOOT} resamples, mean over {len(parts)} defenses)"}
