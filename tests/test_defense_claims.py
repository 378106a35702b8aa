"""scripts/defense_claims.py: per-example worst cases recomputed per threat model, paired tests between defenses."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from robustbench_ens.leaderboard.per_example import per_example_bytes

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import defense_claims  # noqa: E402

N = 20
KINDS = {"SGM@three": "transfer", "DI@three": "transfer", "PGD": "white-box"}


def _rows(defense, attack, eps, clean, adv):
    return pd.DataFrame({"defense": defense, "attack": attack, "eps": repr(float(eps)), "seed": 0,
                         "index": np.arange(N), "clean_correct": np.asarray(clean, np.uint8),
                         "adv_correct": np.asarray(adv, np.uint8)})


def _outcomes():
    """A (DVERGE-ours) is correct on 18 points; SGM breaks 2 of them at 0.01, DI 2 others at 0.03 (so at 0.03 its
    transfer worst case is 18 - 2 - 2 = 14 points, the 0.01 break counting at 0.03 too); B (ADP-ours) is correct on
    all 20 and every transfer attack breaks 12 of them. White-box PGD breaks every point of both at 0.03."""
    ones, parts = np.ones(N, bool), []
    clean_a = ones.copy()
    clean_a[[0, 1]] = False
    sgm_a, di_a = clean_a.copy(), clean_a.copy()
    sgm_a[[2, 3]] = False
    di_a[[4, 5]] = False
    parts += [_rows("DVERGE-ours-3xRN20", "clean", 0, clean_a, clean_a),
              _rows("DVERGE-ours-3xRN20", "SGM@three", 0.01, clean_a, sgm_a),
              _rows("DVERGE-ours-3xRN20", "DI@three", 0.03, clean_a, di_a),
              _rows("DVERGE-ours-3xRN20", "PGD", 0.03, clean_a, np.zeros(N))]
    held_b = ones.copy()
    held_b[8:] = False  # 12 broken: points 8..19
    parts += [_rows("ADP-ours-3xRN20", "clean", 0, ones, ones),
              _rows("ADP-ours-3xRN20", "SGM@three", 0.01, ones, held_b),
              _rows("ADP-ours-3xRN20", "DI@three", 0.03, ones, held_b),
              _rows("ADP-ours-3xRN20", "PGD", 0.03, ones, np.zeros(N))]
    return pd.concat(parts, ignore_index=True)


def test_worst_case_per_threat_model_by_hand():
    outcomes = _outcomes()
    at_003 = defense_claims.robust_points(outcomes, KINDS, "DVERGE-ours-3xRN20", 0.03, "transfer")
    assert at_003.sum() == 14 and not at_003[[0, 1, 2, 3, 4, 5]].any()
    assert defense_claims.robust_points(outcomes, KINDS, "DVERGE-ours-3xRN20", 0.01, "transfer").sum() == 16
    assert defense_claims.robust_points(outcomes, KINDS, "DVERGE-ours-3xRN20", 0.03, "white-box").sum() == 0
    assert defense_claims.robust_points(outcomes, KINDS, "DVERGE-ours-3xRN20", 0.01, "white-box") is None


def test_paired_comparison_by_hand():
    rows = defense_claims.claim_rows(_outcomes(), KINDS, defense_claims.CLAIMS)
    assert set(rows["question"]) == {defense_claims.CLAIMS[0][2]}  # only the pair that is present
    row = rows[(rows["threat_model"] == "transfer") & (rows["eps"] == 0.03)].iloc[0]
    # A holds points 6..19 (14), B holds 0..7 (8): only A 6..7 excluded -> A-only = 8..19 (12), B-only = 0..5 (6)
    assert (row["robust_a"], row["robust_b"], row["only_a"], row["only_b"]) == (0.7, 0.4, 12, 6)
    assert row["difference"] == pytest.approx(0.3) and row["ci_low"] < 0.3 < row["ci_high"]
    from scipy.stats import binomtest
    assert row["p_value"] == pytest.approx(binomtest(12, 18, 0.5).pvalue)
    # Holm over 3 rows: at 0.01 A-only 12, B-only 4 (p 0.077, x3), at 0.03 p 0.238 (second smallest, x2), white-box 1
    assert row["p_holm"] == pytest.approx(2 * row["p_value"]) and row["verdict"] == "no significant difference"
    white = rows[rows["threat_model"] == "white-box"].iloc[0]
    assert (white["robust_a"], white["robust_b"], white["p_value"]) == (0.0, 0.0, 1.0)
    assert white["verdict"] == "no significant difference"


def _folder(tmp_path, outcomes, transfer_003=0.7):
    (tmp_path / "per_example.csv.gz").write_bytes(per_example_bytes(outcomes))
    (tmp_path / "leaderboard.json").write_text(json.dumps(
        {"setting": {"attacks": [{"name": k, "kind": v} for k, v in KINDS.items()]}}))
    pd.DataFrame([{"defense": "DVERGE-ours-3xRN20", "threat_model": "overall", "transfer:worst_robust_acc@0.01": 0.8,
                   "transfer:worst_robust_acc@0.03": transfer_003, "white-box:worst_robust_acc@0.03": 0.0},
                  {"defense": "ADP-ours-3xRN20", "threat_model": "overall", "transfer:worst_robust_acc@0.01": 0.4,
                   "transfer:worst_robust_acc@0.03": 0.4, "white-box:worst_robust_acc@0.03": 0.0}]).to_csv(
        tmp_path / "defenses.csv", index=False)


def test_the_script_writes_its_report_and_checks_the_published_rankings(tmp_path, capsys):
    _folder(tmp_path, _outcomes())
    assert defense_claims.main([str(tmp_path)]) == 0
    report = (tmp_path / "defense_claims.md").read_text()
    assert "| transfer | 0.03 | DVERGE-ours-3xRN20 | ADP-ours-3xRN20 | 70.0 | 40.0 | +30.0 [" in report
    assert len(pd.read_csv(tmp_path / "defense_claims.csv")) == 3
    _folder(tmp_path, _outcomes(), transfer_003=0.65)  # a ranking that disagrees with its own per-example file
    assert defense_claims.main([str(tmp_path)]) == 2
    assert "recomputed 0.7000, defenses.csv says 0.6500" in capsys.readouterr().err
    assert defense_claims.main([str(tmp_path), "--pair", "DVERGE-ours-3xRN20", "nobody"]) == 2
    assert "no defense 'nobody'" in capsys.readouterr().err
    assert defense_claims.main([str(tmp_path / "nowhere")]) == 2
    assert "run the suite first" in capsys.readouterr().err
