"""The scripts under scripts/ run end to end on the smoke suite."""
import json
import importlib.util
from pathlib import Path

import pandas as pd
import torch
import pytest

from robustbench_ens.leaderboard.per_example import PublishedError, read_published

REPO = Path(__file__).resolve().parents[1]


def _load(name):
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_seed_spread_on_the_smoke_suite(tmp_path, slice_path, models_path):
    spread = _load("seed_spread")
    out = tmp_path / "spread"
    assert spread.main(["--suite", "smoke", "--data", str(slice_path), "--models", str(models_path),
                        "--cache", str(tmp_path / "cache"), "--device", "cpu", "--seeds", "0", "1",
                        "--n-examples", "6", "--eps", "8/255", "--variant", "Ens-I=Ens:decay=0.0,steps=3",
                        "--out", str(out)]) == 0
    cells = pd.read_csv(out / "spread.csv")
    assert len(cells) == 2 * 3 * 2  # seeds x (Ens, Ens-probs, Ens-I) x defenses
    assert set(cells["attack"]) == {"Ens", "Ens-probs", "Ens-I"}
    assert cells["success_rate"].between(0, 1).all()
    page = (out / "README.md").read_text()
    assert "| Ens-I |" in page and "vs Ens (on the same pool): mean ± sd" in page


def test_seed_spread_compares_each_attack_with_the_reference_on_its_own_pool():
    spread = _load("seed_spread")
    attacks = ["Ens@homo", "Ens@hetero", "CWA@homo", "CWA@hetero", "LGV-RN20", "Ens"]
    assert spread.reference_of("CWA@hetero", "Ens", attacks) == "Ens@hetero"
    assert spread.reference_of("CWA@homo", "Ens", attacks) == "Ens@homo"
    assert spread.reference_of("LGV-RN20", "Ens", attacks) == "Ens"
    assert spread.reference_of("CWA@homo", "Ens", ["CWA@homo", "Ens"]) == "Ens"
    assert spread.reference_of("CWA@homo", "Ens", ["CWA@homo"]) is None


@pytest.mark.parametrize("text", ["Ens-I", "Ens-I=Nope:decay=0.0", "Ens-I=Ens:decay==", "Ens-probs=Ens:decay=0.0"])
def test_seed_spread_refuses_bad_variants(text):
    spread = _load("seed_spread")
    from robustbench_ens.suite import load_suite

    with pytest.raises(SystemExit, match="--variant"):
        spread.variant(load_suite("smoke"), text)


def test_train_defense_caches_where_a_suite_finds_it(tmp_path, slice_path, models_path, capsys):
    train = _load("train_defense")
    bases = [str(models_path / f"resnet20_b_baseline_m{i}.safetensors") for i in range(2)]
    argv = ["dverge", "--name", "ours", "--from", *bases, "--data", str(slice_path), "--cache", str(tmp_path),
            "--device", "cpu", "--train", "epochs=1", "batch_size=16", "n_train=16", "steps=1", "milestones=[1]"]
    assert train.main(argv) == 0
    assert "2 model(s) in" in capsys.readouterr().out
    (folder,) = tmp_path.glob("ours-*")
    assert (folder / "collection.json").is_file()

    from robustbench_ens.data import load_cifar10
    from robustbench_ens.zoo import load_checkpoint, resolve_derived

    loaded = [load_checkpoint(path) for path in bases]  # what a suite entry with these settings resolves to
    _, provenance = resolve_derived("ours", "dverge", [m for m, _ in loaded], [r["sha256"] for _, r in loaded],
                                    load_cifar10(slice_path), tmp_path, seed=0,
                                    train={"epochs": 1, "batch_size": 16, "n_train": 16, "steps": 1,
                                           "milestones": [1]})
    assert provenance["origin"] == "cache" and provenance["path"] == str(folder)


def test_train_defense_parses_nested_assignments_and_refuses_bad_input(tmp_path, capsys):
    train = _load("train_defense")
    assert train.parse_assignments(["backbone.epochs=3", "heads.lr=0.01", "k=2", 'name="x"'], "--train") == \
        {"backbone": {"epochs": 3}, "heads": {"lr": 0.01}, "k": 2, "name": "x"}
    for bad in (["epochs"], ["name=x y"]):
        with pytest.raises(ValueError, match="--train"):
            train.parse_assignments(bad, "--train")
    assert train.main(["dverge", "--from", str(tmp_path / "missing.safetensors")]) == 2
    assert "error:" in capsys.readouterr().err


SELF_ENSEMBLE_SUITE = """
extends = "smoke"
name = "smoke-se"

[models.se]
method = "self_ensemble"
from = []
params = { depth = 8, head_blocks = [1, 2], k = 2, stack = { resolutions = [32, 8] } }
train.backbone = { epochs = 1, n_train = 32, batch_size = 16 }
train.heads = { epochs = 1, n_train = 32, batch_size = 16 }

[[defenses]]
name = "SE"
kind = "self_ensemble"
members = ["se"]
"""


def test_self_ensemble_accuracy_on_a_tiny_self_ensemble(tmp_path, slice_path, models_path):
    script = _load("self_ensemble_accuracy")
    suite = tmp_path / "se.toml"
    suite.write_text(SELF_ENSEMBLE_SUITE)
    out = tmp_path / "se"
    assert script.main(["--suite", str(suite), "--data", str(slice_path), "--models", str(models_path),
                        "--cache", str(tmp_path / "cache"), "--device", "cpu", "--draws", "2",
                        "--n-examples", "8", "--out", str(out)]) == 0
    table = pd.read_csv(out / "accuracy.csv")
    predictors = ["head on block 1", "head on block 2", "the backbone's classifier"]
    assert list(table["predictor"].unique()) == predictors + [script.CROSSMAX, script.MEAN]
    assert sorted(table["draw"].unique()) == [0, 1] and table["accuracy"].between(0, 1).all()
    assert (table["accuracy"] * 8).round(6).mod(1).eq(0).all(), "a share of 8 points"
    page = (out / "README.md").read_text()
    assert "self-ensemble (Fort and Lakshminarayanan 2024) trained here from scratch" in page
    assert "2 seeded draws" in page
    assert "| CrossMax (the defense) |" in page
    assert "| draws k | correct in all k (%) |" in page and "\n| 1 | " in page and "\n| 2 | " in page

    again = tmp_path / "again"
    script.main(["--suite", str(suite), "--data", str(slice_path), "--models", str(models_path), "--cache",
                 str(tmp_path / "cache"), "--device", "cpu", "--draws", "2", "--n-examples", "8", "--out", str(again)])
    assert pd.read_csv(again / "accuracy.csv").equals(table), "seeded draws, cached model: the same figures"


def test_the_share_correct_in_every_draw_falls_with_the_draws():
    script = _load("self_ensemble_accuracy")
    correct = torch.tensor([[1, 1, 0, 1], [1, 0, 0, 1], [1, 1, 1, 0]], dtype=torch.bool)  # 3 draws, 4 points
    assert script.every_draw(correct) == {1: 0.75, 2: 0.5, 3: 0.25}


def test_self_ensemble_accuracy_needs_a_self_ensemble(tmp_path, slice_path, models_path):
    script = _load("self_ensemble_accuracy")
    with pytest.raises(SystemExit, match="no self-ensemble defense"):
        script.main(["--suite", "smoke", "--data", str(slice_path), "--models", str(models_path),
                     "--cache", str(tmp_path / "cache"), "--device", "cpu", "--out", str(tmp_path / "x")])


def test_every_published_per_example_leaderboard_renders_again_from_its_own_files(tmp_path):
    """The audit scripts/republish.py makes: a leaderboard's data files come back byte-identical from its published
    cells, setting and per-example outcomes (so its pages can take the current layout without the run folder)."""
    republish = _load("republish")
    folders = [f.parent for f in sorted((REPO / "leaderboards").rglob(republish.PER_EXAMPLE))]
    renderable = [f for f in folders if not json.loads((f / "leaderboard.json").read_text())["certificates"]]
    assert renderable, "no published per-example leaderboard without certificates"
    for folder in renderable:
        out = tmp_path / folder.name
        assert republish.main([str(folder), "--out", str(out)]) == 0, folder
        assert republish.digests(out) == republish.digests(folder), folder


def test_republish_refuses_what_it_cannot_render(tmp_path, capsys):
    republish = _load("republish")
    with pytest.raises(SystemExit) as exit_:
        # the first edition: no per-example outcomes
        republish.main([str(REPO / "leaderboards" / "cifar10" / "first_edition"), "--out", str(tmp_path)])
    assert exit_.value.code == 2 and "lacks" in capsys.readouterr().err
    with pytest.raises(PublishedError, match="lacks"):
        read_published(REPO / "leaderboards" / "cifar10" / "first_edition")
    with pytest.raises(PublishedError, match="certified"):
        read_published(REPO / "leaderboards" / "cifar10_pools")
    cells, setting, outcomes = read_published(REPO / "leaderboards" / "cifar10_pools", for_pages=False)
    ok = cells[cells["error"].isna()]
    assert set(outcomes) <= set(ok["cell_id"]) and len(outcomes) > 0 and setting
