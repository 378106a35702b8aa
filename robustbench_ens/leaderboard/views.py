"""Display tables: the text (and sort keys) of every table on the page.

Markdown and HTML render the same :class:`DisplayTable` objects, so a number is formatted
in exactly one place. A table is three aligned DataFrames: ``text`` (what is shown),
``sort`` (a float per cell for numeric-aware sorting, NaN where the text is not a number)
and ``flags`` (``""`` or a status such as ``failed`` / ``partial`` / ``incomplete`` that the
HTML page colours; the text itself always says it too).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any
from collections.abc import Callable

import numpy as np
import pandas as pd

from ..text import plural
from .format import DASH, FAILED, fmt_eps, fmt_frac_or_pct, fmt_params, fmt_pct, fmt_seconds, fmt_value, is_missing
from .comparisons import POOLED, is_pooled
from .tables import CLEAN, MISSING, Leaderboard, Stat

UPPER = "≤ "  # marks a worst case over an incomplete set of attacks (an upper bound)
INCOMPLETE = " *"
NOT_EVALUATED = "not evaluated"  # no attack of the threat model ran on the defense at that eps


@dataclass(frozen=True)
class Cell:
    text: str
    sort: float = math.nan
    flag: str = ""
    link: str = ""  # the text of a heading on the page that the cell links to (each renderer makes its anchor)


@dataclass
class DisplayTable:
    key: str
    text: pd.DataFrame
    sort: pd.DataFrame
    flags: pd.DataFrame
    numeric: dict[str, bool]
    caption: str | None = None
    links: pd.DataFrame | None = None

    @property
    def columns(self) -> list[str]:
        return list(self.text.columns)


def make_table(key: str, columns: list[str], rows: list[list[Any]], numeric: set[str] = frozenset(),
               caption: str | None = None) -> DisplayTable:
    """Rows of :class:`Cell` (or plain values, shown with :func:`fmt_value`)."""
    cells = [[c if isinstance(c, Cell) else Cell(fmt_value(c)) for c in r] for r in rows]
    mk = lambda f: pd.DataFrame([[f(c) for c in r] for r in cells], columns=columns)  # noqa: E731
    return DisplayTable(key, mk(lambda c: c.text), mk(lambda c: c.sort), mk(lambda c: c.flag),
                        {c: c in numeric for c in columns}, caption, mk(lambda c: c.link))


def _pct(frac: float) -> float:
    return math.nan if is_missing(frac) else 100.0 * float(frac)


def stat_cell(s: Stat) -> Cell:
    """A seed-aggregated cell: ``45.0``, ``45.0 ± 1.2``, ``failed``, ``n/a`` or a dash."""
    st = s.status
    if st == "failed":
        return Cell(f"{FAILED} ({s.n_failed}/{s.n_seeds} seeds)" if s.n_seeds > 1 else FAILED,
                    flag="failed")
    if st == "n/a":
        return Cell("n/a")
    if st == "missing":
        return Cell(DASH)
    text = fmt_pct(s.mean, s.std)
    if not math.isnan(s.attacked):  # a cascaded cell: the cascade's robust accuracy after this stage
        text += f" (cascade: attacked the {s.attacked:.0f} points still robust)"
    if st == "partial":
        return Cell(f"{text} ({s.n_failed}/{s.n_seeds} seeds failed)", _pct(s.mean), "partial")
    return Cell(text, _pct(s.mean))


def _rank_cell(r: dict) -> Cell:
    return Cell(DASH) if r["rank"] is None else Cell(str(r["rank"]), float(r["rank"]))


def _worst_cell(w: dict) -> Cell:
    if not w["evaluated"]:
        return Cell(NOT_EVALUATED)
    if is_missing(w["robust_acc"]):
        return Cell(FAILED, flag="failed") if w["failed_attacks"] else Cell(DASH)
    text = fmt_pct(w["robust_acc"], w["robust_acc_std"])
    if not w["complete"]:
        return Cell(UPPER + text, _pct(w["robust_acc"]), "incomplete")
    return Cell(text, _pct(w["robust_acc"]))


def _notes(failed: list, partial: list, missing: list) -> str:
    parts = []
    if failed:
        parts.append("failed: " + ", ".join(failed))
    if partial:
        parts.append("some seeds failed: " + ", ".join(partial))
    if missing:
        parts.append("no result: " + ", ".join(missing))
    return "; ".join(parts)


RANDOMISED_NOTE = "randomised: strongest single attack, not a union over fresh draws"  # why: the caveat
TIES_SHOWN = 2  # a cell names at most this many attacks tied for the strongest; the matrix names them all


def _single_cell(w: dict) -> Cell:
    """The strongest single attack and its robust accuracy, e.g. ``PGD: 12.4``; of more than ``TIES_SHOWN`` tied
    attacks, the first and how many more (``PGD-50#0 and 4 more: 0.0``), so that the column stays narrow."""
    if is_missing(w["single_attack_acc"]):
        return Cell(DASH)
    tied = w["strongest_attack"].split(", ")
    names = ", ".join(tied) if len(tied) <= TIES_SHOWN else f"{tied[0]} and {len(tied) - 1} more"
    return Cell(f"{names}: {fmt_pct(w['single_attack_acc'], w['single_attack_acc_std'])}", _pct(w["single_attack_acc"]))


def card_heading(kind: str, name: str) -> str:
    """The heading of a defense's or an attack's card (``kind``: "Defense" or "Attack"), which tables link to."""
    return f"{kind}: {name}"


def defense_table(lb: Leaderboard, threat: str = "overall", cards: frozenset[str] = frozenset()) -> DisplayTable:
    """The defense ranking of one threat model: the per-example worst case at every eps, and at the headline eps the
    strongest single attack beside it (what the union of attacks adds is their difference). A defense in ``cards``
    links to its card."""
    h = fmt_eps(lb.headline_eps)
    worst_col = f"Worst case @ {h} (%)"
    single_col = f"Strongest single attack @ {h} (%)"
    cols = ["Rank", "Defense", "Clean acc (%)", worst_col, single_col]
    cols += [f"Worst case @ {fmt_eps(e)} (%)" for e in lb.other_eps]
    rows = []
    for r in lb.rankings[threat]:
        by_eps = r["by_eps"]
        head = by_eps.get(h) or {"evaluated": False, "single_attack_acc": math.nan}
        name = r["defense"]
        row = [_rank_cell(r), Cell(name, link=card_heading("Defense", name) if name in cards else ""),
               stat_cell(lb.clean_acc.get(name, MISSING)),
               _worst_cell(head), _single_cell(head) if head["evaluated"] else Cell(NOT_EVALUATED)]
        row += [_worst_cell(by_eps[fmt_eps(e)]) for e in lb.other_eps]
        notes = _notes_cell({fmt_eps(e): by_eps[fmt_eps(e)] for e in lb.eps_list}, "attacks")
        if head.get("per_attack"):
            notes = Cell("; ".join(filter(None, [RANDOMISED_NOTE, notes.text])))
        overall = threat == "overall"
        rows.append(row + [_with_warnings(notes, lb.masking.get(r["defense"], []) if overall else [],
                                          _broken_certificates(lb, r["defense"]) if overall else [])])
    cols, rows = _drop_empty_notes(cols, rows)
    numeric = {"Rank", "Clean acc (%)", worst_col, single_col} | {c for c in cols if c.startswith("Worst case @")}
    return make_table(f"defense-ranking-{threat}" if threat != "overall" else "defense-ranking", cols, rows, numeric)


def threat_summary_table(lb: Leaderboard) -> DisplayTable:
    """One row per defense (overall ranking order): its per-example worst case at the headline eps under each threat
    model, side by side."""
    h = fmt_eps(lb.headline_eps)
    threats = [t for t in lb.rankings if t != "overall"] + ["overall"]
    by_threat = {t: {r["defense"]: r["by_eps"].get(h) for r in lb.rankings[t]} for t in threats}
    cols = ["Defense", "Clean acc (%)"] + [f"{t} @ {h} (%)" for t in threats]
    rows = [[Cell(d), stat_cell(lb.clean_acc.get(d, MISSING))]
            + [_worst_cell(w) if w else Cell(NOT_EVALUATED) for w in (by_threat[t][d] for t in threats)]
            for d in lb.defenses]
    return make_table("threat-models", cols, rows, set(cols[1:]))


def _notes_cell(by_eps: dict, kind: str) -> Cell:
    """'eps: failed/partial/missing ...' for each eps where some of ``kind`` did not all finish."""
    notes = []
    for label, stats in by_eps.items():
        text = _notes(stats[f"failed_{kind}"], stats[f"partial_{kind}"], stats[f"missing_{kind}"])
        if stats.get("unpaired_attacks"):
            text = "; ".join(filter(None, [text, "no per-example outcomes: " + ", ".join(stats["unpaired_attacks"])]))
        if text:
            notes.append(f"{label}: {text}")
    return Cell(" | ".join(notes))


def _with_warnings(notes: Cell, masking: list[str], broken: list[str]) -> Cell:
    """The notes, led by a warning for every failed gradient-masking check and every attack that breaks a point the
    defense's certificate proves robust."""
    warnings = [f"{label} {'; '.join(found)}" for label, found in (("⚠ gradient masking?", masking),
                                                                   ("⚠ certificate broken:", broken)) if found]
    if not warnings:
        return notes
    text = " | ".join(warnings)
    return Cell(f"{text} | {notes.text}" if notes.text else text, flag="warning")


def _broken_certificates(lb: Leaderboard, defense: str) -> list[str]:
    """Every sentence of :func:`.checks.certificate_checks` about ``defense``, over the eps of its certificate."""
    return [text for found in lb.certificate_checks.get(defense, {}).values() for text in found or []]


def certified_table(lb: Leaderboard) -> DisplayTable | None:
    """Per certified defense and eps: the certified accuracy (a floor under any attack), the per-example worst case
    over the attacks there (a ceiling) and whether every attack respected the floor; None without certificates."""
    if not lb.certificates:
        return None
    worst = {r["defense"]: r["by_eps"] for r in lb.defense_ranking}
    rows = []
    for defense, eps in lb.certificates:
        acc, at_eps = lb.certified_acc(defense, eps), worst.get(defense, {}).get(fmt_eps(eps))
        rows.append([Cell(defense), Cell(fmt_eps(eps), eps), Cell(fmt_pct(acc), _pct(acc)),
                     _worst_cell(at_eps) if at_eps else Cell(DASH),
                     _respected_cell(lb.certificate_checks[defense][eps])])
    cols = ["Defense", "eps", "Certified acc (%)", "Worst case (%)", "Every attack respects it"]
    return make_table("certified", cols, rows, {"eps", "Certified acc (%)", "Worst case (%)"})


def _respected_cell(broken: list[str] | None) -> Cell:
    """``yes``, ``no: <the attacks that break it>``, or why it was not checked (see certificate_checks)."""
    if broken is None:
        return Cell("not checked: no attack with per-example outcomes")
    return Cell("no: " + "; ".join(broken), flag="warning") if broken else Cell("yes")


def _drop_empty_notes(cols: list[str], rows: list[list[Cell]]) -> tuple[list[str], list[list[Cell]]]:
    """Keeps the trailing Notes column only where some row has a note."""
    if any(row[-1].text for row in rows):
        return cols + ["Notes"], rows
    return cols, [row[:-1] for row in rows]


def attack_table(lb: Leaderboard) -> DisplayTable:
    h = fmt_eps(lb.headline_eps)
    main = f"Mean success rate @ {h} (%)"
    over_all = f"Over all points @ {h} (%)"
    cols = ["Rank", "Attack", "Class", "Surrogates", main, "95 % interval", over_all]
    cols += [f"Mean success @ {fmt_eps(e)} (%)" for e in lb.other_eps]
    cols += ["Defenses"]
    rows = []
    n_def = len(lb.defenses)

    def rate(s: dict | None) -> Cell:
        if s is None:
            return Cell(DASH)
        if is_missing(s["success_rate"]):
            return Cell(FAILED, flag="failed") if s["failed_defenses"] else Cell(DASH)
        text = fmt_pct(s["success_rate"], s["success_rate_std"])
        if not s["complete"] or s["subset"]:
            return Cell(text + INCOMPLETE, _pct(s["success_rate"]), "incomplete")
        return Cell(text, _pct(s["success_rate"]))

    for r in lb.attack_ranking:
        head = r["by_eps"].get(h) or {}
        row = [_rank_cell(r), Cell(r["attack"]), Cell(r["class"] or DASH),
               Cell(", ".join(r["surrogates"]) or DASH), rate(r["by_eps"].get(h)),
               _interval_cell(head.get("ci_low"), head.get("ci_high")),
               _value_interval_cell(head.get("success_all"), head.get("ci_all_low"), head.get("ci_all_high"))]
        row += [rate(r["by_eps"].get(fmt_eps(e))) for e in lb.other_eps]
        row.append(Cell(f"{r['n_defenses']}/{n_def}", float(r["n_defenses"])))
        rows.append(row + [_notes_cell(r["by_eps"], "defenses")])
    cols, rows = _drop_empty_notes(cols, rows)
    numeric = {"Rank", main, over_all, "Defenses"} | {c for c in cols if c.startswith("Mean success @")}
    return make_table("attack-ranking", cols, rows, numeric)


def _interval_cell(low: Any, high: Any) -> Cell:
    """``[33.6, 42.4]`` (percent), or a dash without an interval."""
    if is_missing(low) or is_missing(high):
        return Cell(DASH)
    return Cell(f"[{fmt_pct(low)}, {fmt_pct(high)}]", _pct(low))


def _value_interval_cell(value: Any, low: Any, high: Any) -> Cell:
    """``37.9 [33.6, 42.4]`` (percent), or a dash."""
    if is_missing(value):
        return Cell(DASH)
    interval = _interval_cell(low, high).text
    return Cell(fmt_pct(value) + ("" if interval == DASH else f" {interval}"), _pct(value))


def _p_text(p: Any) -> str:
    if is_missing(p):
        return DASH
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def _comparable(a: str, b: str) -> bool:
    """Whether the page shows the pair: attacks crafted on the same surrogate pool (``Ens@homo`` and ``CWA@homo``), or
    one attack on two pools (``Ens@homo`` and ``Ens@hetero``); paired_tests.csv has every pair."""
    (family_a, _, pool_a), (family_b, _, pool_b) = a.partition("@"), b.partition("@")
    return pool_a == pool_b or family_a == family_b


def paired_table(paired: pd.DataFrame, eps: float, seed) -> DisplayTable | None:
    """The comparison pooled over all defenses of every pair of transfer attacks at ``eps`` (one seed) crafted on the
    same pool or the same attack on two pools, with the per-defense McNemar verdicts summed up."""
    if paired.empty:
        return None
    here = paired[(paired["eps"] == eps) & (paired["seed"] == seed)]
    shown = np.array([_comparable(a, b) for a, b in zip(here["attack_a"], here["attack_b"])], dtype=bool)
    pooled = here[(here["defense"] == POOLED).to_numpy() & shown]
    if pooled.empty:
        return None
    cols = ["Attack A", "Attack B", "A (%)", "B (%)", "A − B (points) [95 % interval]", "p (Holm)", "Verdict",
            "Per defense (exact McNemar, Holm)"]
    rows = []
    for _, r in pooled.iterrows():
        per = here[~here["defense"].map(is_pooled) & (here["attack_a"] == r["attack_a"])
                   & (here["attack_b"] == r["attack_b"])]
        rows.append([Cell(r["attack_a"]), Cell(r["attack_b"]), Cell(fmt_pct(r["success_a"]), _pct(r["success_a"])),
                     Cell(fmt_pct(r["success_b"]), _pct(r["success_b"])),
                     Cell(f"{100 * r['difference']:+.1f} [{100 * r['ci_low']:+.1f}, {100 * r['ci_high']:+.1f}]",
                          100 * r["difference"]),
                     Cell(_p_text(r["p_holm"]), r["p_holm"]), Cell(r["verdict"]), Cell(_per_defense_text(per))])
    return make_table(f"paired-{fmt_eps(eps).replace('/', '-')}", cols, rows,
                      {"A (%)", "B (%)", "A − B (points) [95 % interval]", "p (Holm)"})


def _per_defense_text(per: pd.DataFrame) -> str:
    """E.g. ``Ens stronger on 3 (DVERGE-s0, …); no significant difference on 10``."""
    parts = []
    for name, group in per.groupby("verdict", sort=False):
        defenses = ", ".join(group["defense"])
        parts.append(f"{name} on {len(group)}" + ("" if name == "no significant difference" else f" ({defenses})"))
    return "; ".join(sorted(parts, key=lambda text: text.startswith("no significant"))) or DASH


def matrix_table(lb: Leaderboard, eps: float) -> DisplayTable:
    cols = ["Attack"] + list(lb.defenses)
    rows = []
    for a in lb.matrix_rows(eps):
        label = "clean (no attack)" if a == CLEAN else a
        rows.append([Cell(label)] + [stat_cell(lb.matrix_stat(eps, a, d)) for d in lb.defenses])
    return make_table(f"matrix-{fmt_eps(eps).replace('/', '-')}", cols, rows, set(lb.defenses))


def failed_table(lb: Leaderboard) -> DisplayTable | None:
    f = lb.failed
    if f.empty:
        return None
    rows = []
    for _, r in f.iterrows():
        err = r.get("error")
        err = " ".join(err.split()) if isinstance(err, str) else ""
        err = err or DASH
        if len(err) > 300:
            err = err[:297] + "..."
        rows.append([Cell(r["attack"]), Cell(fmt_eps(r["eps"]), float(r["eps"])), Cell(r["defense"]),
                     Cell(fmt_value(r["seed"]), _num(r["seed"])), Cell(str(r.get("status")), flag="failed"),
                     Cell(err)])
    return make_table("failed-cells", ["Attack", "eps", "Defense", "Seed", "Status", "Error"],
                      rows, {"eps", "Seed"})


def _num(x: Any) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


# --------------------------------------------------------------------------- setting

def _get(d: Any, *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def _eps_list(x: Any) -> str:
    if isinstance(x, (list, tuple)):
        return ", ".join(fmt_eps(_num(e)) if not is_missing(e) else str(e) for e in x) or DASH
    return fmt_eps(_num(x)) if not is_missing(x) else fmt_value(x)


def setting_table(setting: dict, lb: Leaderboard) -> DisplayTable:
    """Key/value table of the run: data, threat model, seeds, hardware, provenance."""
    s = setting or {}
    n_cells = ", ".join(map(str, lb.n_points)) or None
    items: list[tuple[str, Any, Callable[[Any], str]]] = [
        ("Suite", s.get("suite"), fmt_value),
        ("Description", s.get("description"), fmt_value),
        ("Data source", _get(s, "data", "source"), fmt_value),
        ("Data file sha256", _get(s, "data", "file_sha256"), fmt_value),
        ("Data sha256", _get(s, "data", "sha256"), fmt_value),
        ("Test points (first n)", _get(s, "data", "n_examples") or n_cells, fmt_value),
        ("Test indices", _get(s, "data", "indices"), fmt_value),
        ("Threat model", _get(s, "threat", "norm"), fmt_value),
        ("eps", _get(s, "threat", "eps"), _eps_list),
        ("Headline eps", _get(s, "threat", "headline_eps"), _eps_list),
        ("Seeds", s.get("seeds"), fmt_value),
        ("Surrogate pools", s.get("pools"), _fmt_pools),
        ("Device", _get(s, "hardware", "device"), fmt_value),
        ("CPU", _get(s, "hardware", "cpu"), fmt_value),
        ("Threads", _get(s, "hardware", "threads"), fmt_value),
        ("torch", _get(s, "hardware", "torch"), fmt_value),
        ("Date", s.get("date"), fmt_value),
        ("Version", s.get("version"), fmt_value),
        ("Git commit", s.get("git_commit"), fmt_value),
        ("Libraries", s.get("libraries"), fmt_value),
        ("Compute time (crafting + evaluation)", s.get("runtime_s"), fmt_seconds),
        ("Command", s.get("command"), fmt_value),
    ]
    if n_cells and _get(s, "data", "n_examples") and str(_get(s, "data", "n_examples")) != n_cells:
        items.insert(6, ("Test points in the cells", n_cells, fmt_value))
    known = {"suite", "description", "data", "threat", "seeds", "hardware", "date", "version",
             "git_commit", "libraries", "runtime_s", "command", "attacks", "surrogates", "defenses", "pools"}
    sub_known = {"data": {"source", "file_sha256", "sha256", "n_examples", "indices"},
                 "threat": {"norm", "eps", "headline_eps"}, "hardware": {"device", "cpu", "threads", "torch"}}
    for sec, keys in sub_known.items():  # anything else the setting carries is shown too
        for k, v in (s.get(sec) or {}).items() if isinstance(s.get(sec), dict) else []:
            if k not in keys:
                items.append((f"{sec}.{k}", v, fmt_value))
    for k, v in s.items():
        if k not in known:
            items.append((str(k), v, fmt_value))
    return _item_table("setting", [(k, f(v)) for k, v, f in items if v is not None])


def _item_table(key: str, items: list[tuple[str, Any]]) -> DisplayTable:
    """A two-column Item / Value table of ``(item, text)`` pairs."""
    return make_table(key, ["Item", "Value"], [[Cell(k), Cell(str(v))] for k, v in items])


def _records_table(key: str, items: Any, known: list[tuple[str, str, Callable[[Any], str]]],
                   numeric: set[str] = frozenset()) -> DisplayTable | None:
    items = [i for i in (items or []) if isinstance(i, dict)]
    if not items:
        return None
    cols = [(k, label, f) for k, label, f in known if any(k in i for i in items)]
    known_keys = {k for k, _, _ in known}
    extra = sorted({k for i in items for k in i if k not in known_keys}, key=str)
    cols += [(k, str(k), fmt_value) for k in extra]
    rows = []
    for i in items:
        row = []
        for k, label, f in cols:
            v = i.get(k)
            text = f(v) if v is not None else DASH
            row.append(Cell(text, _pct(v) if label in numeric and not is_missing(v) and
                            0 <= _num(v) <= 1 else math.nan))
        rows.append(row)
    return make_table(key, [label for _, label, _ in cols], rows, numeric & {c[1] for c in cols})


def attacks_setting_table(setting: dict) -> DisplayTable | None:
    return _records_table("setting-attacks", (setting or {}).get("attacks"), [
        ("name", "Attack", fmt_value), ("class", "Class", fmt_value), ("kind", "Kind", fmt_value),
        ("params", "Parameters", fmt_params), ("pool", "Surrogate pool", fmt_value),
        ("surrogates", "Surrogates", fmt_value),
        ("eps", "eps", _fmt_eps_list), ("defenses", "Defenses", _fmt_defenses), ("cascade", "Cascade", fmt_value),
        ("eot", "EOT samples (randomised defense)", fmt_value)])


def _fmt_pools(pools: Any) -> str:
    """``homo: a, b; hetero: c, d``."""
    if not isinstance(pools, dict):
        return fmt_value(pools)
    return "; ".join(f"{name}: {fmt_value(members)}" for name, members in pools.items())


def _fmt_eps_list(values: Any) -> str:
    return ", ".join(fmt_eps(e) for e in values) if isinstance(values, list) else fmt_value(values)


def _fmt_defenses(names: Any) -> str:
    return ", ".join(map(str, names)) if isinstance(names, list) else fmt_value(names)


def surrogates_table(setting: dict) -> DisplayTable | None:
    return _records_table("setting-surrogates", (setting or {}).get("surrogates"), [
        ("name", "Surrogate", fmt_value), ("arch", "Architecture", fmt_value),
        ("origin", "Origin", fmt_value), ("source", "Source", fmt_value),
        ("clean_acc", "Clean acc (%)", fmt_frac_or_pct)], {"Clean acc (%)"})


def defenses_setting_table(setting: dict) -> DisplayTable | None:
    return _records_table("setting-defenses", (setting or {}).get("defenses"), [
        ("name", "Defense", fmt_value), ("kind", "Kind", fmt_value),
        ("members", "Members", fmt_value), ("arch", "Architecture", fmt_value),
        ("origin", "Origin", fmt_value), ("source", "Source", fmt_value),
        ("clean_acc", "Clean acc (%)", fmt_frac_or_pct)], {"Clean acc (%)"})


def defense_card(record: dict, lb: Leaderboard) -> DisplayTable:
    """One defense's card: what it is, where its members come from, and its worst case under each threat model."""
    h = fmt_eps(lb.headline_eps)
    name = record.get("name")
    members = record.get("members") or []
    items = [("Group", record.get("group")), ("Kind", record.get("kind")),
             ("Aggregation and options", fmt_params(record.get("params")) if record.get("params") else None),
             ("Members", f"{len(members)}: {', '.join(map(str, members))}" if members else None),
             ("Where the weights come from (architecture, training, source)", record.get("origin")),
             ("Clean accuracy (%)", fmt_frac_or_pct(record["clean_acc"]) if not is_missing(record.get("clean_acc"))
              else None),
             ("Forward pass", "randomised: attacked with EOT" if record.get("randomised") else "deterministic")]
    for threat, ranking in lb.rankings.items():
        row = next((r for r in ranking if r["defense"] == name), None)
        worst = (row or {}).get("by_eps", {}).get(h)
        if worst and worst.get("evaluated", True):
            items.append((f"Worst case @ {h}, {threat} (%)", _worst_cell(worst).text))
    return _item_table(f"card-defense-{name}", [(k, v) for k, v in items if v not in (None, "")])


def attack_card(record: dict, lb: Leaderboard) -> DisplayTable:
    """One attack's card: its paper, hyperparameters, what it is crafted on, where it runs and what it cost."""
    name = record.get("name")
    sets = lb.cells[(lb.cells["attack"] == name) & lb.cells["ok"]].drop_duplicates("adv_key") \
        if "adv_key" in lb.cells else lb.cells.iloc[:0]
    cost = f"{sets['craft_time_s'].mean():.1f} s per set on average ({plural(len(sets), 'set')})" if len(sets) \
        else None
    items = [("Class", record.get("class")), ("Paper", record.get("paper")), ("Kind", record.get("kind")),
             ("Parameters (the rest: the class's defaults)", fmt_params(record.get("params"))
              if record.get("params") else "the class's defaults"),
             ("Surrogate pool", record.get("pool")), ("Crafted on", fmt_value(record.get("surrogates"))),
             ("eps", _fmt_eps_list(record.get("eps")) if record.get("eps") else None),
             ("Defenses", _fmt_defenses(record.get("defenses"))), ("Cascade", record.get("cascade")),
             ("EOT samples (randomised defense)", record.get("eot")), ("Crafting time", cost)]
    return _item_table(f"card-attack-{name}", [(k, v) for k, v in items if v is not None])
