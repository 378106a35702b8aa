"""Leaderboard renderer: grid cells + run setting -> a published leaderboard folder.

``write_leaderboard(cells, setting, out_dir)`` writes, each file atomically:

* ``README.md``        the page as Markdown (GitHub shows it for the folder)
* ``index.html``       the same page, one self-contained file with sortable tables
* ``heatmap.png``      robust accuracy, attacks x defenses, one panel per eps
* ``robust_vs_eps.png`` worst-case robust accuracy versus eps, one line per defense
* ``matrix.csv``, ``defenses.csv``, ``attacks.csv``, ``cells.csv``, ``leaderboard.json``

Modules: :mod:`.tables` (numbers), :mod:`.views` (display tables), :mod:`.page` (sections),
:mod:`.markdown` / :mod:`.html` (renderers), :mod:`.plots`, :mod:`.files` (atomic writes),
:mod:`.format` (eps and percent text).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .. import atomic
from . import files, html, markdown, page, plots, tables
from .tables import Leaderboard, build

__all__ = ["write_leaderboard", "build", "Leaderboard", "leaderboard_json"]


def leaderboard_json(lb: Leaderboard, setting: dict, cells: pd.DataFrame) -> dict:
    """The content of leaderboard.json (before NaN -> null)."""
    return {
        "setting": setting or {},
        "headline_eps": lb.headline_eps,
        "defense_ranking": lb.defense_ranking,
        "attack_ranking": lb.attack_ranking,
        "matrix": tables.matrix_json(lb),
        "cells": tables.cells_frame(cells),
    }


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
    ]
    images = {page.HEATMAP: plots.heatmap_png(lb, setting),
              page.ROBUST_VS_EPS: plots.robust_vs_eps_png(lb, setting)}
    written += [atomic.write_bytes(out / name, data) for name, data in images.items()]
    blocks = page.build_page(lb, setting)
    written.append(atomic.write_text(out / "README.md", markdown.render(blocks)))
    written.append(atomic.write_text(out / "index.html", html.render(blocks, images)))
    return written
