"""Statistics behind attack comparisons: Wilson intervals, exact McNemar, Holm, paired bootstrap, verdicts."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from robustbench_ens.leaderboard import stats as lbstats
from robustbench_ens.leaderboard.stats import (holm, mcnemar_exact, paired_bootstrap, paired_success, verdict,
                                               wilson_interval)


def _wilson_by_hand(k: int, n: int, confidence: float) -> tuple[float, float]:
    z = stats.norm.ppf(0.5 + confidence / 2)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def _subset(rng: np.random.Generator, of: np.ndarray, size: int) -> np.ndarray:
    """A boolean mask with ``size`` True entries, all inside ``of``."""
    mask = np.zeros_like(of)
    mask[rng.choice(np.flatnonzero(of), size=size, replace=False)] = True
    return mask


def test_wilson_matches_known_value_scipy_and_formula():
    low, high = wilson_interval(45, 100)
    assert low == pytest.approx(0.3561, abs=1e-4) and high == pytest.approx(0.5476, abs=1e-4)
    assert (low, high) == pytest.approx(_wilson_by_hand(45, 100, 0.95), abs=1e-12)
    ci = stats.binomtest(45, 100).proportion_ci(confidence_level=0.95, method="wilson")
    assert (low, high) == pytest.approx((ci.low, ci.high), abs=1e-15)
    assert wilson_interval(7, 30, 0.99) == pytest.approx(_wilson_by_hand(7, 30, 0.99), abs=1e-12)
    assert wilson_interval(7, 30, 0.99)[0] < wilson_interval(7, 30)[0]  # higher confidence, wider interval
    assert wilson_interval(0, 10)[0] == pytest.approx(0.0, abs=1e-15) and 0 < wilson_interval(0, 10)[1] < 1


def test_wilson_with_no_trials_is_nan():
    low, high = wilson_interval(0, 0)
    assert math.isnan(low) and math.isnan(high)


def test_mcnemar_exact_values_and_symmetry():
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(10, 0) == pytest.approx(2 * 0.5 ** 10, rel=1e-12)
    assert mcnemar_exact(6, 1) == pytest.approx(2 * (1 + 7) / 2 ** 7, rel=1e-12)
    assert mcnemar_exact(3, 3) == 1.0
    for only_a, only_b in [(10, 0), (6, 1), (17, 9), (0, 4)]:
        assert mcnemar_exact(only_a, only_b) == mcnemar_exact(only_b, only_a)


def test_holm_hand_example():
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02], abs=1e-12)
    assert holm(np.array([0.5, 0.6])) == pytest.approx([1.0, 1.0])  # 2 * 0.5 = 1.0, then monotone, capped at 1
    assert holm([0.2]) == pytest.approx([0.2])


def test_holm_passes_nan_through_and_leaves_it_out_of_the_family():
    adjusted = holm([0.01, float("nan"), 0.04, 0.03, 0.005])
    assert math.isnan(adjusted[1])
    assert np.delete(adjusted, 1) == pytest.approx([0.03, 0.06, 0.06, 0.02], abs=1e-12)  # family of 4, not 5
    assert np.isnan(holm([float("nan"), float("nan")])).all()
    assert holm([]).shape == (0,)


def test_paired_success_on_a_hand_made_table():
    # blocks of points: only a breaks 6, only b 1, both 2, neither 3 (all eligible), then 4 ineligible that
    # a breaks (2 of them with b): they must not count anywhere
    blocks = np.array([6, 1, 2, 3, 4])
    broken_a = np.repeat([True, False, True, False, True], blocks)
    broken_b = np.repeat([False, True, True, False, False], blocks)
    broken_b[-2:] = True
    eligible = np.repeat([True, True, True, True, False], blocks)
    result = paired_success(broken_a, broken_b, eligible)
    assert result == {"n": 12, "success_a": pytest.approx(8 / 12), "success_b": pytest.approx(3 / 12),
                      "only_a": 6, "only_b": 1, "p_value": pytest.approx(16 / 128)}


def test_paired_success_with_no_eligible_point():
    result = paired_success(np.ones(5, bool), np.zeros(5, bool), np.zeros(5, bool))
    assert result["n"] == 0 and result["only_a"] == 0 and result["only_b"] == 0 and result["p_value"] == 1.0
    assert math.isnan(result["success_a"]) and math.isnan(result["success_b"])


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError):
        paired_success(np.ones(5, bool), np.ones(4, bool), np.ones(5, bool))
    with pytest.raises(ValueError):
        paired_bootstrap(np.ones(5, bool), np.ones(5, bool), np.ones(5, bool))  # 1-D, not (defenses, points)


def test_bootstrap_identical_attacks_show_no_difference():
    rng = np.random.default_rng(1)
    broken = rng.random((3, 300)) < 0.4
    eligible = rng.random((3, 300)) < 0.9
    result = paired_bootstrap(broken, broken.copy(), eligible, n_boot=500, seed=3)
    assert result["difference"] == 0.0 and result["ci_low"] == 0.0 and result["ci_high"] == 0.0
    assert result["p_value"] == 1.0
    assert result["mean_a"] == result["mean_b"] == pytest.approx(np.mean((broken & eligible).sum(1) / eligible.sum(1)))
    assert result["n_boot"] == 500 and result["seed"] == 3
    assert verdict(result["difference"], result["p_value"], "A", "B") == "no significant difference"


def test_bootstrap_clearly_stronger_attack():
    rng = np.random.default_rng(2)
    broken_a = np.stack([_subset(rng, np.ones(500, bool), 300) for _ in range(3)])  # 60 %
    broken_b = np.stack([_subset(rng, row, 100) for row in broken_a])  # 20 %, inside a's broken points
    eligible = np.ones((3, 500), bool)
    result = paired_bootstrap(broken_a, broken_b, eligible, seed=0)
    assert result["difference"] == pytest.approx(0.4)
    assert result["mean_a"] == pytest.approx(0.6) and result["mean_b"] == pytest.approx(0.2)
    assert 0 < result["ci_low"] < 0.4 < result["ci_high"]
    assert result["p_value"] < 0.01
    assert verdict(result["difference"], result["p_value"], "PGD", "FGSM") == "PGD stronger"
    swapped = paired_bootstrap(broken_b, broken_a, eligible, seed=0)  # b minus a: the mirror image
    assert swapped["difference"] == pytest.approx(-0.4) and swapped["ci_high"] < 0
    assert (swapped["ci_low"], swapped["ci_high"]) == pytest.approx((-result["ci_high"], -result["ci_low"]))
    assert verdict(swapped["difference"], swapped["p_value"], "FGSM", "PGD") == "PGD stronger"


def test_bootstrap_small_random_difference_is_not_significant():
    rng = np.random.default_rng(4)
    broken_a = rng.random((3, 200)) < 0.3  # two independent attacks, each breaking about 30 %
    broken_b = rng.random((3, 200)) < 0.3
    eligible = np.ones((3, 200), bool)
    result = paired_bootstrap(broken_a, broken_b, eligible, seed=0)
    assert result["ci_low"] < 0 < result["ci_high"]
    assert result["p_value"] > 0.05
    assert verdict(result["difference"], result["p_value"], "A", "B") == "no significant difference"


def test_bootstrap_is_reproducible_with_its_seed():
    rng = np.random.default_rng(5)
    broken_a, broken_b = rng.random((2, 4, 150)) < 0.35
    eligible = rng.random((4, 150)) < 0.8
    first = paired_bootstrap(broken_a, broken_b, eligible, n_boot=400, seed=11)
    assert paired_bootstrap(broken_a, broken_b, eligible, n_boot=400, seed=11) == first
    other = paired_bootstrap(broken_a, broken_b, eligible, n_boot=400, seed=12)
    assert other["difference"] == first["difference"] and other["ci_low"] != first["ci_low"]


def test_pairing_separates_a_small_consistent_difference():
    """b breaks exactly a's points minus 3 % of all points: the separate Wilson intervals overlap on every
    defense, so an unpaired look cannot tell the attacks apart, but the paired interval excludes 0."""
    rng = np.random.default_rng(6)
    broken_a = np.stack([_subset(rng, np.ones(1000, bool), 500) for _ in range(3)])
    broken_b = broken_a & ~np.stack([_subset(rng, row, 30) for row in broken_a])
    eligible = np.ones((3, 1000), bool)
    for row_a, row_b, row_e in zip(broken_a, broken_b, eligible):
        one = paired_success(row_a, row_b, row_e)
        assert (one["only_a"], one["only_b"]) == (30, 0) and one["p_value"] < 1e-8
        assert wilson_interval(int(row_b.sum()), 1000)[1] > wilson_interval(int(row_a.sum()), 1000)[0]
    result = paired_bootstrap(broken_a, broken_b, eligible, seed=0)
    assert result["difference"] == pytest.approx(0.03)
    assert 0 < result["ci_low"] < 0.03 < result["ci_high"] < 0.05
    assert result["p_value"] < 0.01
    assert verdict(result["difference"], result["p_value"], "A", "B") == "A stronger"


def test_bootstrap_matches_a_plain_loop_and_skips_defenses_without_eligible_points():
    """Replicate r resamples the points with row r of rng.integers(0, n_points, (n_boot, n_points)); a defense
    with no eligible point in a replicate is left out of that replicate's mean (defense 1 has one eligible point)."""
    rng = np.random.default_rng(7)
    broken_a, broken_b = rng.random((2, 3, 15)) < 0.5
    eligible = rng.random((3, 15)) < 0.8
    eligible[1] = False
    eligible[1, 4] = True
    eligible[2] = False  # never eligible: left out of every mean
    n_boot, seed = 60, 9
    indices = np.random.default_rng(seed).integers(0, 15, size=(n_boot, 15))
    loop = []
    for idx in indices:
        a, b, e = broken_a[:, idx], broken_b[:, idx], eligible[:, idx]
        counted = e.sum(1) > 0
        loop.append(np.mean([(a[d] & e[d]).sum() / e[d].sum() - (b[d] & e[d]).sum() / e[d].sum()
                             for d in np.flatnonzero(counted)]))
    loop = np.array(loop)
    assert np.isnan(loop).sum() == 0 and (~eligible[1, indices].any(axis=1)).any()  # some replicates drop d=1
    result = paired_bootstrap(broken_a, broken_b, eligible, n_boot=n_boot, seed=seed)
    success = [((broken_a[d] & eligible[d]).sum() - (broken_b[d] & eligible[d]).sum()) / eligible[d].sum()
               for d in (0, 1)]
    assert result["difference"] == pytest.approx(np.mean(success))
    assert (result["ci_low"], result["ci_high"]) == pytest.approx(tuple(np.quantile(loop, [0.025, 0.975])))
    assert result["p_value"] == pytest.approx(min(1.0, 2 * min(np.mean(loop <= 0), np.mean(loop >= 0))))


def test_bootstrap_is_the_same_when_drawn_in_chunks(monkeypatch):
    rng = np.random.default_rng(8)
    broken_a, broken_b = rng.random((2, 2, 50)) < 0.4
    eligible = rng.random((2, 50)) < 0.9
    whole = paired_bootstrap(broken_a, broken_b, eligible, n_boot=300, seed=1)
    monkeypatch.setattr(lbstats, "_CHUNK_ELEMENTS", 50 * 7)  # 7 replicates at a time, the last chunk short
    assert paired_bootstrap(broken_a, broken_b, eligible, n_boot=300, seed=1) == whole


def test_verdict_rules():
    assert verdict(0.1, 0.01, "A", "B") == "A stronger"
    assert verdict(-0.1, 0.01, "A", "B") == "B stronger"
    assert verdict(0.1, 0.05, "A", "B") == "no significant difference"  # p equal to alpha is not below it
    assert verdict(0.1, float("nan"), "A", "B") == "no significant difference"
    assert verdict(0.1, 0.02, "A", "B", alpha=0.01) == "no significant difference"
