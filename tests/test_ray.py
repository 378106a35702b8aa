"""The Ray executor on a local 2-CPU cluster: same cells as the local executor, retries, failures, driver resume.

One cluster serves the whole module. Its workers run tests/ray_faults.py at start-up: it
logs every crafting call and fires the faults a test arms with a marker file.
"""
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import shared_data_path, shared_models_path, sigkill_at_line
from robustbench_ens.cli import main
from robustbench_ens.runner import RunConfig, run_suite
from robustbench_ens.suite import apply_overrides, load_suite

REPO = Path(__file__).resolve().parents[1]
N_CELLS = 2 * (1 + 2 * 2)  # smoke: 2 defenses x (clean + 2 attacks x 2 eps)
NOT_VALUES = ["craft_time_s", "eval_time_s", "finished_at", "versions"]  # timings, timestamps, the git commit


@pytest.fixture(scope="module")
def faults(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("faults")


@pytest.fixture(scope="module")
def cluster(faults):
    """A local Ray cluster (2 CPUs) whose workers install the test faults; yields its address."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200 * 2 ** 20, log_to_driver=False,
             runtime_env={"worker_process_setup_hook": "ray_faults.install",
                          "env_vars": {"RBE_TEST_FAULTS": str(faults),  # the hook, and this checkout's packages
                                          "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), str(REPO)])}})
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture
def arm(faults):
    """``arm(name)``: creates the marker of a fault; every marker and the call log are cleared afterwards."""
    (faults / "calls.log").unlink(missing_ok=True)
    yield lambda name: (faults / name).touch()
    for marker in faults.iterdir():
        marker.unlink()


def _config(out: Path, slice_path, models_path, executor="local", **overrides) -> RunConfig:
    suite = apply_overrides(load_suite("smoke"), device="cpu", **overrides)
    return RunConfig(suite=suite, out_dir=out / "run", leaderboard_dir=out / "lb", data_path=str(slice_path),
                     models_dir=models_path, cache_dir=out / "cache", progress=False, executor=executor)


@pytest.fixture(scope="module")
def local_run(tmp_path_factory, slice_path_module, models_path_module) -> Path:
    """The smoke grid run by the local executor: the folder of its leaderboard."""
    out = tmp_path_factory.mktemp("local")
    assert run_suite(_config(out, slice_path_module, models_path_module)).failed == 0
    return out / "lb"


@pytest.fixture(scope="module")
def slice_path_module():
    if not shared_data_path().is_file():
        pytest.skip("no CIFAR-10 slice")
    return shared_data_path()


@pytest.fixture(scope="module")
def models_path_module():
    if not (shared_models_path() / "resnet20_a_standard.safetensors").is_file():
        pytest.skip("no shared pretrained models")
    return shared_models_path()


def _values(leaderboard: Path, like: Path | None = None) -> pd.DataFrame:
    """cells.csv's values (no timings, timestamps or versions); with ``like``, only the cells that ``like`` has."""
    cells = pd.read_csv(leaderboard / "cells.csv").drop(columns=NOT_VALUES)
    if like is not None:
        cells = cells[cells["cell_id"].isin(pd.read_csv(like / "cells.csv")["cell_id"])].reset_index(drop=True)
    return cells


def _calls(faults: Path) -> list[str]:
    log = faults / "calls.log"
    return log.read_text().splitlines() if log.exists() else []


def test_ray_gives_the_local_executors_cells_and_crafts_each_set_once(cluster, local_run, faults, arm, tmp_path,
                                                                      slice_path_module, models_path_module):
    result = run_suite(_config(tmp_path, slice_path_module, models_path_module, executor="ray"))
    assert result.failed == 0 and result.evaluated == N_CELLS and len(result.crafted) == 4
    calls = _calls(faults)
    assert len(calls) == 4 and len(set(calls)) == 4, "each (attack, eps) set is crafted by one task, once"
    pd.testing.assert_frame_equal(_values(tmp_path / "lb"), _values(local_run))
    for table in ("matrix.csv", "defenses.csv", "attacks.csv", "paired_tests.csv"):
        assert (tmp_path / "lb" / table).read_text() == (local_run / table).read_text(), table
    # the per-example outcomes came back from the workers into the store: the same file, byte for byte
    assert (tmp_path / "lb" / "per_example.csv.gz").read_bytes() == (local_run / "per_example.csv.gz").read_bytes()

    again = run_suite(_config(tmp_path, slice_path_module, models_path_module, executor="ray"))
    assert (again.evaluated, again.skipped, again.crafted) == (0, N_CELLS, [])


def test_a_worker_killed_mid_cell_is_retried_and_the_grid_completes(cluster, local_run, faults, arm, tmp_path,
                                                                    slice_path_module, models_path_module):
    arm("die_crafting_once")
    arm("die_evaluating_once")
    result = run_suite(_config(tmp_path, slice_path_module, models_path_module, executor="ray", eps=["8/255"]))
    assert (faults / "die_crafting_once.taken").exists() and (faults / "die_evaluating_once.taken").exists()
    assert result.failed == 0 and result.evaluated == 6
    assert len(_calls(faults)) == 3, "the killed crafting ran again, the other one once"
    pd.testing.assert_frame_equal(_values(tmp_path / "lb"), _values(local_run, like=tmp_path / "lb"))


@pytest.mark.parametrize("fault,max_retries,error", [
    ("raise_on_probs", 3, "crafting failed: RuntimeError: CUDA out of memory (simulated)"),
    ("die_on_probs", 1, "Ray task failed for good: WorkerCrashedError"),
])
def test_a_cell_failing_for_good_is_recorded_as_failed_and_the_grid_goes_on(
        cluster, faults, arm, tmp_path, slice_path_module, models_path_module, fault, max_retries, error):
    arm(fault)
    config = _config(tmp_path, slice_path_module, models_path_module, executor="ray", eps=["8/255"])
    config.ray = type(config.ray)(max_retries=max_retries)
    result = run_suite(config)
    cells, probs = result.cells, result.cells["attack"] == "Ens-probs"
    assert len(cells) == 6 and result.failed == 2 and probs.sum() == 2
    assert (cells.loc[probs, "status"] == "failed").all() and (cells.loc[~probs, "status"] == "ok").all()
    assert cells.loc[probs, "error"].str.startswith(error).all(), cells.loc[probs, "error"]
    assert result.crafted == [("Ens", 8 / 255)]
    if fault == "die_on_probs":
        assert _calls(faults).count(f"probs {8 / 255}") == 1 + max_retries


def test_resume_after_the_driver_is_killed(cluster, local_run, tmp_path, slice_path_module, models_path_module):
    """A driver on the cluster SIGKILLed after its first attacked cell; run again: every cell once, none redone."""
    command = [sys.executable, str(REPO / "run_all.py"), "--suite", "smoke", "--device", "cpu", "--no-progress",
               "--data", str(slice_path_module), "--models", str(models_path_module), "--cache",
               str(tmp_path / "cache"), "--out", str(tmp_path / "run"), "--leaderboard-dir", str(tmp_path / "lb"),
               "--executor", "ray", "--ray-address", cluster]
    sigkill_at_line(command, ("Ens eps=", "Ens-probs eps="), tmp_path)  # an attacked cell is in the store
    store = tmp_path / "run" / "results.sqlite"
    with sqlite3.connect(store) as db:
        before = pd.read_sql_query("SELECT * FROM cells", db)
        sets_before = pd.read_sql_query("SELECT * FROM adv_sets", db)
    assert 1 <= len(before) < N_CELLS and len(sets_before) >= 1, "the kill did not land mid-run"

    resumed = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{N_CELLS - len(before)} cells evaluated, {len(before)} already finished" in resumed.stdout
    with sqlite3.connect(store) as db:
        after = pd.read_sql_query("SELECT * FROM cells", db)
        sets_after = pd.read_sql_query("SELECT * FROM adv_sets", db).set_index("adv_key")
    assert len(after) == N_CELLS and after["cell_id"].is_unique
    kept = after.set_index("cell_id").loc[before["cell_id"]]
    assert (kept["finished_at"].values == before["finished_at"].values).all(), "a finished cell was redone"
    assert (sets_after.loc[sets_before["adv_key"], "created_at"].values == sets_before["created_at"].values).all(), \
        "a saved set was crafted again"
    pd.testing.assert_frame_equal(_values(tmp_path / "lb"), _values(local_run))


def test_ray_executor_without_ray_says_how_to_install_it(tmp_path, slice_path, models_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    assert main(["--suite", "smoke", "--data", str(slice_path), "--models", str(models_path), "--executor", "ray",
                 "--out", str(tmp_path / "run"), "--leaderboard-dir", str(tmp_path / "lb")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ['error: --executor ray needs Ray, an optional extra: pip install -e ".[ray]"']
    assert not (tmp_path / "run").exists(), "stopped before any work"


def test_ray_options_need_the_ray_executor(capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["--suite", "smoke", "--ray-address", "auto"])
    assert stopped.value.code == 2 and "--ray-* options need --executor ray" in capsys.readouterr().err
