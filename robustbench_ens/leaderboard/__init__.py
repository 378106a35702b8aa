"""Leaderboard renderer: grid cells + run setting -> a published leaderboard folder.

``write_leaderboard(cells, setting, out_dir)`` writes, each file atomically:

* ``README.md``        the page as Markdown (GitHub shows it for the folder)
* ``index.html``       the same page, one self-contained file with sortable tables
* ``heatmap.png``      robust accuracy, attacks x defenses, one panel per eps
* ``robust_vs_eps.png`` per-example worst-case robust accuracy versus eps, one line per defense
* ``matrix.csv``, ``defenses.csv``, ``attacks.csv``, ``cells.csv``, ``leaderboard.json``
* ``entries.json``     one RobustBench-style entry per defense (clean, AutoAttack, worst cases, certified)
* ``per_example.csv.gz`` every cell's per-example outcomes, from which the rankings are recomputed
* ``success.csv``, ``paired_tests.csv`` success rates with 95 % intervals, paired attack comparisons

Modules: :mod:`.tables` (numbers), :mod:`.worst_case` (per-example worst case), :mod:`.comparisons`
and :mod:`.stats` (intervals, paired tests), :mod:`.per_example` (the per-example file),
:mod:`.views` (display tables), :mod:`.page` (sections), :mod:`.markdown` / :mod:`.html`
(renderers), :mod:`.plots`, :mod:`.files` (CSV and JSON text), :mod:`.format` (eps and percent text).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .. import atomic
from . import comparisons, files, html, markdown, page, plots, tables
from .format import fmt_eps
from .per_example import FILENAME as PER_EXAMPLE
from .per_example import per_example_bytes, per_example_frame
from .tables import Leaderboard, build
from .worst_case import THREAT_MODELS

__all__ = ["write_leaderboard", "build", "Leaderboard", "leaderboard_json", "robustbench_entries"]


def leaderboard_json(lb: Leaderboard, setting: dict, cells: pd.DataFrame) -> dict:
    """The content of leaderboard.json (before NaN -> null)."""
    return {
        "setting": setting or {},
        "headline_eps": lb.headline_eps,
        "defense_ranking": lb.defense_ranking,
        "defense_rankings_by_threat_model": {k: v for k, v in lb.rankings.items() if k != "overall"},
        "attack_ranking": lb.attack_ranking,
        "masking_warnings": lb.masking,
        "certificates": _certificates_json(lb),
        "matrix": tables.matrix_json(lb),
        "cells": tables.cells_frame(cells),
    }


def robustbench_entries(lb: Leaderboard, setting: dict) -> list[dict]:
    """One entry per defense in the style of RobustBench's model cards, at the headline eps.

    ``autoattack_acc`` is the robust accuracy under the suite's AutoAttack at that eps (None if
    it ran none); ``adaptive_worst_case`` is the per-example worst case over every attack there and at
    smaller eps, transfer, black-box and white-box, which is the number the defense is ranked by;
    ``worst_case_by_threat_model`` gives the same per threat model (None: not evaluated), and
    ``strongest_single_attack_acc`` the lowest robust accuracy of any one attack; ``certified_acc`` the share of
    points IBP certifies there (None: no certificate; see :mod:`robustbench_ens.certify`).
    """
    about = {d["name"]: d for d in setting.get("defenses", [])}
    autoattacks = [a["name"] for a in setting.get("attacks", []) if a.get("class") == "AutoAttack"]
    entries = []
    for row in lb.defense_ranking:
        name = row["defense"]
        worst = row["by_eps"].get(fmt_eps(lb.headline_eps), {})
        under_aa = [lb.robust[key].mean for key in ((lb.headline_eps, a, name) for a in autoattacks)
                    if key in lb.robust and lb.robust[key].has_value]
        defense = about.get(name, {})
        entries.append({
            "name": name, "architecture": f"{defense.get('kind', '?')}: {', '.join(defense.get('members', []))}",
            "threat_model": (setting.get("threat") or {}).get("norm"), "eps": lb.headline_eps,
            "clean_acc": lb.clean_acc[name].mean if name in lb.clean_acc else None,
            "autoattack_acc": min(under_aa) if under_aa else None,
            "adaptive_worst_case": worst.get("robust_acc"), "strongest_attack": worst.get("strongest_attack"),
            "strongest_single_attack_acc": worst.get("single_attack_acc"),
            "worst_case_by_threat_model": _by_threat(lb, name),
            "complete": worst.get("complete"), "randomised": defense.get("randomised"),
            "masking_warnings": lb.masking.get(name, []), "n_examples": (setting.get("data") or {}).get("n_examples"),
            "certified_acc": lb.certified_acc(name, lb.headline_eps),
        })
    return entries


def _certificates_json(lb: Leaderboard) -> dict:
    """Defense -> eps -> its certified accuracy and the attacks that break the certificate ([]: none; None: no attack
    with per-example outcomes checked it), as :func:`.checks.certificate_checks` finds them."""
    found: dict[str, dict] = {}
    for defense, eps in lb.certificates:
        found.setdefault(defense, {})[fmt_eps(eps)] = {"eps": eps, "certified_acc": lb.certified_acc(defense, eps),
                                                       "violations": lb.certificate_checks[defense][eps]}
    return found


def _by_threat(lb: Leaderboard, defense: str) -> dict:
    """Threat model -> the defense's per-example worst case at the headline eps; None where it was not evaluated."""
    label = fmt_eps(lb.headline_eps)
    found = {threat: next(r["by_eps"].get(label) for r in lb.rankings[threat] if r["defense"] == defense)
             if threat in lb.rankings else None for threat in THREAT_MODELS if threat != "overall"}
    return {threat: w["robust_acc"] if w and w["evaluated"] else None for threat, w in found.items()}


def write_leaderboard(cells: pd.DataFrame, setting: dict, out_dir: Path, outcomes: dict | None = None,
                      certificates: dict | None = None) -> list[Path]:
    """Render the leaderboard of one suite into ``out_dir`` (created); return the files written. ``outcomes``:
    ``cell_id -> (clean_correct, adv_correct)`` (``ResultStore.outcomes``), for the per-example worst case;
    ``certificates``: ``(defense, eps) -> certified points`` (:mod:`robustbench_ens.certify`), a floor checked
    against the attacks and shown beside the worst case."""
    setting = setting or {}
    lb = build(cells, setting, outcomes, certificates)
    paired = comparisons.paired_frame(lb)
    images = {page.HEATMAP: plots.heatmap_png(lb, setting),
              **{page.robust_vs_eps_file(threat): plots.robust_vs_eps_png(lb, setting, threat)
                 for threat in page.plotted_threats(lb)}}
    blocks = page.build_page(lb, setting, paired)
    # everything rendered before the first file is written: a failure leaves the old leaderboard as it was
    return atomic.write_files(Path(out_dir), {
        "matrix.csv": files.csv_text(tables.matrix_frame(lb)),
        "defenses.csv": files.csv_text(tables.defenses_frame(lb)),
        "attacks.csv": files.csv_text(tables.attacks_frame(lb)),
        "cells.csv": files.csv_text(tables.cells_frame(cells)),
        "leaderboard.json": files.json_text(leaderboard_json(lb, setting, cells)),
        "entries.json": files.json_text(robustbench_entries(lb, setting)),
        PER_EXAMPLE: per_example_bytes(per_example_frame(lb)),
        "success.csv": files.csv_text(comparisons.success_frame(lb)),
        "paired_tests.csv": files.csv_text(paired),
        **images,
        "README.md": markdown.render(blocks),
        "index.html": html.render(blocks, images)})
