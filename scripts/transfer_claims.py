"""Answer the ensemble-attack papers' claims from a leaderboard's paired tests, per surrogate pool and target group.

The claims (each paper's own): AdaEA (Chen et al., ICCV 2023) transfers better than plain ensemble
MI-FGSM (``Ens``) across architecture families; CWA (Chen et al., ICLR 2024) transfers better to
adversarially trained targets. And: does any of CWA, AdaEA or SVRE beat ``Ens`` by more than chance?

Reads ``paired_tests.csv`` of a leaderboard folder written by a run of a suite with surrogate
pools and defense groups (``cifar10_pools``): for every attack X and pool P, the rows comparing
``X@P`` with ``Ens@P`` pooled over each group of targets and over all of them (mean success
difference, 95 % paired bootstrap interval over test points, Holm-adjusted p-value); and the
same attack on the two pools, and each attack with input transformations (``CWA+DI``) against itself
without them (``CWA``). Writes ``claims.md`` and ``claims.csv`` into that folder::

    python run_all.py --suite cifar10_pools --data ../shared/data/cifar10.npz --models ../shared/models
    python scripts/transfer_claims.py leaderboards/cifar10_pools
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from robustbench_ens import atomic  # noqa: E402
from robustbench_ens.leaderboard.comparisons import GROUP, is_pooled  # noqa: E402
from robustbench_ens.leaderboard.format import fmt_eps  # noqa: E402

BASELINE = "Ens"
CLAIMS = {  # the papers' own claims, asked first
    "AdaEA": "AdaEA against Ens (AdaEA's claim: better transfer across architecture families)",
    "CWA": "CWA against Ens (CWA's claim: better transfer to adversarially trained targets)",
    "SVRE": "SVRE against Ens",
}


def claim_rows(paired: pd.DataFrame, baseline: str = BASELINE) -> pd.DataFrame:
    """Every pooled comparison of an attack with ``baseline`` on the same pool (an attack on surrogates of its own, in
    no pool, is compared with ``baseline`` on every pool), of each attack on the suite's second pool with itself on
    the first, and of an attack with input transformations with itself without them, oriented as
    ``attack - reference`` (positive: the attack breaks more points)."""
    pooled = paired[paired["defense"].map(is_pooled)]
    rows = []
    for row in pooled.itertuples():
        (family_a, _, pool_a), (family_b, _, pool_b) = row.attack_a.partition("@"), row.attack_b.partition("@")
        same_pool = pool_a == pool_b or not (pool_a and pool_b)
        if same_pool and baseline in (family_a, family_b) and family_a != family_b:
            kind, flip = "vs Ens", family_a == baseline  # reported as attack - Ens
        elif family_a == family_b and pool_a != pool_b:
            kind, flip = "pools", True  # the suite's second pool minus its first (attack_a is on the first)
        elif same_pool and _with_transformation(family_a, family_b):
            kind, flip = "transformation", family_b.startswith(family_a + "+")  # reported as X+T - X
        else:
            continue
        attack, reference = (row.attack_b, row.attack_a) if flip else (row.attack_a, row.attack_b)
        sign = -1.0 if flip else 1.0
        low, high = sorted((sign * row.ci_low, sign * row.ci_high))
        verdict = row.verdict if row.verdict == "no significant difference" else \
            f"{attack} stronger" if sign * row.difference > 0 else f"{reference} stronger"
        rows.append({"comparison": kind, "eps": row.eps, "attack": attack, "reference": reference,
                     "targets": row.defense.removeprefix(GROUP), "success_attack": row.success_b if flip else
                     row.success_a, "success_reference": row.success_a if flip else row.success_b,
                     "difference": sign * row.difference, "ci_low": low, "ci_high": high, "p_holm": row.p_holm,
                     "verdict": verdict})
    return pd.DataFrame(rows)


def _with_transformation(family: str, other: str) -> bool:
    """Whether ``family`` is ``other`` with input transformations added (``CWA+DI`` and ``CWA``), either way round."""
    return family.startswith(other + "+") or other.startswith(family + "+")


def _table(rows: pd.DataFrame) -> list[str]:
    lines = ["| eps | attack | reference | targets | attack (%) | reference (%) | difference (points) [95 %] "
             "| p (Holm) | verdict |", "|---|---|---|---|---:|---:|---:|---:|---|"]
    for r in rows.itertuples():
        p = "< 0.001" if r.p_holm < 0.001 else f"{r.p_holm:.3f}"
        lines.append(f"| {fmt_eps(r.eps)} | {r.attack} | {r.reference} | {r.targets} | {100 * r.success_attack:.1f} "
                     f"| {100 * r.success_reference:.1f} | {100 * r.difference:+.1f} [{100 * r.ci_low:+.1f}, "
                     f"{100 * r.ci_high:+.1f}] | {p} | {r.verdict} |")
    return lines


def success_table(success: pd.DataFrame, cells: pd.DataFrame) -> list[str]:
    """Per eps: every transfer attack's success on each target (share of its correct points turned wrong), their mean,
    and the time its adversarial set took to craft, from the leaderboard's success.csv and cells.csv."""
    craft = cells[cells["attack"] != "clean"].groupby(["attack", "eps"])["craft_time_s"].max()
    lines = []
    for eps, at_eps in success.groupby("eps"):
        table = at_eps.pivot_table(index="attack", columns="defense", values="success_rate", aggfunc="mean")
        targets = list(dict.fromkeys(at_eps["defense"]))
        lines += [f"### {fmt_eps(eps)}", "", "| attack | " + " | ".join(targets) + " | mean | crafting (s) |",
                  "|---|" + "---:|" * (len(targets) + 2)]
        for attack in dict.fromkeys(at_eps["attack"]):
            row = table.loc[attack, targets]
            seconds = craft.get((attack, eps))
            lines.append(f"| {attack} | " + " | ".join(f"{100 * v:.1f}" for v in row) + f" | {100 * row.mean():.1f} | "
                         + ("—" if seconds is None or pd.isna(seconds) else f"{seconds:.0f}") + " |")
        lines.append("")
    return lines


def report(rows: pd.DataFrame, source: Path, success: pd.DataFrame | None = None,
           cells: pd.DataFrame | None = None) -> str:
    """claims.md: the success table (when success.csv and cells.csv are given), then one table per question, every
    number from the leaderboard's files."""
    out = ["# Transfer claims, tested per surrogate pool and target group", "",
           f"Generated by `scripts/transfer_claims.py` from `{source.name}/paired_tests.csv` (see that folder's "
           "README.md for the setting: data, n, models, hardware). Success is the share of the points a target "
           "classifies correctly that the attack turns wrong, averaged over the targets of the group; the difference "
           "is attack minus reference, with a 95 % paired bootstrap interval over test points; p-values are "
           "Holm-adjusted over every pooled comparison at that eps. A verdict names the stronger attack only where "
           "the adjusted p-value is below 0.05.", ""]
    if success is not None and cells is not None:
        out += ["## Success on each target, and crafting time", "",
                "Success in %; crafting: the wall time of the attack's adversarial set (all test points, on the "
                "run's hardware, see README.md).", ""] + success_table(success, cells)
    family = rows["attack"].str.partition("@")[0]
    against_ens = rows["comparison"] == "vs Ens"
    questions = [(title, against_ens & (family == name)) for name, title in CLAIMS.items()]
    questions += [(f"{name} against Ens", against_ens & (family == name))
                  for name in sorted(set(family[against_ens]) - set(CLAIMS))]
    questions.append(("Each attack with an input transformation against the same attack without it",
                      rows["comparison"] == "transformation"))
    questions.append(("Each attack on the heterogeneous pool against the same attack on the homogeneous pool",
                      rows["comparison"] == "pools"))
    for title, mask in questions:
        if mask.any():
            out += [f"## {title}", ""] + _table(rows[mask].sort_values(["attack", "eps", "targets"])) + [""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="Writes claims.csv and claims.md into the leaderboard folder, replacing "
                                            "any there.")
    parser.add_argument("leaderboard", type=Path, help="a leaderboard folder with paired_tests.csv")
    args = parser.parse_args(argv)
    source = args.leaderboard / "paired_tests.csv"
    if not source.is_file():
        print(f"error: no {source}: run the suite first (python run_all.py --suite cifar10_pools ...)", file=sys.stderr)
        return 2
    rows = claim_rows(pd.read_csv(source))
    if rows.empty:
        print(f"error: {source} has no pooled comparison with {BASELINE} on a pool: does the suite name [pools]?",
              file=sys.stderr)
        return 2
    atomic.write_text(args.leaderboard / "claims.csv", rows.to_csv(index=False, lineterminator="\n"))
    extra = [args.leaderboard / name for name in ("success.csv", "cells.csv")]
    tables = [pd.read_csv(path) for path in extra] if all(path.is_file() for path in extra) else [None, None]
    atomic.write_text(args.leaderboard / "claims.md", report(rows, args.leaderboard, *tables))
    print(f"wrote {args.leaderboard / 'claims.md'} and claims.csv ({len(rows)} comparisons)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
