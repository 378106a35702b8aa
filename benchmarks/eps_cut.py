"""What running some transfer attacks at the headline eps only would save, and which worst cases it would change.

A transfer set is crafted once per (attack, eps) for every defense, so a suite's largest stage is its transfer
attacks times their eps. This reads a published leaderboard (its cells, setting and per-example outcomes), drops the
cells of the named attacks at every eps but the headline one, and recomputes each defense's per-example worst case
per threat model and eps exactly as the page does (:func:`robustbench_ens.leaderboard.build`). It prints the
recorded crafting and evaluation seconds of the dropped cells (each set once) and, per threat model and eps, how far
the worst cases rise (a dropped attack can only leave more points robust). Nothing is run again: the time is what
the published run recorded, so sets that ran beside other work count at their inflated times.

Example (the costly transfer attacks of the cifar10 suite; ``Ens``, its fusions and ``Ens+DI`` keep every eps)::

    python benchmarks/eps_cut.py leaderboards/cifar10 'CWA@*' 'AdaEA@*' 'SVRE@*' LGV-RN20 I-FGSM-RN20 MBA-RN20
"""
from __future__ import annotations

import argparse
import fnmatch
import sys
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from robustbench_ens.leaderboard.per_example import read_published  # noqa: E402

from robustbench_ens.leaderboard import build  # noqa: E402
from robustbench_ens.leaderboard.format import canonical_eps, fmt_eps  # noqa: E402
from robustbench_ens.suite import CLEAN  # noqa: E402


def dropped(cells: pd.DataFrame, patterns: list[str], headline: float) -> pd.Series:
    """The cells of the attacks matching ``patterns`` (shell-style) at any eps but ``headline``."""
    named = cells["attack"].map(lambda a: a != CLEAN and any(fnmatch.fnmatchcase(a, p) for p in patterns))
    return named & (cells["eps"].map(lambda e: canonical_eps(float(e))) != canonical_eps(headline))


def saved_seconds(cells: pd.DataFrame) -> dict[str, float]:
    """The recorded seconds of ``cells``: crafting (each adversarial set once) and evaluation."""
    ok = cells[cells["status"] == "ok"]
    return {"crafting": float(ok.drop_duplicates("adv_key")["craft_time_s"].sum()),
            "evaluation": float(ok["eval_time_s"].sum())}


def worst_cases(lb) -> pd.DataFrame:
    """One row per (threat model, eps, defense): the per-example worst case (%) the page publishes."""
    return pd.DataFrame([{"threat": threat, "eps": eps, "defense": rec["defense"],
                          "worst": 100 * by["robust_acc"]}
                         for threat, ranking in lb.rankings.items() for rec in ranking
                         for eps, by in rec["by_eps"].items() if by["evaluated"]])


def compare(cells: pd.DataFrame, setting: dict, outcomes: dict, patterns: list[str]) -> tuple[pd.DataFrame, dict]:
    """Per (threat, eps, defense): the worst case of the whole grid and of the cut one, and the seconds cut."""
    full = build(cells, setting, outcomes)
    cut_cells = dropped(cells, patterns, full.headline_eps)
    if not cut_cells.any():
        raise ValueError(f"no cell of {', '.join(patterns)} at an eps other than the headline "
                         f"{fmt_eps(full.headline_eps)}")
    cut = build(cells[~cut_cells].reset_index(drop=True), setting, outcomes)
    both = worst_cases(full).merge(worst_cases(cut), on=["threat", "eps", "defense"], how="left",
                                   suffixes=("_full", "_cut"))
    both["rise"] = both["worst_cut"] - both["worst_full"]
    return both, {"attacks": sorted(set(cells.loc[cut_cells, "attack"])), "cells": int(cut_cells.sum()),
                  **saved_seconds(cells[cut_cells]), "total": saved_seconds(cells),
                  "headline": fmt_eps(full.headline_eps), "randomised": sorted(full.randomised)}


def summary(both: pd.DataFrame, randomised: list[str]) -> pd.DataFrame:
    """Per threat model and eps: the largest and the mean rise, and how many defenses rose, deterministic ones apart
    (a randomised defense's worst case is its strongest single attack, each cell a fresh draw)."""
    rows = []
    for (threat, eps), group in both.groupby(["threat", "eps"], sort=False):
        fixed = group[~group["defense"].isin(randomised)]
        rows.append({"threat model": threat, "eps": eps, "defenses": len(group),
                     "max rise": fixed["rise"].max(), "mean rise": fixed["rise"].mean(),
                     "deterministic defenses that rose": int((fixed["rise"] > 0).sum()),
                     "randomised: rise": ", ".join(f"{r.defense} {r.rise:+.1f}" for r in
                                                   group[group["defense"].isin(randomised)].itertuples()) or "—"})
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("leaderboard", type=Path, help="a published leaderboard folder with per-example outcomes")
    parser.add_argument("attacks", nargs="+", help="the attacks to keep at the headline eps only (shell patterns, "
                                                   "quoted: 'CWA@*')")
    parser.add_argument("--csv", type=Path, default=None, help="also write every (threat, eps, defense) row here")
    args = parser.parse_args(argv)
    try:
        cells, setting, outcomes = read_published(args.leaderboard, for_pages=False)
        both, cut = compare(cells, setting, outcomes, args.attacks)
    except ValueError as error:  # a PublishedError among them
        parser.exit(2, f"error: {error}\n")
    total = cut["total"]["crafting"] + cut["total"]["evaluation"]
    saved = cut["crafting"] + cut["evaluation"]
    print(f"{args.leaderboard}: {', '.join(cut['attacks'])} at the headline eps {cut['headline']} only: "
          f"{cut['cells']} cells fewer, {cut['crafting'] / 60:.1f} min of crafting and {cut['evaluation'] / 60:.1f} "
          f"min of evaluation recorded ({saved / 60:.1f} of the grid's {total / 60:.1f} min)\n")
    print(summary(both, cut["randomised"]).round(1).to_string(index=False))
    if args.csv is not None:
        both.to_csv(args.csv, index=False, float_format="%.2f")
        print(f"\nwrote {args.csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
