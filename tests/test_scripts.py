"""The scripts under scripts/ run end to end on the smoke suite."""
import importlib.util
from pathlib import Path

import pandas as pd
import pytest

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
    assert "| Ens-I |" in page and "vs Ens: mean ± sd" in page


@pytest.mark.parametrize("text", ["Ens-I", "Ens-I=Nope:decay=0.0", "Ens-I=Ens:decay==", "Ens-probs=Ens:decay=0.0"])
def test_seed_spread_refuses_bad_variants(text):
    spread = _load("seed_spread")
    from robustbench_ens.suite import load_suite

    with pytest.raises(SystemExit, match="--variant"):
        spread.variant(load_suite("smoke"), text)
