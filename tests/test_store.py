"""The results store: a cell and its per-example outcomes go in together and come back bit for bit."""
from __future__ import annotations

import numpy as np
import pytest

from robustbench_ens.store import ResultStore


def _cell(cell_id: str, status: str = "ok", **extra) -> dict:
    return {"cell_id": cell_id, "suite": "toy", "attack": "Ens", "eps": 8 / 255, "defense": "d", "seed": 0, "n": 13,
            "status": status, "robust_acc": 0.5, **extra}


def test_outcomes_round_trip_bit_for_bit(tmp_path):
    rng = np.random.default_rng(0)
    clean, adv = rng.random(10_001) < 0.9, rng.random(10_001) < 0.4  # not a multiple of 8: packing pads
    store = ResultStore(tmp_path / "results.sqlite")
    store.put_cell(_cell("a", clean_correct=clean, adv_correct=adv))
    store.put_cell(_cell("b", status="failed", error="boom"))
    again = ResultStore(tmp_path / "results.sqlite").outcomes()
    assert set(again) == {"a"}, "a failed cell has no outcomes"
    np.testing.assert_array_equal(again["a"][0], clean)
    np.testing.assert_array_equal(again["a"][1], adv)
    assert again["a"][0].dtype == bool and len(again["a"][1]) == 10_001
    assert set(store.outcomes(["b", "c"])) == set()


def test_an_ok_cell_without_outcomes_is_refused_and_nothing_is_written(tmp_path):
    store = ResultStore(tmp_path / "results.sqlite")
    with pytest.raises(ValueError, match="per-example outcomes"):
        store.put_cell(_cell("a"))
    with pytest.raises(ValueError, match="3 clean outcomes but 2"):
        store.put_cell(_cell("a", clean_correct=[1, 1, 0], adv_correct=[1, 0]))
    assert store.finished_ids() == set() and store.outcomes() == {}


def test_a_recorded_cell_keeps_its_first_outcomes_and_discard_forgets_both(tmp_path):
    store = ResultStore(tmp_path / "results.sqlite")
    store.put_cell(_cell("a", clean_correct=[1, 1], adv_correct=[1, 0]))
    store.put_cell(_cell("a", clean_correct=[0, 0], adv_correct=[0, 0]))  # a repeat never overwrites
    np.testing.assert_array_equal(store.outcomes()["a"][1], [True, False])
    assert store.discard(["a"], []) == 1
    assert store.outcomes() == {} and store.finished_ids() == set()
