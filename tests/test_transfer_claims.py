"""scripts/transfer_claims.py: the pooled comparisons with Ens, and across pools, oriented as attack minus reference."""
from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import transfer_claims  # noqa: E402

E8 = 8 / 255


def _row(a, b, defense, diff, low, high, p, verdict, success_a=0.5):
    return {"eps": E8, "seed": 0, "attack_a": a, "attack_b": b, "defense": defense, "n": 500, "success_a": success_a,
            "success_b": success_a - diff, "difference": diff, "ci_low": low, "ci_high": high, "only_a": 0,
            "only_b": 0, "p_value": p, "p_holm": p, "test": "paired bootstrap", "verdict": verdict}


PAIRED = pd.DataFrame([
    _row("Ens@homo", "AdaEA@homo", "all", 0.03, 0.01, 0.05, 0.001, "Ens@homo stronger"),
    _row("Ens@homo", "CWA@homo", "group: adversarially trained", -0.02, -0.03, -0.01, 0.01, "CWA@homo stronger"),
    _row("Ens@homo", "Ens@hetero", "all", 0.10, 0.08, 0.12, 0.0, "Ens@homo stronger"),
    _row("CWA@homo", "AdaEA@homo", "all", 0.0, -0.01, 0.01, 1.0, "no significant difference"),  # not a claim
    _row("Ens@homo", "AdaEA@homo", "VGG", 0.03, 0.01, 0.05, 0.001, "Ens@homo stronger"),  # per defense: not pooled
])


def test_claims_are_oriented_as_attack_minus_reference(tmp_path):
    rows = transfer_claims.claim_rows(PAIRED).set_index("attack")
    assert list(rows.index) == ["AdaEA@homo", "CWA@homo", "Ens@hetero"]
    adaea = rows.loc["AdaEA@homo"]
    assert (adaea["reference"], adaea["targets"]) == ("Ens@homo", "all")
    assert adaea["difference"] == pytest.approx(-0.03) and (adaea["ci_low"], adaea["ci_high"]) == pytest.approx(
        (-0.05, -0.01))
    assert adaea["verdict"] == "Ens@homo stronger" and adaea["success_attack"] == pytest.approx(0.47)
    cwa = rows.loc["CWA@homo"]
    assert cwa["difference"] == pytest.approx(0.02) and cwa["targets"] == "adversarially trained"
    assert cwa["verdict"] == "CWA@homo stronger"
    hetero = rows.loc["Ens@hetero"]
    assert (hetero["comparison"], hetero["reference"], hetero["difference"]) == ("pools", "Ens@homo",
                                                                                  pytest.approx(-0.10))


def test_the_script_writes_its_report_and_refuses_a_folder_without_tests(tmp_path, capsys):
    PAIRED.to_csv(tmp_path / "paired_tests.csv", index=False)
    assert transfer_claims.main([str(tmp_path)]) == 0
    report = (tmp_path / "claims.md").read_text()
    assert "| 8/255 | AdaEA@homo | Ens@homo | all | 47.0 | 50.0 | -3.0 [-5.0, -1.0] | 0.001 | Ens@homo stronger |" \
        in report
    assert len(pd.read_csv(tmp_path / "claims.csv")) == 3
    assert transfer_claims.main([str(tmp_path / "nowhere")]) == 2
    assert "run the suite first" in capsys.readouterr().err


def test_every_other_attack_is_compared_with_ens_and_one_outside_the_pools_with_ens_on_each():
    paired = pd.DataFrame([
        _row("Ens@homo", "SMER@homo", "all", -0.02, -0.04, -0.01, 0.01, "SMER@homo stronger"),
        _row("Ens+DI@hetero", "Ens@hetero", "all", 0.05, 0.03, 0.07, 0.001, "Ens+DI@hetero stronger"),
        _row("Ens@homo", "MBA-RN20", "all", 0.01, -0.01, 0.03, 0.4, "no significant difference"),
        _row("Ens@hetero", "MBA-RN20", "all", 0.04, 0.02, 0.06, 0.001, "Ens@hetero stronger"),
    ])
    rows = transfer_claims.claim_rows(paired)
    expected = [("Ens+DI@hetero", "Ens@hetero"), ("MBA-RN20", "Ens@hetero"), ("MBA-RN20", "Ens@homo"),
                ("SMER@homo", "Ens@homo")]
    assert sorted(zip(rows["attack"], rows["reference"])) == expected
    report = transfer_claims.report(rows, Path("lb"))
    assert all(f"## {name} against Ens" in report for name in ("SMER", "Ens+DI", "MBA-RN20"))
    assert "AdaEA against Ens" not in report  # a question with no rows is left out


def test_an_attack_with_a_transformation_is_compared_with_itself_without_it():
    paired = pd.DataFrame([
        _row("CWA@homo", "CWA+DI@homo", "all", -0.04, -0.06, -0.02, 0.001, "CWA+DI@homo stronger"),
        _row("CWA+DI@hetero", "CWA@hetero", "all", 0.01, -0.01, 0.03, 0.3, "no significant difference"),
        _row("CWA+DI@homo", "CWA@hetero", "all", 0.02, 0.00, 0.04, 0.04, "CWA+DI@homo stronger"),  # other pools
        _row("CWA@homo", "AdaEA+DI@homo", "all", 0.0, -0.01, 0.01, 1.0, "no significant difference"),  # others
    ])
    rows = transfer_claims.claim_rows(paired).set_index("attack")
    assert list(rows["comparison"]) == ["transformation", "transformation"]
    assert rows.loc["CWA+DI@homo", "reference"] == "CWA@homo"
    assert rows.loc["CWA+DI@homo", "difference"] == pytest.approx(0.04)  # oriented as with minus without
    assert rows.loc["CWA+DI@hetero", "difference"] == pytest.approx(0.01)
    report = transfer_claims.report(rows.reset_index(), Path("lb"))
    assert "## Each attack with an input transformation against the same attack without it" in report


def test_the_success_table_gives_every_target_the_mean_and_the_crafting_time():
    success = pd.DataFrame([{"eps": E8, "attack": a, "defense": d, "success_rate": v}
                            for a, d, v in (("Ens@homo", "T1", 0.5), ("Ens@homo", "T2", 0.25),
                                            ("SMER@homo", "T1", 0.75), ("SMER@homo", "T2", 0.5))])
    cells = pd.DataFrame([{"attack": a, "eps": E8, "craft_time_s": t}
                          for a, t in (("Ens@homo", 45.2), ("Ens@homo", 45.2), ("SMER@homo", 370.0),
                                       ("clean", 0.0))])
    lines = transfer_claims.success_table(success, cells)
    assert lines[:4] == ["### 8/255", "", "| attack | T1 | T2 | mean | crafting (s) |", "|---|---:|---:|---:|---:|"]
    assert lines[4:6] == ["| Ens@homo | 50.0 | 25.0 | 37.5 | 45 |", "| SMER@homo | 75.0 | 50.0 | 62.5 | 370 |"]
