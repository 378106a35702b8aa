"""``per_example.csv.gz``: every cell's per-example outcomes, from which every number of the rankings can be recomputed.

One row per test point per cell, columns :data:`COLUMNS`: ``defense, attack, eps, seed,
index, clean_correct, adv_correct``. ``index`` is the point's position in the test set;
``clean_correct`` (0/1) says whether the defense classified it correctly clean and
``adv_correct`` whether it did so on the attack's adversarial image; a point is robust to
the cell when both are 1. The clean rows have ``attack = "clean"``, ``eps = 0`` and
``adv_correct = clean_correct``. A failed cell has no rows. ``eps`` is written with
:func:`repr` (as text in the frame), so it reads back as the float of ``cells.csv``.

The file is gzip-compressed with a zero timestamp, so the same outcomes give the same bytes.
"""
from __future__ import annotations

import gzip
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from .tables import Leaderboard

FILENAME = "per_example.csv.gz"
COLUMNS = ["defense", "attack", "eps", "seed", "index", "clean_correct", "adv_correct"]


def per_example_frame(lb: Leaderboard) -> pd.DataFrame:
    """The rows of the file: defenses in ranking order; per defense the clean row, then the attacks by eps."""
    order = {d: i for i, d in enumerate(lb.defenses)}
    keys = sorted((key for key, run in lb.runs.items() if run.ok and run.outcome is not None),
                  key=lambda k: (order.get(k[2], len(order)), k[0], k[1] != "clean", _attack_order(lb, k[1]),
                                 str(k[3])))
    parts = []
    for eps, attack, defense, seed in keys:
        clean, adv = lb.runs[(eps, attack, defense, seed)].outcome
        n = len(clean)
        parts.append(pd.DataFrame({"defense": defense, "attack": attack, "eps": repr(float(eps)), "seed": seed,
                                   "index": np.arange(n), "clean_correct": clean.astype(np.uint8),
                                   "adv_correct": adv.astype(np.uint8)}))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=COLUMNS)


def _attack_order(lb: Leaderboard, attack: str) -> int:
    return lb.attacks.index(attack) if attack in lb.attacks else -1


def per_example_bytes(frame: pd.DataFrame) -> bytes:
    """``frame`` as a reproducible gzip'd CSV."""
    text = frame.to_csv(index=False, lineterminator="\n")
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0, filename="") as archive:
        archive.write(text.encode("utf-8"))
    return buffer.getvalue()


def read_per_example(path: Path) -> pd.DataFrame:
    """The file as a DataFrame (0/1 columns as int)."""
    return pd.read_csv(path, dtype={"defense": str, "attack": str})


class PublishedError(ValueError):
    """A folder that is not a leaderboard with per-example outcomes, or one that cannot be read back as asked."""


def read_published(folder: Path, for_pages: bool = True) -> tuple[pd.DataFrame, dict, dict]:
    """The cells, setting and per-example outcomes (``cell_id -> (clean_correct, adv_correct)``) of a published
    leaderboard folder. ``for_pages``: refuse a leaderboard with certified defenses, whose pages need the per-point
    certificates (the worst cases and rankings do not)."""
    missing = [name for name in ("cells.csv", "leaderboard.json", FILENAME) if not (folder / name).is_file()]
    if missing:
        raise PublishedError(f"{folder} lacks {', '.join(missing)}: it is not a leaderboard with per-example outcomes "
                             "(a first-edition page, or not a leaderboard folder)")
    published = json.loads((folder / "leaderboard.json").read_text(encoding="utf-8"))
    if for_pages and published.get("certificates"):
        raise PublishedError(f"{folder} has certified defenses ({', '.join(published['certificates'])}): their "
                             "per-point certificates are in the run folder only; render it from there")
    cells = pd.read_csv(folder / "cells.csv", keep_default_na=True)
    cells["error"] = cells["error"].astype(object).where(cells["error"].notna(), None)
    ids = {(r.defense, r.attack, float(r.eps), int(r.seed)): r.cell_id for r in cells.itertuples()}
    outcomes = {}
    for (defense, attack, eps, seed), rows in read_per_example(folder / FILENAME).groupby(
            ["defense", "attack", "eps", "seed"], sort=False):
        key = (defense, attack, float(eps), int(seed))
        if key not in ids:
            raise PublishedError(f"{FILENAME} has outcomes of {key}, which cells.csv does not hold")
        rows = rows.sort_values("index")
        outcomes[ids[key]] = (rows["clean_correct"].to_numpy(dtype=bool), rows["adv_correct"].to_numpy(dtype=bool))
    return cells, published["setting"], outcomes
