"""The runner end to end on the smoke suite: grid, crafting once, store, resume after SIGKILL."""
import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import attacks.ens
from conftest import sigkill_at_line
from robustbench_ens.runner import RunConfig, run_suite
from robustbench_ens.store import ResultStore
from robustbench_ens.suite import apply_overrides, load_suite

REPO = Path(__file__).resolve().parents[1]

N_CELLS = 2 * (1 + 2 * 2)  # 2 defenses x (clean + 2 attacks x 2 eps)


def _config(tmp_path, slice_path, models_path, cache_path=None, **overrides):
    suite = apply_overrides(load_suite("smoke"), device="cpu", **overrides)
    return RunConfig(suite=suite, out_dir=tmp_path / "run", leaderboard_dir=tmp_path / "lb",
                     data_path=str(slice_path), models_dir=models_path,
                     cache_dir=cache_path or tmp_path / "cache", progress=False)


def _count_crafting(monkeypatch):
    calls = []
    original = attacks.ens.Ens.forward

    def counting(self, images, labels):
        calls.append((self.eps, self.fusion, len(images)))
        return original(self, images, labels)

    monkeypatch.setattr(attacks.ens.Ens, "forward", counting)
    return calls


def test_smoke_grid_crafts_once_per_attack_and_eps(tmp_path, slice_path, models_path, monkeypatch):
    calls = _count_crafting(monkeypatch)
    result = run_suite(_config(tmp_path, slice_path, models_path))

    cells = result.cells
    assert len(cells) == N_CELLS and result.evaluated == N_CELLS and result.failed == 0
    assert (cells["status"] == "ok").all()
    # one adversarial set per (attack, eps), each crafted in one batch, shared by both defenses
    assert sorted(result.crafted) == sorted([(a, e) for a in ("Ens", "Ens-probs") for e in (4 / 255, 8 / 255)])
    assert len(calls) == 4 and len(set(calls)) == 4
    assert cells.groupby(["attack", "eps"])["adv_key"].nunique().eq(1).all()
    assert len(list((tmp_path / "run" / "adv").glob("*.safetensors"))) == 4

    clean = cells[cells["attack"] == "clean"].set_index("defense")
    attacked = cells[cells["attack"] != "clean"]
    # the clean row: no perturbation, robust = clean, nothing succeeds
    assert (clean["robust_acc"] == clean["clean_acc"]).all() and (clean["linf_max"] == 0).all()
    # attacked cells: inside the budget, robust <= clean, and a defense's clean accuracy is the same everywhere
    assert (attacked["linf_max"] <= attacked["eps"] + 1e-6).all()
    assert (attacked["robust_acc"] <= attacked["clean_acc"]).all()
    assert cells.groupby("defense")["clean_acc"].nunique().eq(1).all()
    # each row says with what and where it was computed (a run resumed on another machine stays traceable)
    with sqlite3.connect(tmp_path / "run" / "results.sqlite") as db:
        recorded = [json.loads(v) for (v,) in db.execute("SELECT versions FROM cells")]
    assert len(recorded) == N_CELLS and all(v["cpu"] and v["torch"] and "gpu" not in v for v in recorded)
    setting = json.loads((tmp_path / "lb" / "leaderboard.json").read_text())["setting"]
    assert "torch" in setting["libraries"] and "cpu" not in setting["libraries"], "the machine is under hardware"
    assert setting["hardware"]["cpu"] == recorded[0]["cpu"]
    # a standard ensemble falls at 8/255 far below its clean accuracy
    baseline = attacked[(attacked["defense"] == "baseline-ens") & (attacked["eps"] == 8 / 255)]
    assert (baseline["robust_acc"] < clean.loc["baseline-ens", "clean_acc"] - 0.3).all()

    # a second run finds every cell finished: nothing crafted, nothing evaluated
    again = run_suite(_config(tmp_path, slice_path, models_path))
    assert again.crafted == [] and again.evaluated == 0 and again.skipped == N_CELLS
    assert len(calls) == 4
    pd.testing.assert_frame_equal(again.cells, cells)


def test_saved_adversarial_sets_are_reused_not_recrafted(tmp_path, slice_path, models_path, monkeypatch):
    run_suite(_config(tmp_path, slice_path, models_path))
    with sqlite3.connect(tmp_path / "run" / "results.sqlite") as db:  # as if killed before the evaluations
        db.execute("DELETE FROM cells WHERE attack != 'clean' AND defense = 'resnet2b-at'")
    calls = _count_crafting(monkeypatch)
    result = run_suite(_config(tmp_path, slice_path, models_path))
    assert result.evaluated == 4 and result.crafted == [] and calls == []


def test_changed_settings_are_new_cells(tmp_path, slice_path, models_path):
    run_suite(_config(tmp_path, slice_path, models_path, attacks=["Ens"], eps=["8/255"]))
    result = run_suite(_config(tmp_path, slice_path, models_path, attacks=["Ens"], eps=["8/255"], n_examples=8))
    assert result.skipped == 0 and result.evaluated == 4 and (result.cells["n"] == 8).all()


def test_resume_after_sigkill(tmp_path, slice_path, models_path):
    """Kill a real run after its first attacked cell, and again after a saved set, resume it: same cells (and
    leaderboard numbers) as an uninterrupted run."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    base = [sys.executable, str(REPO / "run_all.py"), "--suite", "smoke", "--device", "cpu", "--no-progress",
            "--data", str(slice_path), "--models", str(models_path), "--cache", str(tmp_path / "cache")]
    killed = [*base, "--out", str(tmp_path / "killed"), "--leaderboard-dir", str(tmp_path / "lb_killed")]
    sigkill_at_line(killed, "Ens eps=", tmp_path)  # the first attacked cell is committed; the run goes on
    store = tmp_path / "killed" / "results.sqlite"
    with sqlite3.connect(store) as db:
        before = pd.read_sql_query("SELECT * FROM cells", db)
    assert 1 <= len(before) < N_CELLS, "the kill did not land mid-run"
    assert not (tmp_path / "lb_killed").exists(), "no leaderboard from a killed run"

    # killed again at another point: after the first of a saved set's cells, before the others
    sigkill_at_line([*killed, "--resume"], "Ens-probs eps=4/255", tmp_path)
    with sqlite3.connect(store) as db:
        middle = pd.read_sql_query("SELECT * FROM cells", db)
    assert len(before) <= len(middle) < N_CELLS

    resumed = subprocess.run([*killed, "--resume"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{N_CELLS - len(middle)} cells evaluated, {len(middle)} already finished" in resumed.stdout
    assert "crafted Ens-probs eps=4/255" not in resumed.stdout, "the saved set is reloaded, not crafted again"
    with sqlite3.connect(store) as db:
        after = pd.read_sql_query("SELECT * FROM cells", db)
    assert len(after) == N_CELLS and after["cell_id"].is_unique
    kept = after.set_index("cell_id").loc[before["cell_id"]]
    assert (kept["finished_at"].values == before["finished_at"].values).all(), "a finished cell was redone"

    straight = subprocess.run([*base, "--out", str(tmp_path / "straight"), "--leaderboard-dir",
                               str(tmp_path / "lb_straight")], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert straight.returncode == 0, straight.stderr
    metrics = ["cell_id", "clean_acc", "robust_acc", "success_rate", "linf_max", "l2_mean"]
    read = lambda folder: pd.read_csv(folder / "cells.csv")[metrics].sort_values("cell_id").reset_index(drop=True)  # noqa: E731
    pd.testing.assert_frame_equal(read(tmp_path / "lb_killed"), read(tmp_path / "lb_straight"))
    # the per-example outcomes too: every ok cell has them, and they are those of the uninterrupted run
    killed_outcomes = ResultStore(store).outcomes()
    straight_outcomes = ResultStore(tmp_path / "straight" / "results.sqlite").outcomes()
    assert set(killed_outcomes) == set(straight_outcomes) == set(after["cell_id"])
    for cell_id, (clean, adv) in straight_outcomes.items():
        assert len(clean) == len(adv) == 16
        np.testing.assert_array_equal(killed_outcomes[cell_id][0], clean)
        np.testing.assert_array_equal(killed_outcomes[cell_id][1], adv)


def test_models_absent_from_models_dir_are_trained_and_cached(tmp_path, slice_path):
    empty = tmp_path / "no_models"
    empty.mkdir()
    config = _config(tmp_path, slice_path, empty, attacks=["Ens"], eps=["8/255"], defenses=["baseline-ens"],
                     n_examples=8)
    result = run_suite(config)
    assert result.failed == 0 and len(result.cells) == 2
    cached = sorted(p.name.split("-")[0] for p in (tmp_path / "cache").glob("*.safetensors"))
    assert cached == ["baseline_m0", "baseline_m1", "resnet20_a", "resnet32_a"]
    assert len(list((tmp_path / "cache").glob("*.json"))) == 4
    page = (tmp_path / "lb" / "README.md").read_text()
    assert "trained here by the zoo (in this run; recipe" in page
    assert re.search(r"recipe \{[^}]*\}, \d+\.\d % clean accuracy on the test split\)", page), "a percentage"


def test_a_model_the_zoo_cannot_reproduce_is_never_replaced(tmp_path, slice_path):
    from robustbench_ens.zoo import CheckpointError

    empty = tmp_path / "no_models"
    empty.mkdir()
    with pytest.raises(CheckpointError, match="resnet2b_at2.safetensors"):
        run_suite(_config(tmp_path, slice_path, empty, defenses=["resnet2b-at"]))


def test_fresh_redoes_the_grid_and_keeps_other_files(tmp_path, slice_path, models_path):
    other = _config(tmp_path, slice_path, models_path, attacks=["Ens-probs"], eps=["4/255"], n_examples=4)
    run_suite(other)
    config = _config(tmp_path, slice_path, models_path, attacks=["Ens"], eps=["8/255"], n_examples=4)
    run_suite(config)
    (tmp_path / "run" / "notes.txt").write_text("mine")
    config.fresh = True
    result = run_suite(config)
    assert result.skipped == 0 and result.evaluated == 4 and result.crafted == [("Ens", 8 / 255)]
    assert (tmp_path / "run" / "notes.txt").read_text() == "mine"
    kept = run_suite(other)
    assert kept.skipped == 4 and kept.evaluated == 0 and not kept.crafted, "another grid's cells and set stay"


def test_fresh_discards_nothing_when_a_check_fails(tmp_path, slice_path, models_path):
    import dataclasses

    from robustbench_ens.suite import SuiteError

    config = _config(tmp_path, slice_path, models_path, attacks=["Ens"], eps=["8/255"], n_examples=4)
    run_suite(config)
    entry = config.suite.attacks[0]
    broken = dataclasses.replace(entry, params={**entry.params, "decy": 1.0})
    config.suite, config.fresh = dataclasses.replace(config.suite, attacks=(broken,)), True
    with pytest.raises(SuiteError, match="decy"):
        run_suite(config)
    config.suite, config.fresh = dataclasses.replace(config.suite, attacks=(entry,)), False
    assert run_suite(config).skipped == 4


def test_failed_cells_of_an_earlier_run_still_count(tmp_path, slice_path, models_path):
    import sqlite3

    config = _config(tmp_path, slice_path, models_path, attacks=["Ens"], eps=["8/255"], n_examples=4)
    assert run_suite(config).failed == 0
    with sqlite3.connect(tmp_path / "run" / "results.sqlite") as db:
        db.execute("UPDATE cells SET status = 'failed' WHERE attack = 'Ens' AND rowid = "
                   "(SELECT MIN(rowid) FROM cells WHERE attack = 'Ens')")
    again = run_suite(config)
    assert again.evaluated == 0 and again.failed == 1, "nothing ran, but the grid still holds a failed cell"
    config.retry_failed = True
    assert run_suite(config).failed == 0


TWO_MODEL_SUITE = """
name = "{name}"
surrogates = {surrogates}
[data]
n_examples = 4
[threat]
eps = ["8/255"]
[run]
device = "cpu"
[models.a]
arch = "resnet20_a"
checkpoint = "resnet20_a_standard"
[models.b]
arch = "resnet32_a"
checkpoint = "resnet32_a_standard"
[[defenses]]
name = "target"
members = ["{target}"]
{extra}"""


def _run_two_model_suite(tmp_path, slice_path, models_path, **fields):
    """A suite on the pretrained ResNet-20 (a) and ResNet-32 (b), 4 points, 8/255; returns (config, result)."""
    suite = tmp_path / "suite.toml"
    suite.write_text(TWO_MODEL_SUITE.format(**fields))
    config = RunConfig(suite=load_suite(str(suite)), out_dir=tmp_path / "run", leaderboard_dir=tmp_path / "lb",
                       data_path=str(slice_path), models_dir=models_path, cache_dir=tmp_path / "cache",
                       progress=False)
    return config, run_suite(config)


def test_a_suite_can_name_every_registered_attack(tmp_path, slice_path, models_path):
    from attacks import list_attacks

    params = {"cwa": "steps = 1, inner_step_size = 50.0, outer_norm = \"sample\"",
              "adaea": "steps = 1, agm_granularity = \"sample\", threshold = -0.3",
              "svre": "steps = 1, inner_steps = 2", "ens": "steps = 1", "lgv": "steps = 2", "pgd": "steps = 2",
              "smer": "steps = 1, inner_passes = 1",
              "sgm": "steps = 1, transforms = [\"di\", { name = \"ti\" }], loss = \"cw\"",
              "autoattack": "version = \"custom\", attacks = [\"apgd-ce\"], n_iter = 2", "square": "n_queries = 5"}
    whitebox = {"pgd", "autoattack", "square"}  # they take the defense itself, not surrogates
    assert set(params) == set(list_attacks())
    attacks_toml = "\n".join(f'[[attacks]]\nname = "{name}"\nattack = "{name}"\nparams = {{ {p} }}\n'
                             + ('on = "defense"\n' if name in whitebox else "") for name, p in params.items())
    target = '[models.c]\narch = "resnet20_b"\ncheckpoint = "resnet20_b_baseline_m0"\n'  # not a surrogate
    _, result = _run_two_model_suite(tmp_path, slice_path, models_path, name="all", surrogates='["a", "b"]',
                                     target="c", extra=target + attacks_toml)
    assert result.failed == 0 and len(result.crafted) == len(params)
    assert set(result.cells["attack"]) == {"clean", *params}
    setting = json.loads((tmp_path / "lb" / "leaderboard.json").read_text())["setting"]
    kinds = {a["name"]: a["kind"] for a in setting["attacks"]}
    assert kinds == {**{name: "transfer" for name in ("cwa", "adaea", "svre", "ens", "lgv", "smer", "sgm")},
                     "pgd": "white-box", "autoattack": "white-box", "square": "black-box"}


LGV_ENTRIES = """
[models.lgv_a]
method = "lgv"
from = ["a"]
params = { samples_per_epoch = 2 }
train = { epochs = 1, batch_size = 64, n_train = 128 }
[[attacks]]
name = "LGV"
attack = "lgv"
params = { steps = 4 }
"""


def test_an_lgv_collection_is_collected_once_and_attacked_as_an_ensemble(tmp_path, slice_path, models_path, capsys):
    config, result = _run_two_model_suite(tmp_path, slice_path, models_path, name="lgv", surrogates='["lgv_a"]',
                                          target="b", extra=LGV_ENTRIES)
    assert result.failed == 0 and result.crafted == [("LGV", 8 / 255)]
    assert "on 2 surrogates" in capsys.readouterr().out  # 1 epoch x 2 samples, expanded from one suite name
    (folder,) = (tmp_path / "cache").glob("lgv_a-*")
    assert sorted(p.name for p in folder.iterdir()) == ["collection.json", "member_000.json",
                                                         "member_000.safetensors", "member_001.json",
                                                         "member_001.safetensors"]
    page = (tmp_path / "lb" / "README.md").read_text()
    assert "LGV collection (Gubri et al., ECCV 2022) collected here: 2 members" in page

    config.fresh = True  # the collection is reused from the cache, not collected again
    run_suite(config)
    assert "loaded 2 cached lgv model(s)" in capsys.readouterr().out


TRAINED_DEFENSES = """
[models.base0]
arch = "resnet20_b"
checkpoint = "resnet20_b_baseline_m0"
[models.base1]
arch = "resnet20_b"
checkpoint = "resnet20_b_baseline_m1"
[models.dverge_ab]
method = "dverge"
from = ["base0", "base1"]
train = { epochs = 1, batch_size = 16, n_train = 32, steps = 2, lr = 0.01 }
[models.finetuned]
method = "finetune"
from = ["base0", "base1"]
train = { epochs = 1, batch_size = 16, n_train = 32, lr = 0.01 }
[models.self_ensemble]
method = "self_ensemble"
from = ["base0"]
params = { head_blocks = [8], k = 2 }
train.backbone = { epochs = 1, batch_size = 16, n_train = 32, lr = 0.01 }
train.heads = { epochs = 1, batch_size = 16, n_train = 32 }
[[defenses]]
name = "DVERGE"
kind = "dverge"
members = ["dverge_ab"]
[[defenses]]
name = "finetuned"
kind = "ensemble"
members = ["finetuned"]
[[defenses]]
name = "CrossMax"
kind = "self_ensemble"
members = ["self_ensemble"]
[[attacks]]
name = "Ens"
attack = "ens"
params = { steps = 2 }
[[attacks]]
name = "PGD"
attack = "pgd"
on = "defense"
eot = 3
params = { steps = 2 }
[[attacks]]
name = "PGD-adaptive"
attack = "pgd"
on = "adaptive"
params = { steps = 2 }
defenses = ["DVERGE", "CrossMax"]
"""


def test_defenses_trained_by_the_suite_are_made_once_then_read_from_the_cache(tmp_path, slice_path, models_path,
                                                                              capsys):
    config, result = _run_two_model_suite(tmp_path, slice_path, models_path, name="trained", surrogates='["a"]',
                                          target="b", extra=TRAINED_DEFENSES)
    assert result.failed == 0 and set(result.cells["defense"]) == {"target", "DVERGE", "finetuned", "CrossMax"}
    for name, count in (("dverge_ab", 2), ("finetuned", 2), ("self_ensemble", 1)):
        (folder,) = (tmp_path / "cache").glob(f"{name}-*")
        assert len(list(folder.glob("member_*.safetensors"))) == count
        assert (folder / "collection.json").is_file() and not (folder / "work").exists()
    out = capsys.readouterr().out
    # white-box sets: one per defense; EOT only against the randomised self-ensemble
    assert "crafted PGD eps=8/255 on CrossMax (defense, randomised: EOT over 3 draws)" in out
    assert "crafted PGD eps=8/255 on DVERGE (defense):" in out
    assert "crafted PGD-adaptive eps=8/255 on CrossMax (adaptive, randomised: EOT over " in out
    whitebox = result.cells[result.cells["attack"].str.startswith("PGD")]
    assert len(whitebox) == 4 + 2 and whitebox["adv_key"].nunique() == 6  # PGD-adaptive: its 2 defenses only
    assert set(whitebox.loc[whitebox["attack"] == "PGD-adaptive", "defense"]) == {"DVERGE", "CrossMax"}
    ranking = json.loads((tmp_path / "lb" / "leaderboard.json").read_text())["defense_ranking"]
    assert all(r["complete"] for r in ranking), "an attack not planned on a defense is not missing there"
    assert (whitebox["linf_max"] <= 8 / 255 + 1e-6).all()
    transfer = result.cells[result.cells["attack"] == "Ens"]
    assert transfer["adv_key"].nunique() == 1, "a transfer set serves every defense"
    page = (tmp_path / "lb" / "README.md").read_text()
    assert "white-box: each defense's mean of logits (adaptive)" in page
    for words in ("DVERGE (Yang et al., NeurIPS 2020) trained here from 2 trained members",
                  "fine-tuned here: 2 trained model(s)", "on the training split of the data with sha256",
                  "self-ensemble (Fort and Lakshminarayanan 2024) trained here from a trained model"):
        assert words in page

    config.fresh = True
    again = run_suite(config)
    out = capsys.readouterr().out
    for words in ("loaded 2 cached dverge model(s)", "loaded 2 cached finetune model(s)",
                  "loaded 1 cached self_ensemble model(s)"):
        assert words in out
    clean = lambda cells: cells[cells["attack"] == "clean"].set_index("defense")["clean_acc"]  # noqa: E731
    deterministic = ["target", "DVERGE", "finetuned"]  # the self-ensemble's stack is random at every call
    pd.testing.assert_series_equal(clean(again.cells)[deterministic], clean(result.cells)[deterministic])


@pytest.mark.parametrize("entry,match", [
    ('method = "dvergee"\nfrom = ["a", "b"]', "did you mean dverge"),
    ('method = "dverge"\nfrom = ["a"]', "at least 2 base model"),
    ('method = "dverge"\nfrom = ["a", "b"]\ntrain = { epoch = 3 }', "unknown DVERGE recipe keys"),
    ('method = "self_ensemble"\ntrain = { head = {} }', "unknown train keys"),
    ('method = "lgv"\nfrom = ["a"]\ntrain = { schedule = "cosine" }', "constant learning rate"),
])
def test_a_bad_derived_model_stops_the_run_before_any_training(tmp_path, slice_path, models_path, entry, match):
    from robustbench_ens.suite import SuiteError

    extra = f'[models.derived]\n{entry}\n[[defenses]]\nname = "d"\nkind = "ensemble"\nmembers = ["derived"]\n'
    with pytest.raises(SuiteError, match=match):
        _run_two_model_suite(tmp_path, slice_path, models_path, name="bad", surrogates='["a"]', target="b",
                             extra=extra)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_retry_failed_runs_only_the_failed_cells_again(tmp_path, slice_path, models_path, monkeypatch):
    original = attacks.ens.Ens.forward

    def out_of_memory_on_probs(self, images, labels):
        if self.fusion == "probs":
            raise RuntimeError("CUDA out of memory (simulated)")
        return original(self, images, labels)

    monkeypatch.setattr(attacks.ens.Ens, "forward", out_of_memory_on_probs)
    first = run_suite(_config(tmp_path, slice_path, models_path))
    failed = first.cells[first.cells["status"] != "ok"]
    assert first.failed == 4 and set(failed["attack"]) == {"Ens-probs"}
    assert failed["error"].str.contains("crafting failed: RuntimeError: CUDA out of memory").all()
    assert "failed" in (tmp_path / "lb" / "README.md").read_text(), "the page shows the failed cells"

    monkeypatch.setattr(attacks.ens.Ens, "forward", original)  # the cause is fixed
    kept = run_suite(_config(tmp_path, slice_path, models_path))
    assert kept.evaluated == 0 and kept.failed == 4, "without --retry-failed a failed cell stays recorded (and counts)"
    calls = _count_crafting(monkeypatch)
    config = _config(tmp_path, slice_path, models_path)
    config.retry_failed = True
    retried = run_suite(config)
    assert (retried.retried, retried.evaluated, retried.failed) == (4, 4, 0)
    assert sorted(retried.crafted) == [("Ens-probs", 4 / 255), ("Ens-probs", 8 / 255)] and len(calls) == 2
    assert (retried.cells["status"] == "ok").all() and len(retried.cells) == N_CELLS
    outcomes = ResultStore(tmp_path / "run" / "results.sqlite").outcomes()
    assert set(outcomes) == set(retried.cells["cell_id"]), "the retried cells have their per-example outcomes too"
    same = retried.cells.set_index("cell_id").loc[first.cells.loc[first.cells["status"] == "ok", "cell_id"]]
    assert (same["finished_at"].values == first.cells.loc[first.cells["status"] == "ok", "finished_at"].values).all()


def test_a_model_with_wrong_or_non_finite_outputs_stops_the_run(tmp_path, slice_path, models_path, monkeypatch,
                                                                capsys):
    import torch

    from robustbench_ens import workspace
    from robustbench_ens.cli import main

    class Broken(torch.nn.Module):
        def __init__(self, classes, fill=0.0):
            super().__init__()
            self.classes, self.fill, self.weight = classes, fill, torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):
            return torch.full((len(x), self.classes), self.fill) + self.weight

    class Softmaxed(torch.nn.Module):  # a model that ends in a softmax: the attacks would be weaker on it
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, x):
            return self.model(x).softmax(dim=1)

    built = workspace.build_defenses
    monkeypatch.chdir(tmp_path)
    args = ["--suite", "smoke", "--data", str(slice_path), "--models", str(models_path), "--no-progress",
            "--cache", str(tmp_path / "cache")]
    for broken, expected in ((Broken(5), "defense 'resnet2b-at' outputs shape (2, 5) on 2 images; expected (2, 10)"),
                             (Broken(10, float("nan")), "defense 'resnet2b-at' outputs NaN or infinite scores"),
                             ("softmax", "defense 'resnet2b-at' outputs probabilities (every row sums to 1)")):
        def replaced(*a, b=broken):
            made = built(*a)
            made["resnet2b-at"] = Softmaxed(made["resnet2b-at"]) if b == "softmax" else b
            return made

        monkeypatch.setattr(workspace, "build_defenses", replaced)
        assert main(args) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"error: {expected}")
    assert not (tmp_path / "leaderboards").exists()


def test_an_adaptive_attack_naming_no_defenses_runs_on_those_with_predictors(tmp_path, capsys):
    """On a single model the adaptive view is the model: the attack would be its white-box twin again."""
    from dataclasses import replace

    from conftest import TinyNet
    from defenses import Ensemble, build_defense
    from robustbench_ens.runner import adaptive_on_aggregates
    from robustbench_ens.suite import AttackEntry

    defenses = {"single": TinyNet(0), "ensemble": Ensemble([TinyNet(1), TinyNet(2)]),
                "supplied": build_defense("supplied", [TinyNet(3)]),
                "supplied-with-members": build_defense("supplied", [TinyNet(4), TinyNet(5), TinyNet(6)])}
    def entry(name, on, defenses=None):
        return AttackEntry(name=name, attack="pgd", params={}, surrogates=(), on=on, defenses=defenses)

    suite = replace(load_suite("smoke"), attacks=(entry("PGD-adaptive", "adaptive"),
                                                  entry("PGD-adaptive-named", "adaptive", ("single",)),
                                                  entry("PGD", "defense")))
    resolved = {a.name: a.defenses for a in adaptive_on_aggregates(suite, defenses).attacks}
    assert resolved == {"PGD-adaptive": ("ensemble", "supplied-with-members"), "PGD-adaptive-named": ("single",),
                        "PGD": None}, "a list the suite gives is kept; a white-box attack is left alone"
    assert "runs on no defense" not in capsys.readouterr().err
    adaptive_on_aggregates(suite, {"single": defenses["single"]})
    assert "note: the adaptive attack PGD-adaptive runs on no defense" in capsys.readouterr().err
