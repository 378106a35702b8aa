"""From grid cells to leaderboard numbers: seed aggregation, rankings and the matrix.

Everything here is numeric (fractions in [0, 1], NaN for "no value"); turning numbers into
text is the job of :mod:`.views`. Rules, stated once:

* A *cell* is (eps, attack, defense); its seeds are aggregated as the mean over the seeds
  that finished ``ok`` and, with two or more, their sample standard deviation (ddof=1).
  A cell whose seeds all failed has no value and status ``failed``; one where only some
  failed keeps the mean of the others and status ``partial``. Nothing failed is ever
  turned into a number.
* The row with attack ``clean`` (eps 0) is the no-attack row: the defense's clean accuracy.
* Defense rankings (as RobustBench): one per threat model (transfer, black-box, white-box
  and adaptive, and overall), each by the **per-example** worst case of :mod:`.worst_case`:
  at each eps a point is robust only if it is right clean and no attack of that threat model
  at that eps or a smaller one turns it wrong. The strongest single attack (the per-attack
  matrix's minimum) is kept beside it. If some attack of the union failed, did not run or
  has no per-example outcomes, the worst case is only an upper bound: the defense is
  marked incomplete and ranked after the complete ones; with no attack of the threat model
  at an eps it is "not evaluated" there, and ranked last.
* Attack ranking: at each eps, the mean over defenses of the seed-mean success rate; the
  ``±`` is the std over seeds of the per-seed mean over defenses, using the seeds that ran
  on every one of those defenses (no ``±`` when fewer than two did). Attacks that failed or
  did not run on some defense are marked incomplete and ranked after complete ones.
* Repeated rows for the same (eps, attack, defense, seed) - a cell re-run - keep the last
  one by ``finished_at``; ``cells.csv`` still lists them all.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from .checks import certificate_checks, masking_warnings
from .comparisons import mean_success
from .format import canonical_eps, fmt_eps
from .worst_case import THREAT_MODELS, worst_case

CLEAN = "clean"
METRICS = ("clean_acc", "robust_acc", "success_rate", "linf_mean", "linf_max",
           "l2_mean", "l2_max", "craft_time_s", "eval_time_s")
NAN = float("nan")


@dataclass(frozen=True)
class Stat:
    """One cell aggregated over seeds."""

    mean: float = NAN
    std: float = NAN
    n_val: int = 0      # ok seeds with a value
    n_ok: int = 0       # ok seeds
    n_failed: int = 0   # failed seeds
    attacked: float = NAN  # a cascaded cell: the points its attack ran on (those still robust), mean over seeds

    @property
    def has_value(self) -> bool:
        return self.n_val > 0

    @property
    def n_seeds(self) -> int:
        return self.n_ok + self.n_failed

    @property
    def status(self) -> str:
        """ok | partial (some seeds failed) | failed | n/a (ran, no value) | missing."""
        if self.n_val > 0:
            return "partial" if self.n_failed else "ok"
        if self.n_failed:
            return "failed"
        return "n/a" if self.n_ok else "missing"

    def as_dict(self, name: str) -> dict[str, Any]:
        return {name: self.mean, f"{name}_std": self.std, "n_seeds": self.n_seeds,
                "n_failed": self.n_failed, "status": self.status}


MISSING = Stat()


@dataclass(frozen=True)
class Run:
    """One (eps, attack, defense, seed) cell as the worst case reads it."""

    ok: bool
    robust_acc: float
    outcome: tuple[np.ndarray, np.ndarray] | None  # (clean_correct, adv_correct) over the test points, if stored


def stat_of(values: pd.Series, failed: int) -> Stat:
    """Aggregate the values of the ok seeds (NaN values ignored) plus a failure count."""
    v = pd.to_numeric(values, errors="coerce").astype(float)
    vals = v.dropna()
    mean = float(vals.mean()) if len(vals) else NAN
    std = float(vals.std(ddof=1)) if len(vals) >= 2 else NAN
    return Stat(mean, std, int(len(vals)), int(len(v)), int(failed))


# --------------------------------------------------------------------------- cells


def normalize_cells(cells: pd.DataFrame, suite: str | None = None) -> pd.DataFrame:
    """A clean copy: every expected column present, eps canonical, ``ok`` flag, one row per seed."""
    missing = [c for c in ("attack", "eps", "defense") if c not in cells.columns]
    if missing:
        raise ValueError(f"cells lack required column(s): {', '.join(missing)}")
    df = cells.reset_index(drop=True).copy()
    if suite and "suite" in df.columns and (df["suite"].astype(str) == suite).any():
        df = df[df["suite"].astype(str) == suite].reset_index(drop=True)
    if "suite" in df.columns and df["suite"].dropna().astype(str).nunique() > 1:
        raise ValueError("cells hold several suites "
                         f"({sorted(df['suite'].dropna().astype(str).unique())}); "
                         "write one leaderboard per suite")
    for col in METRICS + ("n",):
        df[col] = pd.to_numeric(df[col], errors="coerce") if col in df.columns else NAN
    if "seed" not in df.columns:
        df["seed"] = 0
    for col in ("error", "finished_at"):
        if col not in df.columns:
            df[col] = None
    status = df["status"] if "status" in df.columns else pd.Series("ok", index=df.index)
    # Anything that is not explicitly ok (failed, NaN, unknown) counts as failed.
    df["ok"] = status.astype(str).str.strip().str.lower().eq("ok")
    df["attack"] = df["attack"].astype(str)
    df["defense"] = df["defense"].astype(str)
    eps = pd.to_numeric(df["eps"], errors="coerce")
    clean = df["attack"] == CLEAN
    eps = eps.mask(clean & eps.isna(), 0.0)  # the no-attack row's budget does not matter
    if eps.isna().any():
        bad = df.loc[eps.isna(), ["attack", "defense"]].drop_duplicates().values.tolist()
        raise ValueError(f"cells with a missing or non-numeric eps: {bad[:5]}")
    df["eps"] = [canonical_eps(e) for e in eps]
    order = pd.to_datetime(df["finished_at"], errors="coerce", utc=True, format="ISO8601")
    df = (df.assign(_t=order, _i=np.arange(len(df)))
            .sort_values(["_t", "_i"], na_position="first", kind="stable")
            .drop_duplicates(["eps", "attack", "defense", "seed"], keep="last")
            .sort_values("_i").drop(columns=["_t", "_i"]).reset_index(drop=True))
    return df


def _ordered(preferred: list[str], seen: list[str]) -> list[str]:
    """``preferred`` names that occur in ``seen`` first (setting order), then the rest as seen."""
    seen_set = dict.fromkeys(seen)
    out = [p for p in dict.fromkeys(preferred) if p in seen_set]
    return out + [s for s in seen_set if s not in out]


def _names(setting: dict, key: str) -> list[str]:
    items = setting.get(key) or []
    return [str(i["name"]) for i in items if isinstance(i, dict) and "name" in i]


# --------------------------------------------------------------------------- results


@dataclass
class Leaderboard:
    """All numbers of one leaderboard, ready to format."""

    suite: str
    cells: pd.DataFrame                         # normalized
    eps_list: list[float]                       # attack budgets, ascending
    headline_eps: float | None
    attacks: list[str]                          # non-clean, setting order first
    defenses: list[str]                         # ranking order
    attacks_at: dict[float, list[str]]
    robust: dict[tuple, Stat]                   # (eps, attack, defense) -> robust acc
    success: dict[tuple, Stat]                  # (eps, attack, defense) -> success rate
    clean_cell: dict[str, Stat]                 # the clean row itself, per defense
    clean_acc: dict[str, Stat]                  # best available clean accuracy per defense
    runs: dict[tuple, Run] = field(default_factory=dict)  # (eps, attack, defense, seed) -> the cell
    rankings: dict[str, list[dict]] = field(default_factory=dict)  # threat model (of those that ran) -> its ranking
    defense_ranking: list[dict] = field(default_factory=list)  # rankings["overall"]
    attack_ranking: list[dict] = field(default_factory=list)
    n_points: list[int] = field(default_factory=list)
    seeds: list = field(default_factory=list)
    masking: dict[str, list[str]] = field(default_factory=dict)  # defense -> failed gradient-masking checks
    planned: dict[str, frozenset] = field(default_factory=dict)  # attack -> the defenses it runs on, if not all
    kinds: dict[str, str] = field(default_factory=dict)  # attack -> transfer, white-box, adaptive or black-box
    groups: dict[str, str] = field(default_factory=dict)  # defense -> the group the suite puts it in, if any
    randomised: frozenset = frozenset()  # the defenses whose forward pass is random (each evaluation a fresh draw)
    certificates: dict[tuple, np.ndarray] = field(default_factory=dict)  # (defense, eps) -> its certified points
    certificate_checks: dict[str, dict[float, list[str] | None]] = field(default_factory=dict)  # see checks.py

    def certified_acc(self, defense: str, eps: float | None) -> float | None:
        """The share of points certified for ``defense`` at ``eps`` (None: no certificate there)."""
        points = self.certificates.get((defense, eps))
        return None if points is None else float(points.mean())

    def runs_on(self, attack: str, defense: str) -> bool:
        """Whether the suite runs ``attack`` on ``defense`` (an attack may name a subset of defenses)."""
        return attack not in self.planned or defense in self.planned[attack]

    def kind(self, attack: str) -> str:
        return self.kinds.get(attack, "transfer")

    def transfer_only(self, eps: float, defense: str) -> bool:
        """Whether, in a suite with attacks of other kinds, only transfer attacks gave ``defense`` a number at ``eps``
        or a smaller eps: its worst case there is an upper bound on its white-box robustness."""
        if all(kind == "transfer" for kind in self.kinds.values()):
            return False
        return not any(self.kind(a) != "transfer" and self.robust.get((e, a, defense), MISSING).has_value
                       for e in self.eps_list if e <= eps for a in self.attacks_at.get(e, []))

    def run(self, eps: float, attack: str, defense: str, seed) -> Run | None:
        return self.runs.get((eps, attack, defense, seed))

    def seeds_of(self, defense: str) -> list:
        """The seeds that have some cell of ``defense``."""
        return sorted({key[3] for key in self.runs if key[2] == defense}, key=lambda s: (str(type(s)), s))

    @property
    def failed(self) -> pd.DataFrame:
        return self.cells[~self.cells["ok"]]

    @property
    def other_eps(self) -> list[float]:
        return [e for e in self.eps_list if e != self.headline_eps]

    def matrix_stat(self, eps: float, attack: str, defense: str) -> Stat:
        if attack == CLEAN:
            cell = self.clean_cell.get(defense, MISSING)
            return cell if cell.status != "missing" else self.clean_acc.get(defense, MISSING)
        return self.robust.get((eps, attack, defense), MISSING)

    def matrix_rows(self, eps: float) -> list[str]:
        return [CLEAN] + self.attacks_at.get(eps, [])


def _cell_stats(df: pd.DataFrame, metric: str) -> dict[tuple, Stat]:
    out = {}
    for key, g in df.groupby(["eps", "attack", "defense"], sort=False):
        stat = stat_of(g.loc[g["ok"], metric], int((~g["ok"]).sum()))
        attacked = pd.to_numeric(g.loc[g["ok"], "attacked"], errors="coerce").dropna() if "attacked" in g else ()
        out[key] = replace(stat, attacked=float(attacked.mean())) if len(attacked) else stat
    return out


def _clean_stats(df: pd.DataFrame, defenses: list[str]) -> tuple[dict, dict]:
    rows = df[df["attack"] == CLEAN]
    cell, best = {}, {}
    for d in defenses:
        g = rows[rows["defense"] == d]
        vals = g.loc[g["ok"], "robust_acc"].fillna(g.loc[g["ok"], "clean_acc"])
        cell[d] = stat_of(vals, int((~g["ok"]).sum())) if len(g) else MISSING
        best[d] = cell[d]
        if not cell[d].has_value:
            # No usable clean row: every attack row also measured the clean accuracy.
            a = df[(df["attack"] != CLEAN) & (df["defense"] == d) & df["ok"]]
            per_seed = a.groupby("seed")["clean_acc"].mean()
            if per_seed.notna().any():
                best[d] = stat_of(per_seed, 0)
    return cell, best


def _rank(records: list[dict], value: str) -> None:
    """Competition ranks (1, 1, 3) in list order; ties = same completeness and value."""
    prev, rank = None, None
    for i, r in enumerate(records):
        v = r[value]
        if v is None or (isinstance(v, float) and math.isnan(v)):
            r["rank"] = None
            continue
        key = (r["complete"], round(v, 12))
        if key != prev:
            rank, prev = i + 1, key
        r["rank"] = rank


def _nan_last(v: float, sign: float) -> float:
    return math.inf if v is None or math.isnan(v) else sign * v


def defense_ranking(lb: Leaderboard, defenses: list[str], threat: str = "overall") -> list[dict]:
    """The defenses ranked by their per-example worst case over the attacks of ``threat`` at the headline eps."""
    kinds = THREAT_MODELS[threat]
    recs = []
    for d in defenses:
        by_eps = {fmt_eps(e): worst_case(lb, e, d, kinds) for e in lb.eps_list}
        head = by_eps.get(fmt_eps(lb.headline_eps)) if lb.headline_eps is not None else None
        head = head or worst_case(lb, math.inf, d, ())  # no attack results at all: not evaluated
        c = lb.clean_acc.get(d, MISSING)
        recs.append({
            "rank": None, "defense": d, "threat_model": threat, "evaluated": head["evaluated"],
            "complete": head["complete"], "clean_acc": c.mean, "clean_acc_std": c.std, "clean_status": c.status,
            "worst_robust_acc": head["robust_acc"], "worst_robust_acc_std": head["robust_acc_std"],
            "strongest_attack": head["strongest_attack"], "single_attack_acc": head["single_attack_acc"],
            "failed_attacks": head["failed_attacks"], "partial_attacks": head["partial_attacks"],
            "missing_attacks": head["missing_attacks"], "unpaired_attacks": head["unpaired_attacks"],
            "by_eps": by_eps,
        })
    recs.sort(key=lambda r: (not r["evaluated"], math.isnan(r["worst_robust_acc"]), not r["complete"],
                             _nan_last(r["worst_robust_acc"], -1), _nan_last(r["clean_acc"], -1), r["defense"]))
    _rank(recs, "worst_robust_acc")
    return recs


def _attack_at(lb: Leaderboard, eps: float, a: str) -> dict[str, Any]:
    stats = {d: lb.success.get((eps, a, d), MISSING) for d in lb.defenses if lb.runs_on(a, d)}
    valued = {d: s for d, s in stats.items() if s.has_value}
    failed = [d for d, s in stats.items() if s.status == "failed"]
    partial = [d for d, s in stats.items() if s.status == "partial"]
    absent = [d for d, s in stats.items() if s.status in ("missing", "n/a")]
    mean = float(np.mean([s.mean for s in valued.values()])) if valued else NAN
    std = NAN
    if valued:
        c = lb.cells
        ok = c[(c["eps"] == eps) & (c["attack"] == a) & c["ok"] & c["defense"].isin(list(valued))]
        piv = ok.pivot_table(index="defense", columns="seed", values="success_rate", aggfunc="mean")
        piv = piv.reindex(list(valued))
        full = piv.loc[:, piv.notna().all(axis=0)]
        if full.shape[1] >= 2:
            std = float(full.mean(axis=0).std(ddof=1))
    intervals = _intervals(lb, eps, a)
    return {"eps": eps, "eps_label": fmt_eps(eps), "success_rate": mean, "success_rate_std": std, **intervals,
            "n_defenses": len(valued), "complete": bool(valued) and not failed and not absent,
            "subset": a in lb.planned, "failed_defenses": failed, "partial_defenses": partial,
            "missing_defenses": absent}


def _intervals(lb: Leaderboard, eps: float, attack: str) -> dict[str, float]:
    """95 % bootstrap intervals of the mean success over defenses (points right clean, and all points), on the first
    seed's per-example outcomes; NaN without outcomes."""
    over_correct = mean_success(lb, eps, attack, lb.seeds[0]) if lb.seeds else None
    over_all = mean_success(lb, eps, attack, lb.seeds[0], over_all=True) if lb.seeds else None
    return {"ci_low": over_correct["ci_low"] if over_correct else NAN,
            "ci_high": over_correct["ci_high"] if over_correct else NAN,
            "success_all": over_all["mean"] if over_all else NAN,
            "ci_all_low": over_all["ci_low"] if over_all else NAN,
            "ci_all_high": over_all["ci_high"] if over_all else NAN}


def attack_ranking(lb: Leaderboard, setting: dict) -> list[dict]:
    info = {str(i.get("name")): i for i in (setting.get("attacks") or []) if isinstance(i, dict)}
    recs = []
    for a in lb.attacks:
        by_eps = {fmt_eps(e): _attack_at(lb, e, a) for e in lb.eps_list if a in lb.attacks_at[e]}
        head = by_eps.get(fmt_eps(lb.headline_eps)) if lb.headline_eps is not None else None
        head = head or {"success_rate": NAN, "success_rate_std": NAN, "n_defenses": 0,
                        "complete": False, "subset": a in lb.planned, "failed_defenses": [], "partial_defenses": [],
                        "missing_defenses": list(lb.defenses)}
        recs.append({
            "rank": None, "attack": a, "class": info.get(a, {}).get("class"),
            "surrogates": list(info.get(a, {}).get("surrogates") or []),
            "complete": head["complete"], "subset": head["subset"], "mean_success_rate": head["success_rate"],
            "mean_success_rate_std": head["success_rate_std"], "n_defenses": head["n_defenses"],
            "failed_defenses": head["failed_defenses"], "partial_defenses": head["partial_defenses"],
            "missing_defenses": head["missing_defenses"], "by_eps": by_eps,
        })
    recs.sort(key=lambda r: (math.isnan(r["mean_success_rate"]), not r["complete"] or r["subset"],
                             _nan_last(r["mean_success_rate"], -1), r["attack"]))
    _rank(recs, "mean_success_rate")
    return recs


def _runs(df: pd.DataFrame, outcomes: dict) -> dict[tuple, Run]:
    """Every cell (after re-runs are resolved) keyed by (eps, attack, defense, seed), with its outcomes if given."""
    ids = df["cell_id"] if "cell_id" in df.columns else pd.Series(None, index=df.index)
    return {(eps, attack, defense, seed): Run(bool(ok), float(robust), outcomes.get(cell_id) if ok else None)
            for eps, attack, defense, seed, ok, robust, cell_id in zip(
                df["eps"], df["attack"], df["defense"], df["seed"], df["ok"], df["robust_acc"], ids)}


def _kinds(setting: dict) -> dict[str, str]:
    return {str(a["name"]): str(a.get("kind", "transfer")) for a in setting.get("attacks") or []
            if isinstance(a, dict) and "name" in a}


def _groups(setting: dict) -> dict[str, str]:
    """Defense -> its group (``group`` in the suite: e.g. adversarially trained), for the defenses that have one."""
    return {str(d["name"]): str(d["group"]) for d in setting.get("defenses") or []
            if isinstance(d, dict) and "name" in d and d.get("group")}


def planned_eps(setting: dict) -> dict[str, frozenset]:
    """The budgets each attack of the setting is planned at (its ``eps``; settings written before it had one plan
    nothing, and the cells alone say what ran)."""
    return {str(a["name"]): frozenset(canonical_eps(float(e)) for e in a["eps"]) for a in setting.get("attacks") or []
            if isinstance(a, dict) and "name" in a and isinstance(a.get("eps"), list)}


def planned_defenses(setting: dict) -> dict[str, frozenset]:
    """The attacks of the setting that run on a subset of the defenses, and that subset."""
    return {str(a["name"]): frozenset(a["defenses"]) for a in setting.get("attacks") or []
            if isinstance(a, dict) and "name" in a and isinstance(a.get("defenses"), list)}


def _headline(setting: dict, eps_list: list[float]) -> float | None:
    if not eps_list:
        return None
    h = (setting.get("threat") or {}).get("headline_eps")
    try:
        h = canonical_eps(float(h))
    except (TypeError, ValueError):
        h = None
    return h if h in eps_list else max(eps_list)


def build(cells: pd.DataFrame, setting: dict, outcomes: dict | None = None,
          certificates: dict | None = None) -> Leaderboard:
    """Aggregate the cells and compute the rankings. ``outcomes``: ``cell_id -> (clean_correct, adv_correct)``, the
    per-example outcomes of the cells (``ResultStore.outcomes``); cells without them bound the worst case only.
    ``certificates``: ``(defense, eps) -> certified`` (bool per point, :func:`robustbench_ens.certify.certified`),
    checked against the attacks' outcomes (:func:`.checks.certificate_checks`)."""
    setting = setting or {}
    df = normalize_cells(cells, setting.get("suite"))
    suite = str(setting.get("suite") or (df["suite"].dropna().astype(str).iloc[0]
                                         if "suite" in df.columns and df["suite"].notna().any()
                                         else "leaderboard"))
    att = df[df["attack"] != CLEAN]
    plan = planned_eps(setting)  # a cell of the plan that has not run is missing, not absent from the grid
    eps_list = sorted(set(att["eps"]) | {e for budgets in plan.values() for e in budgets})
    attacks = _ordered(_names(setting, "attacks"), list(att["attack"]) + [a for a in plan if plan[a]])
    defenses = _ordered(_names(setting, "defenses"), list(df["defense"]))
    attacks_at = {e: [a for a in attacks if a in set(att.loc[att["eps"] == e, "attack"]) or e in plan.get(a, ())]
                  for e in eps_list}
    clean_cell, clean_acc = _clean_stats(df, defenses)
    seeds = sorted(set(df["seed"].dropna()), key=lambda s: (str(type(s)), s))
    lb = Leaderboard(
        suite=suite, cells=df, eps_list=eps_list, headline_eps=_headline(setting, eps_list),
        attacks=attacks, defenses=defenses, attacks_at=attacks_at,
        robust=_cell_stats(att, "robust_acc"), success=_cell_stats(att, "success_rate"),
        clean_cell=clean_cell, clean_acc=clean_acc,
        n_points=sorted({int(n) for n in df["n"].dropna()}), seeds=seeds, planned=planned_defenses(setting),
        groups=_groups(setting), kinds=_kinds(setting), runs=_runs(df, outcomes or {}),
        randomised=frozenset(str(d["name"]) for d in setting.get("defenses") or []
                             if isinstance(d, dict) and "name" in d and d.get("randomised")),
        certificates={(str(d), canonical_eps(float(e))): np.asarray(points, dtype=bool)
                      for (d, e), points in (certificates or {}).items()})
    lb.rankings = {threat: defense_ranking(lb, defenses, threat) for threat, kinds in THREAT_MODELS.items()
                   if threat == "overall" or any(lb.kind(a) in kinds for a in attacks)}  # those the suite ran
    lb.defense_ranking = lb.rankings["overall"]
    lb.defenses = [r["defense"] for r in lb.defense_ranking]
    lb.attack_ranking = attack_ranking(lb, setting)
    lb.masking = masking_warnings(lb, setting)
    lb.certificate_checks = certificate_checks(lb)
    return lb


# --------------------------------------------------------------------------- exports


def _flat(rec: dict, drop: tuple = ("by_eps",)) -> dict:
    return {k: ("; ".join(map(str, v)) if isinstance(v, list) else v)
            for k, v in rec.items() if k not in drop}


def _rounded(df: pd.DataFrame, digits: int = 6) -> pd.DataFrame:
    """CSV tidiness: 0.42 rather than 0.42000000000000004 (JSON keeps full precision)."""
    floats = df.select_dtypes(include="float").columns
    return df.assign(**{c: df[c].round(digits) for c in floats})


def defenses_frame(lb: Leaderboard) -> pd.DataFrame:
    """defenses.csv: the overall defense ranking, one row per defense: the per-example worst case and the strongest
    single attack at every eps, then each threat model's per-example worst case (``<threat>:worst_robust_acc@eps``,
    empty where it was not evaluated)."""
    frame = _ranking_frame(lb.defense_ranking, {"robust_acc": "worst_robust_acc",
                                                "robust_acc_std": "worst_robust_acc_std",
                                                "single_attack_acc": "single_attack_acc",
                                                "strongest_attack": "strongest_attack", "complete": "complete"})
    for threat, ranking in lb.rankings.items():
        if threat == "overall":
            continue
        by_defense = {r["defense"]: r["by_eps"] for r in ranking}
        for label in (fmt_eps(e) for e in lb.eps_list):
            for key in ("robust_acc", "complete"):
                frame[f"{threat}:{'worst_robust_acc' if key == 'robust_acc' else key}@{label}"] = [
                    by_defense[d][label][key] if by_defense[d][label]["evaluated"] else None for d in frame["defense"]]
    return _rounded(frame)


def attacks_frame(lb: Leaderboard) -> pd.DataFrame:
    """attacks.csv: the attack ranking, one row per attack, mean success rate at every eps."""
    return _ranking_frame(lb.attack_ranking, {"success_rate": "mean_success_rate",
                                              "success_rate_std": "mean_success_rate_std", "ci_low": "ci_low",
                                              "ci_high": "ci_high", "success_all": "mean_success_all",
                                              "ci_all_low": "ci_all_low", "ci_all_high": "ci_all_high",
                                              "complete": "complete"})


def _ranking_frame(ranking: list[dict], columns: dict[str, str]) -> pd.DataFrame:
    """One row per ranked entry; each per-eps statistic ``key`` becomes the column ``name@eps``."""
    rows = []
    for entry in ranking:
        row = _flat(entry)
        for label, stats in entry["by_eps"].items():
            row.update({f"{name}@{label}": stats[key] for key, name in columns.items()})
        rows.append(row)
    return _rounded(pd.DataFrame(rows))


def matrix_frame(lb: Leaderboard) -> pd.DataFrame:
    """matrix.csv: wide per eps - one row per (eps, attack incl. clean), one column per defense
    with the seed-mean robust accuracy (a fraction), ``failed`` for failed cells, empty when
    the cell did not run; ``<defense> std`` columns when some cell has several seeds."""
    with_std = any(s.n_val >= 2 for s in lb.robust.values()) or \
        any(s.n_val >= 2 for s in lb.clean_cell.values())
    rows = []
    for e in lb.eps_list:
        for a in lb.matrix_rows(e):
            row: dict[str, Any] = {"eps": e, "eps_label": fmt_eps(e), "attack": a}
            for d in lb.defenses:
                s = lb.matrix_stat(e, a, d)
                row[d] = "failed" if s.status == "failed" else (
                    round(s.mean, 6) if s.has_value else None)
                if with_std:
                    row[f"{d} std"] = round(s.std, 6) if not math.isnan(s.std) else None
            rows.append(row)
    cols = ["eps", "eps_label", "attack"] + [c for d in lb.defenses
                                             for c in ([d, f"{d} std"] if with_std else [d])]
    return pd.DataFrame(rows, columns=cols)


def matrix_json(lb: Leaderboard) -> dict[str, Any]:
    out = {}
    for e in lb.eps_list:
        rows = lb.matrix_rows(e)
        out[fmt_eps(e)] = {
            "eps": e, "headline": e == lb.headline_eps, "attacks": rows, "defenses": lb.defenses,
            "robust_acc": {a: {d: lb.matrix_stat(e, a, d).as_dict("robust_acc")
                               for d in lb.defenses} for a in rows},
        }
    return out


def cells_frame(cells: pd.DataFrame) -> pd.DataFrame:
    """cells.csv: the cells exactly as given."""
    return cells.reset_index(drop=True)
