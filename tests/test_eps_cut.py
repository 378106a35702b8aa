"""benchmarks/eps_cut.py: the worst cases a grid without some attacks' non-headline eps would publish, and the time."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

_SPEC = importlib.util.spec_from_file_location(
    "eps_cut", Path(__file__).resolve().parents[1] / "benchmarks" / "eps_cut.py")
eps_cut = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(eps_cut)

E4, E8 = 4 / 255, 8 / 255
SETTING = {"suite": "toy", "threat": {"norm": "Linf", "headline_eps": E8},
           "attacks": [{"name": "Ens", "kind": "transfer"}, {"name": "CWA", "kind": "transfer"},
                       {"name": "PGD", "kind": "white-box"}]}
CLEAN = "1111111110"  # both defenses get points 0..8 right
ROWS = {  # (attack, eps) -> adv_correct of defense d, of defense e; a transfer set is shared by both defenses
    ("Ens", E4): ("1111111110", "1111111110"),
    ("CWA", E4): ("0011111110", "0111111110"),   # breaks 0, 1 of d (0 of e) at 4/255, and nothing else does there
    ("Ens", E8): ("1111001110", "1111111110"),
    ("CWA", E8): ("0111111110", "1111111110"),   # at 8/255 CWA breaks d's point 0 again, not point 1
    ("PGD", E8): ("1111110000", "1111111110"),
}


def _grid() -> tuple[pd.DataFrame, dict]:
    cells, outcomes = [{"cell_id": f"clean-{d}", "suite": "toy", "attack": "clean", "eps": 0.0, "defense": d,
                        "seed": 0, "n": 10, "status": "ok", "clean_acc": 0.9, "robust_acc": 0.9,
                        "success_rate": 0.0, "craft_time_s": 0.0, "eval_time_s": 1.0, "adv_key": None}
                       for d in "de"], {}
    bits = lambda text: np.array([c == "1" for c in text])  # noqa: E731
    for cell in cells:
        outcomes[cell["cell_id"]] = (bits(CLEAN), bits(CLEAN))
    for (attack, eps), per_defense in ROWS.items():
        for defense, adv in zip("de", per_defense):
            cell_id = f"{attack}-{eps:.4f}-{defense}"
            clean, adversarial = bits(CLEAN), bits(adv)
            key = f"{attack}-{eps:.4f}" if attack != "PGD" else cell_id  # a transfer set serves both defenses
            cells.append({"cell_id": cell_id, "suite": "toy", "attack": attack, "eps": eps, "defense": defense,
                          "seed": 0, "n": 10, "status": "ok", "clean_acc": clean.mean(),
                          "robust_acc": (clean & adversarial).mean(), "success_rate": 0.0,
                          "craft_time_s": 60.0 if attack == "CWA" else 6.0, "eval_time_s": 1.0, "adv_key": key})
            outcomes[cell_id] = (clean, adversarial)
    return pd.DataFrame(cells), outcomes


def test_only_the_named_attacks_at_other_eps_are_dropped_and_each_set_counted_once():
    cells, outcomes = _grid()
    both, cut = eps_cut.compare(cells, SETTING, outcomes, ["CW*"])
    assert cut["attacks"] == ["CWA"] and cut["cells"] == 2 and cut["headline"] == "8/255"
    assert cut["crafting"] == 60.0 and cut["evaluation"] == 2.0  # CWA@4: one set, read by two defenses
    rise = both.set_index(["threat", "eps", "defense"])["rise"]
    # without CWA@4, d's points 0 and 1 are robust at 4/255 again; e's point 0
    assert rise["transfer", "4/255", "d"] == pytest.approx(20.0)
    assert rise["transfer", "4/255", "e"] == pytest.approx(10.0)
    # at 8/255 CWA@8 still breaks d's point 0, but point 1 was broken only by CWA@4 (a smaller eps counts)
    assert rise["transfer", "8/255", "d"] == pytest.approx(10.0)
    assert rise["overall", "8/255", "d"] == pytest.approx(10.0)
    assert rise["transfer", "8/255", "e"] == pytest.approx(10.0)
    assert rise["white-box", "8/255", "d"] == 0.0  # PGD's union has no transfer attack
    table = eps_cut.summary(both, [])
    row = table[(table["threat model"] == "transfer") & (table["eps"] == "4/255")].iloc[0]
    assert row["max rise"] == pytest.approx(20.0) and row["deterministic defenses that rose"] == 2


def test_a_cut_that_drops_nothing_is_an_error():
    cells, outcomes = _grid()
    with pytest.raises(ValueError, match="no cell of PGD at an eps other than the headline 8/255"):
        eps_cut.compare(cells, SETTING, outcomes, ["PGD"])
