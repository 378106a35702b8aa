"""Cascaded attacks on each defense (as AutoAttack runs its own): each stage attacks only the points still robust,
and the per-example worst case is the one of the full grid."""
import numpy as np
import pytest
import torch
from torch import nn

import attacks.pgd
from attacks import PGD
from robustbench_ens.runner import RunConfig, run_suite
from robustbench_ens.store import ResultStore
from robustbench_ens.suite import SuiteError, load_suite

SUITE = """
name = "cascade"
surrogates = ["a"]
[data]
n_examples = 24
[threat]
eps = ["1/255", "2/255"]
[run]
device = "cpu"
[models.a]
arch = "resnet20_a"
checkpoint = "resnet20_a_standard"
[[defenses]]
name = "target"
members = ["a"]
[[attacks]]
name = "FGSM"
attack = "pgd"
on = "defense"
params = {{ steps = 1, random_start = false, alpha = "eps" }}
{cascade}
[[attacks]]
name = "PGD"
attack = "pgd"
on = "defense"
restarts = 2
params = {{ steps = 3 }}
{cascade}
[[attacks]]
name = "PGD-CW"
attack = "pgd"
on = "defense"
params = {{ steps = 3, loss = "cw" }}
{cascade}
[[attacks]]
name = "Square"
attack = "square"
on = "defense"
params = {{ n_queries = 5 }}
{cascade}
"""


def _run(tmp_path, slice_path, models_path, cascade: bool):
    path = tmp_path / f"suite_{cascade}.toml"
    path.write_text(SUITE.format(cascade="cascade = true" if cascade else ""))
    out = tmp_path / f"run_{cascade}"
    config = RunConfig(suite=load_suite(str(path)), out_dir=out, leaderboard_dir=tmp_path / f"lb_{cascade}",
                       data_path=str(slice_path), models_dir=models_path, cache_dir=tmp_path / "cache",
                       progress=False)
    result = run_suite(config)
    assert result.failed == 0
    return result.cells, ResultStore(out / "results.sqlite").outcomes(result.cells["cell_id"])


def _worst_case(cells, outcomes, eps) -> np.ndarray:
    """Robust at ``eps`` to the white-box attacks: right on the clean point and under each (one defense)."""
    robust = None
    for row in cells[~cells["attack"].isin(["clean", "Square"]) & np.isclose(cells["eps"], eps)].itertuples():
        clean, adv = outcomes[row.cell_id]
        robust = (clean & adv) if robust is None else robust & clean & adv
    return robust


def test_a_cascade_attacks_only_the_points_still_robust_and_keeps_the_worst_case(tmp_path, slice_path, models_path,
                                                                                monkeypatch):
    full_cells, full_outcomes = _run(tmp_path, slice_path, models_path, cascade=False)
    sizes = []
    original = attacks.pgd.PGD.forward
    monkeypatch.setattr(attacks.pgd.PGD, "forward", lambda self, x, y: sizes.append(len(x)) or original(self, x, y))
    cells, outcomes = _run(tmp_path, slice_path, models_path, cascade=True)

    for eps in (1 / 255, 2 / 255):
        worst = _worst_case(cells, outcomes, eps)
        assert np.array_equal(worst, _worst_case(full_cells, full_outcomes, eps)), "the cascade changed the worst case"
        at = cells[np.isclose(cells["eps"], eps)].set_index("attack")
        clean_correct = int(round(cells[cells["attack"] == "clean"]["clean_acc"].iloc[0] * 24))
        order = ["FGSM", "PGD#0", "PGD#1", "PGD-CW"]
        # the first stage attacks the points the defense gets right; each next one those still robust after it
        assert at.loc["FGSM", "attacked"] == clean_correct
        for before, stage in zip(order, order[1:]):
            assert at.loc[stage, "attacked"] == round(at.loc[before, "robust_acc"] * 24)
        # a stage's robust accuracy is the cascade's so far: it can only fall, and the last one is the worst case
        assert list(at.loc[order, "robust_acc"]) == sorted(at.loc[order, "robust_acc"], reverse=True)
        assert at.loc["PGD-CW", "robust_acc"] == pytest.approx(worst.mean())
        assert at.loc["PGD-CW", "robust_acc"] < at.loc["FGSM", "robust_acc"], "the later stages broke nothing"
        # one cascade per threat model: the black-box Square starts its own, on every point the defense gets right
        assert at.loc["Square", "attacked"] == clean_correct
    assert sum(sizes) < 4 * 2 * 24, "the cascade attacked every point"
    assert full_cells["attacked"].isna().all()


def test_only_attacks_on_each_defense_can_be_cascaded(tmp_path):
    path = tmp_path / "suite.toml"
    path.write_text(SUITE.format(cascade="").replace('on = "defense"\nrestarts = 2', 'restarts = 2\ncascade = true'))
    with pytest.raises(SuiteError, match="cascade is for attacks on each defense"):
        load_suite(str(path))
    path.write_text(SUITE.format(cascade='cascade = "yes"'))
    with pytest.raises(SuiteError, match="'cascade' must be true or false"):
        load_suite(str(path))


@pytest.mark.parametrize("norm", ["Linf", "L2"])
def test_a_random_start_does_not_depend_on_the_batch(norm):
    torch.manual_seed(0)
    images = torch.rand(6, 3, 8, 8)
    attack = PGD(nn.Sequential(nn.Flatten(), nn.Linear(192, 10)), eps=0.1, norm=norm, seed=3)
    full = attack.init_adversarial(images)
    assert torch.equal(full[[4, 1]], attack.init_adversarial(images[[4, 1]]))
    assert not torch.equal(full[0], full[1]) and not torch.equal(full, images)
    other_seed = PGD(attack.models[0], eps=0.1, norm=norm, seed=4).init_adversarial(images)
    assert not torch.equal(full, other_seed)
