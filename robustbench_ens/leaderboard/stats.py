"""Statistics for honest attack comparisons on a leaderboard: intervals, paired tests, multiple comparisons.

Rules and their sources:

* **One success rate** (share of eligible points an attack breaks) gets the Wilson score interval (Wilson 1927;
  recommended over the Wald interval by Brown, Cai & DasGupta, "Interval Estimation for a Binomial Proportion",
  2001), computed by :func:`scipy.stats.binomtest` ``proportion_ci(method="wilson")``, without continuity correction.
* **Two attacks on one defense** are compared on the same test points, so the test is paired: the exact McNemar
  test (McNemar 1947), a two-sided binomial test with p = 1/2 on the discordant points only (broken by one attack
  and not the other). Points both attacks break, or both miss, carry no evidence either way.
* **A point is eligible** when the defense classifies it correctly clean in both cells; success rates and
  discordant counts are taken over eligible points only (a point already wrong cannot be "broken").
* **Two attacks over several defenses** are compared by the mean over defenses of the success-rate difference
  (attack a minus attack b), with a paired percentile bootstrap over test points (Efron & Tibshirani,
  "An Introduction to the Bootstrap", 1993, ch. 13): each replicate resamples the point indices with replacement
  once and applies that one resample to every defense and to both attacks, so the correlation between the attacks
  (and between defenses) on the same points is kept. Replicate ``r`` uses row ``r`` of
  ``numpy.random.default_rng(seed).integers(0, n_points, size=(n_boot, n_points))``, so results are reproducible.
  A defense with no eligible point in a replicate is left out of that replicate's mean.
  The bootstrap p-value, ``min(1, 2 * min(share of replicates <= 0, share >= 0))``, is the usual
  percentile-bootstrap approximation (it inverts the percentile interval), not an exact test.
* **Several comparisons at once** (one leaderboard, many attack pairs) get Holm-Bonferroni adjusted p-values
  (Holm, "A Simple Sequentially Rejective Multiple Test Procedure", 1979), which control the family-wise error
  rate with no assumption on how the tests depend on each other. NaN p-values are not tests: they stay NaN and
  do not count in the family size.
* **A verdict** names the stronger attack only when the (adjusted, where several) p-value is below ``alpha``;
  otherwise it reads "no significant difference".
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from scipy import stats

_CHUNK_ELEMENTS = 2_000_000  # resampled indices drawn at a time: bounds the bootstrap's working memory


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of ``successes / trials``, as fractions in [0, 1]; (nan, nan) when ``trials == 0``."""
    if trials == 0:
        return float("nan"), float("nan")
    ci = stats.binomtest(int(successes), int(trials)).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts; 1.0 when there are none."""
    if only_a + only_b == 0:
        return 1.0
    return float(stats.binomtest(int(only_a), int(only_a + only_b), 0.5).pvalue)


def holm(pvalues: list[float] | np.ndarray) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values in the given order; NaN stays NaN and is not counted in the family."""
    p = np.asarray(pvalues, dtype=float)
    adjusted = np.full(p.shape, np.nan)
    tested = np.flatnonzero(~np.isnan(p))
    order = tested[np.argsort(p[tested], kind="stable")]
    m = order.size
    stepped = (m - np.arange(m)) * p[order]
    adjusted[order] = np.minimum(np.maximum.accumulate(stepped), 1.0)
    return adjusted


def paired_success(broken_a: np.ndarray, broken_b: np.ndarray, eligible: np.ndarray) -> dict:
    """Success rates of attacks a and b on one defense over its eligible points, with the exact McNemar p-value."""
    a, b, e = _as_masks(broken_a, broken_b, eligible, ndim=1)
    n = int(e.sum())
    only_a = int((a & ~b & e).sum())
    only_b = int((b & ~a & e).sum())
    return {"n": n, "success_a": _rate((a & e).sum(), n), "success_b": _rate((b & e).sum(), n),
            "only_a": only_a, "only_b": only_b, "p_value": mcnemar_exact(only_a, only_b)}


def paired_bootstrap(broken_a: np.ndarray, broken_b: np.ndarray, eligible: np.ndarray, n_boot: int = 2000,
                     seed: int = 0, confidence: float = 0.95) -> dict:
    """Mean over defenses of success(a) - success(b), with a paired percentile-bootstrap interval over points.

    Inputs are boolean arrays of shape (n_defenses, n_points), the same points in every row. See the module
    docstring for the resampling rule; the p-value is the usual percentile-bootstrap approximation.
    """
    a, b, e = _as_masks(broken_a, broken_b, eligible, ndim=2)
    if a.shape[1] == 0:
        raise ValueError("paired_bootstrap needs at least one test point")
    masks = np.concatenate([a & e, b & e, e]).T.astype(np.float64)  # (n_points, 3 * n_defenses)
    observed = _mean_difference(masks.sum(axis=0))
    replicates = np.concatenate([_mean_difference(w @ masks)[0] for w in _resample_weights(a.shape[1], n_boot, seed)])
    finite = replicates[~np.isnan(replicates)]
    tail = (1.0 - confidence) / 2.0
    ci_low, ci_high = np.quantile(finite, [tail, 1.0 - tail]) if finite.size else (np.nan, np.nan)
    p_value = min(1.0, 2.0 * min(np.mean(finite <= 0), np.mean(finite >= 0))) if finite.size else np.nan
    return {"difference": float(observed[0]), "ci_low": float(ci_low), "ci_high": float(ci_high),
            "p_value": float(p_value), "mean_a": float(observed[1]), "mean_b": float(observed[2]),
            "n_boot": n_boot, "seed": seed}


def verdict(difference: float, p_value: float, name_a: str, name_b: str, alpha: float = 0.05) -> str:
    """Which attack is stronger, or "no significant difference" when ``p_value`` is not below ``alpha`` (or NaN)."""
    if not p_value < alpha:
        return "no significant difference"
    return f"{name_a} stronger" if difference > 0 else f"{name_b} stronger"


def _as_masks(*arrays: np.ndarray, ndim: int) -> list[np.ndarray]:
    masks = [np.asarray(x, dtype=bool) for x in arrays]
    if any(m.ndim != ndim or m.shape != masks[0].shape for m in masks):
        raise ValueError(f"broken_a, broken_b and eligible must be {ndim}-D arrays of one shape, "
                         f"got {[m.shape for m in masks]}")
    return masks


def _rate(count: int, n: int) -> float:
    return float(count) / n if n else float("nan")


def _resample_weights(n_points: int, n_boot: int, seed: int) -> Iterator[np.ndarray]:
    """Per replicate, how often each point is drawn: chunks of shape (k, n_points) summing to ``n_boot`` rows.

    The indices are drawn chunk by chunk from one generator, which gives the same stream as drawing
    ``integers(0, n_points, size=(n_boot, n_points))`` at once.
    """
    rng = np.random.default_rng(seed)
    chunk = max(1, _CHUNK_ELEMENTS // n_points)
    for start in range(0, n_boot, chunk):
        k = min(chunk, n_boot - start)
        flat = (rng.integers(0, n_points, size=(k, n_points)) + n_points * np.arange(k)[:, None]).ravel()
        yield np.bincount(flat, minlength=k * n_points).reshape(k, n_points).astype(np.float64)


def _mean_difference(counts: np.ndarray) -> np.ndarray:
    """(difference, mean_a, mean_b) over defenses from counts [broken_a, broken_b, eligible] x defenses.

    ``counts`` has shape (..., 3 * n_defenses); the result has shape (3, ...). Defenses with no eligible point
    are left out; NaN where no defense has one.
    """
    broken_a, broken_b, n = np.split(counts, 3, axis=-1)
    counted = n > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        rate_a = np.where(counted, broken_a / n, 0.0).sum(axis=-1) / counted.sum(axis=-1)
        rate_b = np.where(counted, broken_b / n, 0.0).sum(axis=-1) / counted.sum(axis=-1)
    return np.stack([rate_a - rate_b, rate_a, rate_b])
