"""benchmarks/stage_times.py: a run's recorded seconds by stage, counting only the cells of the suite's grid."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd

from robustbench_ens.suite import CLEAN, load_suite

_SPEC = importlib.util.spec_from_file_location(
    "stage_times", Path(__file__).resolve().parents[1] / "benchmarks" / "stage_times.py")
stage_times = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(stage_times)


def _cell(attack, eps, defense, n=16, craft=0.0, evaluate=1.0, key=None):
    return {"attack": attack, "eps": eps, "defense": defense, "n": n, "craft_time_s": craft, "eval_time_s": evaluate,
            "status": "ok", "adv_key": key or f"{attack}-{eps}-{defense}", "attacked": None}


def test_only_the_grids_cells_are_counted_and_a_transfer_set_once():
    suite = load_suite("smoke")  # 16 points; Ens and Ens-probs at 4 and 8/255 on two defenses
    cells = pd.DataFrame([
        _cell(CLEAN, 0.0, "baseline-ens"), _cell(CLEAN, 0.0, "resnet2b-at"),
        _cell("Ens", 4 / 255, "baseline-ens", craft=10.0, key="ens4"),  # one set, read by both defenses
        _cell("Ens", 4 / 255, "resnet2b-at", craft=10.0, key="ens4"),
        _cell("Ens", 2 / 255, "baseline-ens", craft=99.0),  # an eps the suite no longer runs
        _cell("Gone", 4 / 255, "baseline-ens", craft=99.0),  # an attack since removed
        _cell("Ens", 4 / 255, "resnet2b-at", n=32, craft=99.0),  # another n
    ])
    planned = stage_times.in_grid(cells, suite)
    assert planned.tolist() == [True, True, True, True, False, False, False]
    table = stage_times.stage_times(cells[planned], {a.name: "transfer" for a in suite.attacks}).set_index("stage")
    assert table.loc["crafting: transfer", "sets"] == 1 and table.loc["crafting: transfer", "seconds"] == 10.0
    assert table.loc["crafting: transfer", "cells"] == 2
    assert table.loc["total", "seconds"] == 10.0 + 4 * 1.0


def test_the_defenses_the_run_decided_replace_an_attacks_open_list():
    """An adaptive attack names no defenses: the run picks those with predictors, and its setting records them."""
    suite = load_suite("smoke")
    cells = pd.DataFrame([_cell("Ens", 4 / 255, "baseline-ens"), _cell("Ens", 4 / 255, "resnet2b-at")])
    assert stage_times.in_grid(cells, suite).tolist() == [True, True]
    assert stage_times.in_grid(cells, suite, {"Ens": frozenset({"baseline-ens"})}).tolist() == [True, False]

