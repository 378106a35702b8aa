"""Per-example worst case, one ranking per threat model, and the per-example file, on small hand-made outcome tables."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from robustbench_ens.leaderboard import build, write_leaderboard
from robustbench_ens.leaderboard.format import canonical_eps
from robustbench_ens.leaderboard.per_example import COLUMNS, read_per_example

E2, E4, E8 = 2 / 255, 4 / 255, 8 / 255
N = 10
KINDS = {"Ens": "transfer", "CWA": "transfer", "PGD": "white-box", "Square": "black-box"}
SETTING = {"suite": "toy", "threat": {"norm": "Linf", "headline_eps": E8},
           "attacks": [{"name": name, "kind": kind, **({"defenses": ["d"]} if name == "PGD" else {})}
                       for name, kind in KINDS.items()]}  # PGD runs on d only; Square ran nowhere


def _bits(text: str) -> np.ndarray:
    return np.array([c == "1" for c in text])


def _table(rows: dict) -> tuple[pd.DataFrame, dict]:
    """Cells and outcomes from {(attack, eps, defense): (clean_correct, adv_correct) as 0/1 strings; None: failed}."""
    cells, outcomes = [], {}
    for i, ((attack, eps, defense), bits) in enumerate(rows.items()):
        cell_id = f"cell{i}"
        ok = bits is not None
        clean, adv = (_bits(bits[0]), _bits(bits[1])) if ok else (None, None)
        cells.append({"cell_id": cell_id, "suite": "toy", "attack": attack, "eps": eps, "defense": defense,
                      "seed": 0, "n": N, "status": "ok" if ok else "failed",
                      "clean_acc": clean.mean() if ok else np.nan,
                      "robust_acc": (clean & adv).mean() if ok else np.nan,
                      "success_rate": 1 - (clean & adv).sum() / clean.sum() if ok else np.nan})
        if ok:
            outcomes[cell_id] = (clean, adv)
    return pd.DataFrame(cells), outcomes


CLEAN_D = "1111111110"  # the defense gets 9 of 10 points right
ROWS = {
    ("clean", 0.0, "d"): (CLEAN_D, CLEAN_D),
    ("Ens", E4, "d"): (CLEAN_D, "0111111110"),     # breaks point 0 at 4/255 only
    ("Ens", E8, "d"): (CLEAN_D, "1100111110"),     # breaks points 2, 3
    ("CWA", E8, "d"): (CLEAN_D, "1111001110"),     # breaks points 4, 5
    ("PGD", E8, "d"): (CLEAN_D, "1111110000"),     # breaks points 6..8 (9 is wrong clean)
    ("clean", 0.0, "e"): ("1111111111", "1111111111"),
    ("Ens", E4, "e"): ("1111111111", "1111111111"),
    ("Ens", E8, "e"): ("1111111111", "1111111100"),
    ("CWA", E8, "e"): None,                         # failed
}


def test_a_point_is_robust_only_if_every_attack_at_this_eps_or_a_smaller_one_fails():
    cells, outcomes = _table(ROWS)
    lb = build(cells, SETTING, outcomes)
    d = {r["defense"]: r for r in lb.defense_ranking}["d"]
    at8 = d["by_eps"]["8/255"]
    # robust at 8/255: right clean (0..8) and untouched by Ens@4, Ens@8, CWA@8, PGD@8 -> only point 1
    assert at8["robust_acc"] == pytest.approx(0.1)
    assert at8["complete"] and at8["n_attacks"] == 4
    # the strongest single attack is PGD (6 of 10 robust), far above the union
    assert at8["strongest_attack"] == "PGD" and at8["single_attack_acc"] == pytest.approx(0.6)
    # transfer only: Ens@4 breaks 0, Ens@8 breaks 2, 3, CWA@8 breaks 4, 5 -> points 1, 6, 7, 8 robust
    transfer = {r["defense"]: r for r in lb.rankings["transfer"]}["d"]["by_eps"]["8/255"]
    assert transfer["robust_acc"] == pytest.approx(0.4)
    # point 0, broken only by the attack at the smaller eps 4/255, counts as broken at 8/255: without it 0.5
    cells_8, outcomes_8 = _table({k: v for k, v in ROWS.items() if k != ("Ens", E4, "d")})
    without_4 = build(cells_8, SETTING, outcomes_8)
    assert {r["defense"]: r for r in without_4.rankings["transfer"]}["d"]["by_eps"]["8/255"]["robust_acc"] \
        == pytest.approx(0.5)
    # at 4/255 the union is Ens@4 alone
    assert d["by_eps"]["4/255"]["robust_acc"] == pytest.approx(0.8)


def test_a_failed_cell_leaves_an_upper_bound_ranked_after_complete_ones():
    cells, outcomes = _table(ROWS)
    lb = build(cells, SETTING, outcomes)
    e = {r["defense"]: r for r in lb.defense_ranking}["e"]
    assert e["by_eps"]["8/255"]["robust_acc"] == pytest.approx(0.8)
    assert not e["complete"] and e["failed_attacks"] == ["CWA"]
    assert [r["defense"] for r in lb.defense_ranking] == ["d", "e"], "incomplete 80 % ranks after complete 10 %"


def test_a_defense_with_no_attack_of_a_kind_is_not_evaluated_never_a_number(tmp_path):
    cells, outcomes = _table(ROWS)
    lb = build(cells, SETTING, outcomes)
    whitebox = {r["defense"]: r for r in lb.rankings["white-box"]}
    assert whitebox["d"]["evaluated"] and whitebox["d"]["worst_robust_acc"] == pytest.approx(0.6)  # PGD alone
    assert not whitebox["e"]["evaluated"] and np.isnan(whitebox["e"]["worst_robust_acc"])
    assert whitebox["e"]["rank"] is None
    assert "black-box" not in lb.rankings, "Square ran nowhere: no black-box ranking"
    write_leaderboard(cells, SETTING, tmp_path, outcomes)
    page = (tmp_path / "README.md").read_text(encoding="utf-8")
    summary = page[page.index("## Rankings by threat model"):page.index("### Ranking under")]
    row_e = next(line for line in summary.splitlines() if line.startswith("| e |"))
    assert row_e == "| e | 100.0 | ≤ 80.0 | not evaluated | ≤ 80.0 |"  # transfer, white-box (not run on e), overall
    entries = {e["name"]: e for e in json.loads((tmp_path / "entries.json").read_text())}
    assert entries["e"]["worst_case_by_threat_model"] == {"transfer": pytest.approx(0.8), "black-box": None,
                                                          "white-box": None}
    # one robust-vs-eps plot per threat model that ran, each shown under its ranking
    for threat in ("transfer", "white-box"):
        assert (tmp_path / f"robust_vs_eps_{threat}.png").read_bytes().startswith(b"\x89PNG")
        assert f"](robust_vs_eps_{threat}.png)" in page[page.index(f"### Ranking under {threat}"):]
    assert (tmp_path / "robust_vs_eps.png").is_file() and not (tmp_path / "robust_vs_eps_overall.png").exists()
    defenses = pd.read_csv(tmp_path / "defenses.csv").set_index("defense")
    assert np.isnan(defenses.loc["e", "white-box:worst_robust_acc@8/255"])
    assert defenses.loc["d", "white-box:worst_robust_acc@8/255"] == pytest.approx(0.6)


def test_cells_without_outcomes_bound_the_worst_case_and_mark_it():
    cells, outcomes = _table(ROWS)
    without = {k: v for k, v in outcomes.items() if k != cells.loc[cells["attack"] == "PGD", "cell_id"].item()}
    d = {r["defense"]: r for r in build(cells, SETTING, without).defense_ranking}["d"]["by_eps"]["8/255"]
    # the transfer union leaves points 1, 6, 7, 8 (0.4); PGD without outcomes bounds it by its own 0.6
    assert d["robust_acc"] == pytest.approx(0.4) and not d["complete"] and d["unpaired_attacks"] == ["PGD"]
    one = build(cells[cells["attack"].isin(["clean", "PGD"])], SETTING, {})  # one attack: its number is exact
    only = {r["defense"]: r for r in one.defense_ranking}["d"]["by_eps"]["8/255"]
    assert only["robust_acc"] == pytest.approx(0.6) and only["complete"]


def test_seeds_are_taken_separately_then_averaged():
    cells, outcomes = _table(ROWS)
    again = cells.copy()
    again["seed"], again["cell_id"] = 1, again["cell_id"] + "-s1"
    moved = {f"{k}-s1": (clean, np.roll(adv, 1)) for k, (clean, adv) in outcomes.items()}
    lb = build(pd.concat([cells, again]), SETTING, {**outcomes, **moved})
    d = {r["defense"]: r for r in lb.defense_ranking}["d"]["by_eps"]["8/255"]
    per_seed = []
    for table in (outcomes, moved):
        robust = np.ones(N, bool)
        for key, (clean, adv) in table.items():
            if key.split("-")[0] in set(cells.loc[cells["defense"] == "d", "cell_id"]):
                robust &= clean & adv
        per_seed.append(robust.mean())
    assert d["robust_acc"] == pytest.approx(np.mean(per_seed))
    assert d["robust_acc_std"] == pytest.approx(np.std(per_seed, ddof=1))


def test_the_per_example_file_reproduces_every_ranking(tmp_path):
    cells, outcomes = _table(ROWS)
    write_leaderboard(cells, SETTING, tmp_path, outcomes)
    frame = read_per_example(tmp_path / "per_example.csv.gz")
    assert list(frame.columns) == COLUMNS
    assert set(frame["clean_correct"]) <= {0, 1} and set(frame["adv_correct"]) <= {0, 1}
    assert len(frame) == N * len(outcomes), "one row per point per cell; the failed cell has none"
    assert (frame.groupby(["defense", "attack", "eps", "seed"])["index"].apply(list)
            .map(lambda idx: idx == list(range(N)))).all()
    clean_rows = frame[frame["attack"] == "clean"]
    assert (clean_rows["eps"] == 0).all() and (clean_rows["adv_correct"] == clean_rows["clean_correct"]).all()

    # recompute the rankings from the file alone, with the rule the page states
    defenses = pd.read_csv(tmp_path / "defenses.csv").set_index("defense")
    kinds = {"overall": set(KINDS.values()), "transfer": {"transfer"}, "white-box": {"white-box"}}
    for threat, wanted in kinds.items():
        for defense, rows in frame.groupby("defense"):
            for label, eps in (("4/255", E4), ("8/255", E8)):
                union = rows[rows["attack"].map(KINDS).isin(wanted) & (rows["eps"] <= eps + 1e-12)]
                column = f"worst_robust_acc@{label}" if threat == "overall" else f"{threat}:worst_robust_acc@{label}"
                expected = defenses.loc[defense, column]
                if union.empty or not (union["eps"].map(canonical_eps) == canonical_eps(eps)).any():
                    assert np.isnan(expected), (threat, defense, label)
                    continue
                clean = rows[rows["attack"] == "clean"].set_index("index")["clean_correct"].astype(bool)
                survived = (union["clean_correct"] & union["adv_correct"]).astype(bool)
                robust = clean & survived.groupby(union["index"]).all().reindex(clean.index, fill_value=True)
                assert robust.mean() == pytest.approx(expected), (threat, defense, label)


def test_the_per_example_file_is_reproducible_bytes(tmp_path):
    cells, outcomes = _table(ROWS)
    write_leaderboard(cells, SETTING, tmp_path / "a", outcomes)
    write_leaderboard(cells, SETTING, tmp_path / "b", outcomes)
    assert (tmp_path / "a" / "per_example.csv.gz").read_bytes() == (tmp_path / "b" / "per_example.csv.gz").read_bytes()


def test_success_intervals_and_paired_tests_are_published(tmp_path):
    cells, outcomes = _table(ROWS)
    write_leaderboard(cells, SETTING, tmp_path, outcomes)
    success = pd.read_csv(tmp_path / "success.csv")
    pgd = success[(success["attack"] == "PGD") & (success["defense"] == "d")].iloc[0]
    assert pgd["n_clean_correct"] == 9 and pgd["n_broken"] == 3 and pgd["success_rate"] == pytest.approx(3 / 9)
    assert pgd["ci_low"] < 3 / 9 < pgd["ci_high"]
    assert pgd["success_all"] == pytest.approx(0.4)  # points 6..9 wrong under the attack, 9 wrong clean too
    paired = pd.read_csv(tmp_path / "paired_tests.csv")
    row = paired[(paired["attack_a"] == "Ens") & (paired["attack_b"] == "CWA") & (paired["defense"] == "d")].iloc[0]
    assert (row["only_a"], row["only_b"]) == (2, 2) and row["p_value"] == pytest.approx(1.0)
    assert row["verdict"] == "no significant difference"
    assert set(paired["attack_a"]) | set(paired["attack_b"]) == {"Ens", "CWA"}, "transfer attacks only"
    page = (tmp_path / "README.md").read_text(encoding="utf-8")
    assert "## Transfer attacks compared" in page and "no significant difference" in page
    attacks = pd.read_csv(tmp_path / "attacks.csv").set_index("attack")
    assert attacks.loc["PGD", "ci_low@8/255"] <= attacks.loc["PGD", "mean_success_rate"] \
        <= attacks.loc["PGD", "ci_high@8/255"]


def test_pairs_are_also_compared_over_each_group_of_defenses(tmp_path):
    cells, outcomes = _table(ROWS)
    setting = {**SETTING, "defenses": [{"name": "d", "group": "robust"}, {"name": "e", "group": "standard"}]}
    write_leaderboard(cells, setting, tmp_path, outcomes)
    paired = pd.read_csv(tmp_path / "paired_tests.csv")
    pooled = paired[paired["test"].str.startswith("paired bootstrap")].set_index("defense")
    assert set(pooled.index) == {"all", "group: robust"}, "CWA failed on e: no pair in the group 'standard'"
    assert pooled.loc["group: robust", "difference"] == pytest.approx(0.0)  # 2 of 9 points each on d
    assert pooled.loc["group: robust", "verdict"] == "no significant difference"


def test_a_black_box_attack_has_its_own_ranking_and_joins_the_overall_one():
    rows = {**ROWS, ("Square", E8, "d"): (CLEAN_D, "1011111110")}  # breaks point 1, the one the others leave
    cells, outcomes = _table(rows)
    setting = {**SETTING, "attacks": [{**a, "defenses": ["d"]} if a["name"] == "Square" else a
                                      for a in SETTING["attacks"]]}
    lb = build(cells, setting, outcomes)
    assert list(lb.rankings) == ["overall", "transfer", "black-box", "white-box"]
    blackbox = {r["defense"]: r for r in lb.rankings["black-box"]}
    assert blackbox["d"]["worst_robust_acc"] == pytest.approx(0.8) and blackbox["d"]["complete"]
    assert not blackbox["e"]["evaluated"], "Square ran on d only"
    overall = {r["defense"]: r for r in lb.defense_ranking}["d"]["by_eps"]["8/255"]
    assert overall["robust_acc"] == pytest.approx(0.0), "the union with Square leaves no point of d"


def test_a_randomised_defense_is_ranked_by_its_strongest_single_attack_not_a_union_over_draws(tmp_path):
    """Each cell evaluates a random defense on a fresh draw: a union over cells would count its own noise."""
    rows = {("clean", 0.0, "r"): ("1111111110", "1111111110"),
            ("Ens", E8, "r"): ("1111111110", "0011111110"),   # 7 of 10 robust in this draw
            ("CWA", E8, "r"): ("1111111100", "1111001100"),   # 6 of 10: other points, and another clean draw
            ("PGD", E8, "r"): None}
    setting = {**SETTING, "defenses": [{"name": "r", "randomised": True}],
               "attacks": [{"name": n, "kind": "transfer"} for n in ("Ens", "CWA")]}
    cells, outcomes = _table({k: v for k, v in rows.items() if v is not None})
    lb = build(cells, setting, outcomes)
    at8 = lb.defense_ranking[0]["by_eps"]["8/255"]
    assert at8["per_attack"] and at8["robust_acc"] == pytest.approx(0.6), "CWA's 6 of 10, not the union's 3"
    assert at8["complete"]
    write_leaderboard(cells, setting, tmp_path, outcomes)
    page = (tmp_path / "README.md").read_text(encoding="utf-8")
    row = next(line for line in page.splitlines() if line.startswith("| 1 | [r](#defense-r) |"))
    assert "| 60.0 |" in row and "randomised: strongest single attack" in row
    assert "r: the forward pass is random and each cell evaluates it on a fresh draw" in page
