"""The page as a list of blocks (headings, paragraphs, tables, images, links).

Both README.md and index.html are renderings of this one list, so the two pages always
carry the same sections, sentences and tables. Text in blocks is plain (unescaped): each
renderer escapes it for its own format.
"""
from __future__ import annotations

from dataclasses import dataclass

from . import views
from .format import canonical_eps, fmt_eps, fmt_value, is_missing, plural
from .tables import Leaderboard

HEATMAP = "heatmap.png"
ROBUST_VS_EPS = "robust_vs_eps.png"
DOWNLOADS = (("matrix.csv", "robust accuracy matrix, wide per eps"),
             ("defenses.csv", "defense ranking"),
             ("attacks.csv", "attack ranking"),
             ("cells.csv", "every grid cell as run, failed ones included"),
             ("leaderboard.json", "everything above, machine-readable"),
             ("entries.json", "one RobustBench-style entry per defense: clean, AutoAttack and worst-case accuracy"),
             ("index.html", "this page as one self-contained HTML file"))


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
    meta = [f"version {s['version']}" if s.get("version") else "",
            f"commit {s['git_commit']}" if s.get("git_commit") else "",
            f"run on {s['date']}" if s.get("date") else ""]
    meta = [m for m in meta if m]
    if meta:
        parts.append(f"Generated from {', '.join(meta)}.")
    return " ".join(p for p in parts if p)


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
                     "whose forward pass is random, and evaluated on the defense; a defense's headline is its worst "
                     "case over all attacks. '⚠ gradient masking?' marks a defense whose results fail a sanity "
                     "check (a transfer or black-box attack beating every white-box one, robust accuracy rising "
                     "with eps or steps, or not near 0 at a large eps).")
    if "black-box" in kinds:
        parts.append("Black-box attacks query each defense's outputs and never read a gradient, so masked "
                     "gradients do not stop them.")
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


def _above_smaller_eps_note(lb: Leaderboard) -> str:
    """Explains the '†' mark, if some worst case carries it."""
    marked = any(lb.above_smaller_eps(e, d) for d in lb.defenses for e in lb.eps_list)
    return (" '†' marks a worst case above the defense's worst case at a smaller eps: an example inside the smaller "
            "ball lies inside this one too, so fewer or weaker attacks ran here, and the smaller eps's worst case "
            "bounds this one as well." if marked else "")


def build_page(lb: Leaderboard, setting: dict) -> list[Block]:
    h = fmt_eps(lb.headline_eps)
    blocks: list[Block] = [Heading(title(lb), 1), Para(summary(lb, setting)), Para(caveat(lb, setting))]

    blocks += [Heading("Defense ranking"), Para(
        f"Defenses ranked by worst-case robust accuracy over all attacks at the headline eps {h} "
        "(as RobustBench ranks), ties broken by clean accuracy. 'Strongest attack' is the attack "
        "attaining that worst case; the other eps columns give the worst case there. '≤' marks a "
        "defense on which some attack failed or was not run: the true worst case may be lower, "
        "so it is ranked after the complete ones." + _transfer_only_note(lb) + _above_smaller_eps_note(lb)),
        Table(views.defense_table(lb))]

    blocks += [Heading("Attack ranking"), Para(
        f"Attacks ranked by their success rate (the fraction of initially correct points that the "
        f"attack makes wrong), averaged over the defenses, at {h} and at every other eps. '*' "
        "marks an average over only some of the defenses (those on which the attack ran, or the subset "
        "the suite runs it on): such attacks are ranked after the others, and their averages are not "
        "comparable with them."), Table(views.attack_table(lb))]

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
               Image(ROBUST_VS_EPS, "Worst-case robust accuracy versus eps, one line per defense"),
               Heading("Downloads"), Links(DOWNLOADS + ((HEATMAP, "heatmap"),
                                                        (ROBUST_VS_EPS, "robust accuracy vs eps")))]

    blocks += [Heading("Setting"), Table(views.setting_table(setting, lb))]
    for title_, t in (("Attacks", views.attacks_setting_table(setting)),
                      ("Surrogate models", views.surrogates_table(setting)),
                      ("Defenses", views.defenses_setting_table(setting))):
        if t is not None:
            blocks += [Heading(title_, 3), Table(t)]
    return blocks
