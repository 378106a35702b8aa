"""Answer the ensemble-defense papers' claims from a leaderboard's per-example outcomes, with paired tests.

The claims (each paper's own): DVERGE (Yang et al., NeurIPS 2020) holds more transfer attacks than the ensemble
defenses before it, ADP (Pang et al., ICML 2019) and GAL (Kariyappa & Qureshi 2019); TRS (Yang et al., NeurIPS
2021) holds more than DVERGE. And: does each method trained here hold more than the same members fine-tuned on
clean images for the same CPU budget (the control), and do the DVERGE paper's own checkpoints hold more than its
baseline?

For every pair (A, B), threat model and eps, both defenses' per-example worst case is recomputed from the
leaderboard's ``per_example.csv.gz`` (a point is robust when the defense classifies it correctly clean and no attack
of the threat model, at that eps or a smaller one, turns it wrong; attack kinds from ``leaderboard.json``) and
checked against ``defenses.csv``. Reported: A's and B's robust accuracy, A - B with a 95 % paired bootstrap interval
over test points, the exact McNemar p-value on the points only one of them holds, Holm-adjusted over every row of
the report. Writes ``defense_claims.md`` and ``defense_claims.csv`` into the folder::

    python run_all.py --suite dverge_protocol --data ../shared/data/cifar10.npz --models ../shared/models
    python scripts/defense_claims.py leaderboards/dverge_protocol
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from robustbench_ens import atomic  # noqa: E402
from robustbench_ens.leaderboard.format import fmt_eps  # noqa: E402
from robustbench_ens.leaderboard.per_example import FILENAME, read_per_example  # noqa: E402
from robustbench_ens.leaderboard.stats import holm, mcnemar_exact, paired_bootstrap  # noqa: E402
from robustbench_ens.leaderboard.worst_case import THREAT_MODELS  # noqa: E402

# (defense A, defense B, the question): dverge_protocol's names; --pair adds others
CLAIMS = [
    ("DVERGE-ours-3xRN20", "ADP-ours-3xRN20", "DVERGE against ADP (DVERGE's claim), the same budget"),
    ("DVERGE-ours-3xRN20", "GAL-ours-3xRN20", "DVERGE against GAL (DVERGE's claim), the same budget"),
    ("TRS-ours-3xRN20", "DVERGE-ours-3xRN20", "TRS against DVERGE (TRS's claim), the same budget"),
    ("DVERGE-ours-3xRN20", "baseline-ft-3xRN20", "DVERGE against the fine-tuned control, the same budget"),
    ("ADP-ours-3xRN20", "baseline-ft-3xRN20", "ADP against the fine-tuned control, the same budget"),
    ("GAL-ours-3xRN20", "baseline-ft-3xRN20", "GAL against the fine-tuned control, the same budget"),
    ("TRS-ours-3xRN20", "baseline-ft-3xRN20", "TRS against the fine-tuned control, the same budget"),
    ("DVERGE-s0-3xRN20", "baseline-3xRN20", "The DVERGE paper's checkpoints against its baseline (200 epochs each)"),
    ("DVERGE-s0-3xRN20", "DVERGE-ours-3xRN20", "The paper's DVERGE against ours (its budget against ours)"),
]
THREATS = ("transfer", "white-box")


def robust_points(outcomes: pd.DataFrame, kinds: dict[str, str], defense: str, eps: float,
                  threat: str) -> np.ndarray | None:
    """``defense``'s per-example worst case at ``eps`` under ``threat``: a boolean per test point, or None when no
    attack of the threat model ran on it at ``eps``."""
    rows = outcomes[outcomes["defense"] == defense]
    clean = rows[rows["attack"] == "clean"].sort_values("index")
    attacked = rows[(rows["attack"] != "clean") & (rows["eps"].astype(float) <= eps + 1e-12)
                    & rows["attack"].map(lambda a: kinds.get(a) in THREAT_MODELS[threat]).astype(bool)]
    if clean.empty or not (attacked["eps"].astype(float) == eps).any():
        return None
    robust = clean["clean_correct"].to_numpy(bool)
    for _, cell in attacked.groupby(["attack", "eps"]):
        cell = cell.sort_values("index")
        robust = robust & cell["clean_correct"].to_numpy(bool) & cell["adv_correct"].to_numpy(bool)
    return robust


def claim_rows(outcomes: pd.DataFrame, kinds: dict[str, str], claims: list[tuple[str, str, str]]) -> pd.DataFrame:
    """One row per claim, threat model and eps where both defenses were attacked; p-values Holm-adjusted over all."""
    rows = []
    for a, b, question in claims:
        for threat in THREATS:
            for eps in sorted(float(e) for e in outcomes["eps"].unique() if float(e) > 0):
                robust_a, robust_b = (robust_points(outcomes, kinds, d, eps, threat) for d in (a, b))
                if robust_a is None or robust_b is None:
                    continue
                if len(robust_a) != len(robust_b):
                    raise ValueError(f"{a} and {b} were evaluated on different points at {fmt_eps(eps)}")
                boot = paired_bootstrap(robust_a[None], robust_b[None], np.ones((1, len(robust_a)), bool))
                rows.append({"question": question, "threat_model": threat, "eps": eps, "defense_a": a,
                             "defense_b": b, "n": len(robust_a), "robust_a": robust_a.mean(),
                             "robust_b": robust_b.mean(), "difference": boot["difference"], "ci_low": boot["ci_low"],
                             "ci_high": boot["ci_high"], "only_a": int((robust_a & ~robust_b).sum()),
                             "only_b": int((robust_b & ~robust_a).sum()),
                             "p_value": mcnemar_exact((robust_a & ~robust_b).sum(), (robust_b & ~robust_a).sum())})
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    frame["p_holm"] = holm(frame["p_value"].to_numpy())
    frame["verdict"] = [f"{r.defense_a} more robust" if r.p_holm < 0.05 and r.difference > 0 else
                        f"{r.defense_b} more robust" if r.p_holm < 0.05 and r.difference < 0 else
                        "no significant difference" for r in frame.itertuples()]
    return frame


def check_against_rankings(rows: pd.DataFrame, defenses: pd.DataFrame, kinds: dict[str, str]) -> None:
    """Every recomputed worst case must equal the one the leaderboard published (defenses.csv: the overall ranking,
    with a ``<threat>:`` column per threat model where the suite has attacks of several kinds)."""
    overall = defenses[defenses["threat_model"] == "overall"].set_index("defense")
    for r in rows.itertuples():
        column = f"{r.threat_model}:worst_robust_acc@{fmt_eps(r.eps)}"
        if column not in overall and all(kind in THREAT_MODELS[r.threat_model] for kind in kinds.values()):
            column = f"worst_robust_acc@{fmt_eps(r.eps)}"  # one threat model: the overall ranking is it
        for defense, value in ((r.defense_a, r.robust_a), (r.defense_b, r.robust_b)):
            expected = float(overall.loc[defense, column])
            if not np.isclose(expected, value, atol=1e-6):
                raise ValueError(f"{defense} {r.threat_model} at {fmt_eps(r.eps)}: recomputed {value:.4f}, "
                                 f"defenses.csv says {expected:.4f}")


def report(rows: pd.DataFrame, source: Path) -> str:
    """defense_claims.md: one table per question."""
    out = ["# Defense claims, tested on the same points", "",
           f"Generated by `scripts/defense_claims.py` from `{source.name}/{FILENAME}` (see that folder's README.md for "
           "the setting: data, n, attacks, models, hardware). Robust accuracy is the per-example worst case of the "
           "threat model (a point counts only if the defense classifies it correctly clean and every attack of the "
           "threat model at that eps or a smaller one fails on it); the difference is A minus B in points, with a "
           "95 % paired bootstrap interval over test points; p: the exact McNemar test on the points only one of "
           "the two holds, Holm-adjusted over every row of this page. A verdict names the more robust defense only "
           "where the adjusted p-value is below 0.05.", ""]
    for question, part in rows.groupby("question", sort=False):
        out += [f"## {question}", "", "| threat model | eps | A | B | A (%) | B (%) | A - B (points) [95 %] | only A "
                "| only B | p (Holm) | verdict |", "|---|---|---|---|---:|---:|---:|---:|---:|---:|---|"]
        for r in part.itertuples():
            p = "< 0.001" if r.p_holm < 0.001 else f"{r.p_holm:.3f}"
            out.append(f"| {r.threat_model} | {fmt_eps(r.eps)} | {r.defense_a} | {r.defense_b} | "
                       f"{100 * r.robust_a:.1f} | {100 * r.robust_b:.1f} | {100 * r.difference:+.1f} "
                       f"[{100 * r.ci_low:+.1f}, {100 * r.ci_high:+.1f}] | {r.only_a} | {r.only_b} | {p} | "
                       f"{r.verdict} |")
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="Writes defense_claims.csv and defense_claims.md into the leaderboard "
                                            "folder, replacing any there.")
    parser.add_argument("leaderboard", type=Path, help="a leaderboard folder with per_example.csv.gz")
    parser.add_argument("--pair", nargs=2, action="append", default=[], metavar=("A", "B"),
                        help="also compare defense A with defense B (repeatable)")
    args = parser.parse_args(argv)
    files = [args.leaderboard / name for name in (FILENAME, "leaderboard.json", "defenses.csv")]
    if missing := [f.name for f in files if not f.is_file()]:
        print(f"error: {args.leaderboard} has no {', '.join(missing)}: run the suite first", file=sys.stderr)
        return 2
    outcomes = read_per_example(files[0])
    if outcomes["seed"].nunique() > 1:  # the worst case is per seed; the first seed's is compared
        outcomes = outcomes[outcomes["seed"] == sorted(outcomes["seed"].unique())[0]]
    kinds = {a["name"]: a["kind"] for a in json.loads(files[1].read_text())["setting"]["attacks"]}
    present = set(outcomes["defense"])
    claims = [c for c in CLAIMS if c[0] in present and c[1] in present]
    for a, b in args.pair:
        if unknown := [d for d in (a, b) if d not in present]:
            print(f"error: no defense {', '.join(map(repr, unknown))} in {args.leaderboard} "
                  f"(it has: {', '.join(sorted(present))})", file=sys.stderr)
            return 2
        claims.append((a, b, f"{a} against {b}"))
    rows = claim_rows(outcomes, kinds, claims)
    if rows.empty:
        print(f"error: none of the compared defenses were attacked in {args.leaderboard}", file=sys.stderr)
        return 2
    try:
        check_against_rankings(rows, pd.read_csv(files[2]), kinds)
    except (ValueError, KeyError) as error:
        print(f"error: {args.leaderboard}'s files disagree: {error}", file=sys.stderr)
        return 2
    atomic.write_text(args.leaderboard / "defense_claims.csv", rows.to_csv(index=False, lineterminator="\n"))
    atomic.write_text(args.leaderboard / "defense_claims.md", report(rows, args.leaderboard) + "\n")
    print(f"{len(rows)} comparisons -> {args.leaderboard / 'defense_claims.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
