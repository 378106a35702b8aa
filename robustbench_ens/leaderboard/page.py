"""The page as a list of blocks (headings, paragraphs, tables, images, links).

Both README.md and index.html are renderings of this one list, so the two pages always
carry the same sections, sentences and tables. Text in blocks is plain (unescaped): each
renderer escapes it for its own format.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from . import views
from ..text import plural
from .format import canonical_eps, fmt_eps, fmt_value, is_missing
from .per_example import FILENAME as PER_EXAMPLE
from .tables import Leaderboard
from .worst_case import THREAT_TITLES

HEATMAP = "heatmap.png"
ROBUST_VS_EPS = "robust_vs_eps.png"
DOWNLOADS = (("matrix.csv", "robust accuracy matrix, wide per eps"),
             ("defenses.csv", "defense rankings: per-example worst case overall and per threat model, best single "
                              "attack"),
             ("attacks.csv", "attack ranking, with 95 % intervals"),
             ("cells.csv", "every grid cell as run, failed ones included"),
             (PER_EXAMPLE, "every cell's per-example outcomes (see below)"),
             ("success.csv", "each cell's success rate over correct and over all points, with 95 % Wilson intervals"),
             ("paired_tests.csv", "every pair of transfer attacks: per-defense McNemar and pooled bootstrap tests"),
             ("leaderboard.json", "everything above, machine-readable"),
             ("entries.json", "one RobustBench-style entry per defense: clean, AutoAttack and worst-case accuracy"),
             ("index.html", "this page as one self-contained HTML file"))


def plotted_threats(lb: Leaderboard) -> list[str]:
    """The threat models with a robust-vs-eps plot: all attacks, and each kind when there are several."""
    return ["overall"] + ([t for t in lb.rankings if t != "overall"] if len(lb.rankings) > 2 else [])


def robust_vs_eps_file(threat: str) -> str:
    return ROBUST_VS_EPS if threat == "overall" else f"robust_vs_eps_{threat}.png"


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Para:
    text: str


@dataclass(frozen=True)
class Table:
    table: views.DisplayTable
    title: str | None = None


@dataclass(frozen=True)
class Image:
    filename: str
    alt: str


@dataclass(frozen=True)
class Links:
    items: tuple[tuple[str, str], ...]  # (filename, description)


Block = Heading | Para | Table | Image | Links


def n_text(lb: Leaderboard, setting: dict) -> str:
    """The number of test points: from the cells, else from the setting."""
    if lb.n_points:
        return "–".join(str(n) for n in (lb.n_points[0], lb.n_points[-1])) \
            if len(lb.n_points) > 1 else str(lb.n_points[0])
    n = ((setting or {}).get("data") or {}).get("n_examples")
    return str(n) if n is not None else "?"


def norm_text(setting: dict) -> str:
    return str(((setting or {}).get("threat") or {}).get("norm") or "Linf")


def seeds_text(lb: Leaderboard, setting: dict) -> str:
    seeds = (setting or {}).get("seeds") or lb.seeds
    k = len(seeds)
    return f"{plural(k, 'seed')} ({fmt_value(list(seeds))})" if k else "seed not recorded"


def title(lb: Leaderboard) -> str:
    return f"robustbench-ens leaderboard: {lb.suite}"


def summary(lb: Leaderboard, setting: dict) -> str:
    s = setting or {}
    desc = str(s.get("description") or "").strip()
    surrogates = [str(x.get("name")) for x in (s.get("surrogates") or []) if isinstance(x, dict)]
    source = ((s.get("data") or {}).get("source")) or "the test set"
    parts = [f"{desc.rstrip('.')}." if desc else ""]
    if s.get("slice"):
        parts.append(f"This page shows a slice of that suite, run with fewer of its settings: {s['slice']}.")
    parts.append(
        f"{plural(len(lb.defenses), 'defense')} against {attacks_text(lb, surrogates)}"
        + f", {norm_text(s)} threat model"
        + (f" with eps in {{{', '.join(fmt_eps(e) for e in lb.eps_list)}}}" if lb.eps_list else "")
        + (f" (headline {fmt_eps(lb.headline_eps)})" if lb.headline_eps is not None else "")
        + f", on the first {n_text(lb, s)} test points of {source}, {seeds_text(lb, s)}.")
    wanted = (s.get("threat") or {}).get("headline_eps") if isinstance(s.get("threat"), dict) else None
    if lb.headline_eps is not None and wanted is not None and not is_missing(wanted) \
            and canonical_eps(float(wanted)) != lb.headline_eps:
        parts.append(f"The setting's headline eps {fmt_eps(float(wanted))} has no results; "
                     f"the rankings use {fmt_eps(lb.headline_eps)}, the largest eps that has.")
    if not lb.eps_list:
        parts.append("There are no attack results yet.")
    if s.get("not_run"):
        parts.append(partial_text(s["not_run"]))
    meta = [f"version {s['version']}" if s.get("version") else "",
            f"commit {s['git_commit']}" if s.get("git_commit") else "",
            f"run on {s['date']}" if s.get("date") else ""]
    meta = [m for m in meta if m]
    if meta:
        parts.append(f"Generated from {', '.join(meta)}.")
    again = s.get("rendered_again") or {}
    if again:
        parts.append(f"This page was rendered again from its published files by commit {again.get('git_commit')} on "
                     f"{again.get('date')} (scripts/republish.py): the numbers are the run's, the layout is newer.")
    return " ".join(p for p in parts if p)


def partial_text(not_run: dict) -> str:
    """What a partial leaderboard (``run_all.py --publish-only``) lacks: ``not_run`` is {"cells": the grid's
    cells, "attacks": {attack: its cells not run}}."""
    missing = not_run["attacks"]
    return (f"Partial results: {sum(missing.values())} of the grid's {not_run['cells']} cells had not run when this "
            f"page was written ({', '.join(f'{attack} {n}' for attack, n in missing.items())}). They show '—', and "
            "a defense that lacks some of them is marked '≤' and ranked after the complete ones: its true worst "
            "case may be lower.")


def attacks_text(lb: Leaderboard, surrogates: list[str]) -> str:
    """The attacks by kind: those crafted on the surrogates, and those crafted on (or querying) each defense."""
    on_surrogates = sum(lb.kind(a) == "transfer" for a in lb.attacks)
    transfer = plural(on_surrogates, "transfer attack") + " crafted on surrogate models" \
        + (f" ({', '.join(surrogates)})" if surrogates else "")
    per_defense = sorted({lb.kind(a) for a in lb.attacks} - {"transfer"})
    if not per_defense:
        return transfer
    others = len(lb.attacks) - on_surrogates
    return (f"{plural(len(lb.attacks), 'attack')}: {transfer}, and {others} run against each defense itself "
            f"({', '.join(per_defense)})")


def caveat(lb: Leaderboard, setting: dict) -> str:
    kinds = set(lb.kinds.values())
    whitebox = bool(kinds & {"white-box", "adaptive", "black-box"})
    parts = [f"Robust accuracy is measured on the first {n_text(lb, setting)} test points only."]
    if "transfer" in kinds or not kinds:
        parts.append("Transfer attacks are crafted on the surrogate models and then evaluated on each defense, which "
                     "the attacker never queries; alone, a defense's robust accuracy under them is an upper bound on "
                     "its white-box robustness.")
    if whitebox:
        parts.append("White-box attacks are crafted on each defense itself (adaptive ones on the mean of its "
                     "members' or predictors' logits, in place of its aggregation), with EOT against a defense "
                     "whose forward pass is random, and evaluated on the defense; a defense's headline is its "
                     "per-example worst case over all attacks. '⚠ gradient masking?' marks a defense whose results "
                     "fail a sanity check (a transfer or black-box attack beating every white-box one, robust "
                     "accuracy rising with eps or steps, or not near 0 at a large eps).")
    if "black-box" in kinds:
        parts.append("Black-box attacks query each defense's outputs and never read a gradient, so masked "
                     "gradients do not stop them.")
    if lb.randomised:
        parts.append(f"{', '.join(sorted(lb.randomised))}: the forward pass is random and each cell evaluates it on a "
                     "fresh draw, so a per-example union over cells would also count the points its own randomness "
                     "gets wrong with no attack; its worst case is its strongest single attack instead.")
    crossmax = [d["name"] for d in setting.get("defenses", [])
                if d.get("kind") == "self_ensemble" or (d.get("params") or {}).get("aggregation") == "crossmax"]
    if crossmax:
        verb = "aggregates" if len(crossmax) == 1 else "aggregate"
        its = "its" if len(crossmax) == 1 else "their"
        read = f"read {its} rows under the adaptive attack" if "adaptive" in kinds else \
            f"{its} numbers here are transfer numbers only, not a robustness claim"
        parts.append(f"{', '.join(crossmax)} {verb} with CrossMax, which was shown to mask gradients (Zhang et al., "
                     f"arXiv 2411.14834): {read}.")
    parts.append("Percentages; with several seeds a cell shows the mean over seeds ± the sample standard "
                 "deviation. A cell whose run failed is shown as 'failed' and never enters an average; "
                 "'—' marks a cell that was not run.")
    return " ".join(parts)


def _transfer_only_note(lb: Leaderboard) -> str:
    """Names the eps at which no white-box attack ran (there the worst case is an upper bound), if some did."""
    bare = [fmt_eps(e) for e in lb.eps_list if all(lb.transfer_only(e, d) for d in lb.defenses)]
    return (f" At {', '.join(bare)} no white-box attack ran: there the worst case is over transfer attacks only, "
            "an upper bound." if bare else "")


WORST_CASE_RULE = ("A point counts as robust only if the defense classifies it correctly clean and no attack at that "
                   "eps or a smaller one turns it wrong (an example inside the smaller ball lies inside the larger "
                   "one); the worst case is the share of such points, taken per example as RobustBench and AutoAttack "
                   "count, not the lowest of the attacks' robust accuracies, which is shown beside it as the "
                   "strongest single attack.")


CERTIFIED_RULE = ("Interval bound propagation (IBP; Gowal et al., 2018) certifies a point at eps when the defense "
                  "classifies it correctly and provably keeps doing so under every perturbation of Linf norm at most "
                  "eps that stays in [0, 1]. The certified accuracy, the share of such points, is a floor that no "
                  "attack can push the robust accuracy below, as the per-example worst case is a ceiling. An attack at "
                  "that eps or a smaller one that turns a certified point wrong reveals an eps or evaluation bug, not "
                  "a strong attack: 'no' names it, and the defense's row in the ranking carries a '⚠ certificate "
                  "broken' note. IBP is looser than the bounds some certified models are trained and published with, "
                  "so its floor may lie below their published certified accuracy.")


def build_page(lb: Leaderboard, setting: dict, paired: pd.DataFrame | None = None) -> list[Block]:
    h = fmt_eps(lb.headline_eps)
    blocks: list[Block] = [Heading(title(lb), 1), Para(summary(lb, setting))]

    cards = frozenset(str(d.get("name")) for d in (setting or {}).get("defenses", []) if isinstance(d, dict))
    blocks += [Heading("Defense ranking"), Para(
        f"Defenses ranked by their per-example worst-case robust accuracy over all attacks at the headline eps {h} "
        "(a point counts as robust only if every attack fails on it), ties broken by clean accuracy; '≤' marks an "
        "upper bound, and each name links to its card. How these numbers are taken and what they do not say: "
        "'How to read these numbers', below the tables." + _transfer_only_note(lb)),
        Table(views.defense_table(lb, cards=cards))]

    if len(lb.rankings) > 2:  # attacks of several kinds: the overall ranking is a union of theirs
        blocks += [Heading("Rankings by threat model"), Para(
            "The same per-example worst case, taken separately over transfer attacks (crafted on surrogates, never "
            "querying the defense: what DVERGE claims), query-based black-box attacks, and white-box and adaptive "
            f"attacks (what RobustBench ranks); 'not evaluated': no attack of that kind ran there. At {h}:"),
            Table(views.threat_summary_table(lb))]
        for threat in (t for t in lb.rankings if t != "overall"):
            blocks += [Heading(f"Ranking under {THREAT_TITLES[threat]}", 3),
                       Table(views.defense_table(lb, threat, cards=cards)),
                       Image(robust_vs_eps_file(threat), f"Per-example worst case over {THREAT_TITLES[threat]} "
                                                         "versus eps, one labelled line per defense")]

    certified = views.certified_table(lb)
    if certified is not None:
        blocks += [Heading("Certified lower bounds (IBP)"), Para(CERTIFIED_RULE), Table(certified)]

    blocks += [Heading("Attack ranking"), Para(
        f"Attacks ranked by their success rate (the fraction of initially correct points that the "
        f"attack makes wrong), averaged over the defenses, at {h} and at every other eps. The 95 % interval is a "
        "paired bootstrap over test points (2000 resamples, each applied to every defense); 'over all points' is the "
        "share of all points misclassified after the attack, as TransferAttack reports it, with its interval. Both "
        f"use the per-example outcomes of seed {fmt_value(lb.seeds[0]) if lb.seeds else '—'}. '*' "
        "marks an average over only some of the defenses (those on which the attack ran, or the subset "
        "the suite runs it on): such attacks are ranked after the others, and their averages are not "
        "comparable with them."), Table(views.attack_table(lb))]

    comparison = views.paired_table(paired, lb.headline_eps, lb.seeds[0]) \
        if paired is not None and lb.seeds else None
    if comparison is not None:
        blocks += [Heading("Transfer attacks compared"), Para(
            f"Pairs of transfer attacks at {h} crafted on the same surrogate pool (those with surrogates of their "
            "own, such as LGV's, with each other), and each attack against itself crafted on another pool, on the "
            f"same test points of the same defenses (seed {fmt_value(lb.seeds[0])}); every other pair is in "
            "paired_tests.csv. 'A − B' is the difference in mean success over the defenses, in points, with a 95 % "
            "paired bootstrap interval over test points (not adjusted for the number of pairs); its p-value is "
            "Holm-adjusted over the pairs, and the verdict follows it. The last "
            "column sums up the per-defense exact McNemar tests on the points that one attack breaks and the other "
            "does not (Holm-adjusted over every pair and defense at this eps). A verdict names the stronger attack "
            "only where the adjusted p-value is below 0.05. Every eps, seed and defense: paired_tests.csv."),
            Table(comparison)]

    blocks += [Heading("Robust accuracy matrix"), Para(
        "Robust accuracy (%) of each defense (columns) under each attack (rows), one table per "
        "eps; the first row is the accuracy without attack.")]
    for e in lb.eps_list:
        label = f"eps = {fmt_eps(e)}" + (" (headline)" if e == lb.headline_eps else "")
        blocks += [Heading(label, 3), Table(views.matrix_table(lb, e))]

    failed = views.failed_table(lb)
    if failed is not None:
        blocks += [Heading("Failed cells"), Para(
            f"{len(lb.failed)} grid cell(s) failed. They are shown as 'failed' above and are not "
            "counted in any average or worst case."), Table(failed)]

    blocks += [Heading("Plots"),
               Image(HEATMAP, "Heatmap of robust accuracy, attacks by defenses"),
               Image(ROBUST_VS_EPS, "Per-example worst-case robust accuracy over all attacks versus eps, one "
                                    "labelled line per defense"),
               Heading("Downloads"), Links(DOWNLOADS + ((HEATMAP, "heatmap"),) + tuple(
                   (robust_vs_eps_file(t), f"robust accuracy vs eps, {THREAT_TITLES[t]}")
                   for t in plotted_threats(lb))),
               Heading("Per-example file", 3), Para(
                   f"{PER_EXAMPLE} (gzip'd CSV) has one row per test point per cell, with the columns defense, "
                   "attack, eps, seed, index, clean_correct and adv_correct: index is the point's position in the "
                   "test set; clean_correct (0/1) says whether the defense classified it correctly clean, and "
                   "adv_correct whether it did on the attack's adversarial image; the clean rows have attack = "
                   "clean and eps = 0. Every ranking above can be recomputed from it: at an eps, a point is robust "
                   "for a defense if clean_correct is 1 in its clean row and clean_correct and adv_correct are both "
                   "1 in every row of an attack of the threat model at that eps or a smaller one.")]

    blocks += [Heading("How to read these numbers"), Para(caveat(lb, setting)), Para(
        f"The rankings. {WORST_CASE_RULE} '≤' marks a worst case over an incomplete union (some attack failed, did "
        "not run, or has no per-example outcomes): the true worst case may be lower, so it is ranked after the "
        "complete ones. By threat model: transfer attacks are crafted on surrogates and never query the defense; "
        "query-based black-box attacks read only the defense's outputs; white-box and adaptive attacks "
        "differentiate the defense or its adaptive view. A cascaded attack (see its card) runs only on the points "
        "still robust after the attacks before it in its cascade, so its cell gives the cascade's robust accuracy "
        "so far; the worst case is the same as running every attack on every point.")]
    blocks += _cards(lb, setting)
    blocks += [Heading("Setting"), Table(views.setting_table(setting, lb))]
    for title_, t in (("Attacks", views.attacks_setting_table(setting)),
                      ("Surrogate models", views.surrogates_table(setting)),
                      ("Defenses", views.defenses_setting_table(setting))):
        if t is not None:
            blocks += [Heading(title_, 3), Table(t)]
    return blocks


def _cards(lb: Leaderboard, setting: dict) -> list[Block]:
    """A card per defense (what it is, where its weights come from, its worst cases) and per attack (paper,
    hyperparameters, what it is crafted on, cost); the rankings link to the defense cards."""
    blocks: list[Block] = []
    defenses = [d for d in (setting or {}).get("defenses", []) if isinstance(d, dict)]
    if defenses:
        blocks += [Heading("Defense cards"), Para(
            "Each defense: its kind and members, where each member's weights come from (architecture, training, "
            "source), its clean accuracy on these points, and its per-example worst case at the headline eps under "
            "each threat model that ran on it.")]
        for d in defenses:
            blocks += [Heading(views.card_heading("Defense", str(d.get("name"))), 3), Table(views.defense_card(d, lb))]
    attacks = [a for a in (setting or {}).get("attacks", []) if isinstance(a, dict)]
    if attacks:
        blocks += [Heading("Attack cards"), Para(
            "Each attack: its paper, the hyperparameters the suite sets (the others are the class's defaults, the "
            "paper's), what it is crafted on, where it runs, and the mean crafting time of its adversarial sets on "
            "this run's hardware.")]
        for a in attacks:
            blocks += [Heading(views.card_heading("Attack", str(a.get("name"))), 3), Table(views.attack_card(a, lb))]
    return blocks
