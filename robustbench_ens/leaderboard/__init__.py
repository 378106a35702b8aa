"""Leaderboard renderer: grid cells + run setting -> a published leaderboard folder.

``write_leaderboard(cells, setting, out_dir)`` writes, each file atomically:

* ``README.md``        the page as Markdown (GitHub shows it for the folder)
* ``index.html``       the same page, one self-contained file with sortable tables
* ``heatmap.png``      robust accuracy, attacks x defenses, one panel per eps
* ``robust_vs_eps.png`` worst-case robust accuracy versus eps, one line per defense
* ``matrix.csv``, ``defenses.csv``, ``attacks.csv``, ``cells.csv``, ``leaderboard.json``
* ``entries.json``     one RobustBench-style entry per defense (clean, AutoAttack, worst case)

Modules: :mod:`.tables` (numbers), :mod:`.views` (display tables), :mod:`.page` (sections),
:mod:`.markdown` / :mod:`.html` (renderers), :mod:`.plots`, :mod:`.files` (atomic writes),
:mod:`.format` (eps and percent text).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .. import atomic
from . import files, html, markdown, page, plots, tables
from .format import fmt_eps
from .tables import Leaderboard, build

__all__ = ["write_leaderboard", "build", "Leaderboard", "leaderboard_json", "robustbench_entries"]


def leaderboard_json(lb: Leaderboard, setting: dict, cells: pd.DataFrame) -> dict:
    """The content of leaderboard.json (before NaN -> null)."""
    return {
        "setting": setting or {},
        "headline_eps": lb.headline_eps,
        "defense_ranking": lb.defense_ranking,
        "attack_ranking": lb.attack_ranking,
        "masking_warnings": lb.masking,
        "matrix": tables.matrix_json(lb),
        "cells": tables.cells_frame(cells),
    }


def robustbench_entries(lb: Leaderboard, setting: dict) -> list[dict]:
    """One entry per defense in the style of RobustBench's model cards, at the headline eps.

    ``autoattack_acc`` is the robust accuracy under the suite's AutoAttack at that eps (None if
    it ran none); ``adaptive_worst_case`` is the worst case over every attack there, transfer and
    white-box, which is the number the defense is ranked by.
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
            "complete": worst.get("complete"), "randomised": defense.get("randomised"),
            "masking_warnings": lb.masking.get(name, []), "n_examples": (setting.get("data") or {}).get("n_examples"),
        })
    return entries


def write_leaderboard(cells: pd.DataFrame, setting: dict, out_dir: Path) -> list[Path]:
    """Render the leaderboard of one suite into ``out_dir`` (created); return the files written."""
    setting = setting or {}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lb = build(cells, setting)
    written = [
        files.write_csv(out / "matrix.csv", tables.matrix_frame(lb)),
        files.write_csv(out / "defenses.csv", tables.defenses_frame(lb)),
        files.write_csv(out / "attacks.csv", tables.attacks_frame(lb)),
        files.write_csv(out / "cells.csv", tables.cells_frame(cells)),
        files.write_json(out / "leaderboard.json", leaderboard_json(lb, setting, cells)),
        files.write_json(out / "entries.json", robustbench_entries(lb, setting)),
    ]
    images = {page.HEATMAP: plots.heatmap_png(lb, setting),
              page.ROBUST_VS_EPS: plots.robust_vs_eps_png(lb, setting)}
    written += [atomic.write_bytes(out / name, data) for name, data in images.items()]
    blocks = page.build_page(lb, setting)
    written.append(atomic.write_text(out / "README.md", markdown.render(blocks)))
    written.append(atomic.write_text(out / "index.html", html.render(blocks, images)))
    return written
