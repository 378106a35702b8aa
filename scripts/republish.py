"""Render a published leaderboard again from its own files, without the run folder that made it.

A leaderboard folder holds every cell (``cells.csv``), the run's setting (``leaderboard.json``) and every per-example
outcome (``per_example.csv.gz``): all that :func:`robustbench_ens.leaderboard.write_leaderboard` needs. This script
feeds them back in, so that a page made by an older version of the page code can take the current layout after its
run folder is gone; and, as an audit, it says which data files came out different (each should be byte-identical:
the numbers do not depend on the page code). Run folders' certificates are per point and are not published, so a
leaderboard with certified defenses cannot be rendered this way::

    python scripts/republish.py leaderboards/dverge_protocol            # in place
    python scripts/republish.py leaderboards/dverge_protocol --out /tmp/lb   # elsewhere, to compare
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from robustbench_ens import environment  # noqa: E402
from robustbench_ens.leaderboard import PER_EXAMPLE, write_leaderboard  # noqa: E402
from robustbench_ens.leaderboard.per_example import read_per_example  # noqa: E402

DATA_FILES = ("cells.csv", "matrix.csv", "defenses.csv", "attacks.csv", "success.csv", "paired_tests.csv",
              PER_EXAMPLE, "entries.json")


class RepublishError(ValueError):
    pass


def published_inputs(folder: Path, for_pages: bool = True) -> tuple[pd.DataFrame, dict, dict]:
    """The cells, setting and per-example outcomes (``cell_id -> (clean_correct, adv_correct)``) of a published
    leaderboard folder. ``for_pages``: refuse a leaderboard with certified defenses, whose pages need the per-point
    certificates (the worst cases and rankings do not)."""
    missing = [name for name in ("cells.csv", "leaderboard.json", PER_EXAMPLE) if not (folder / name).is_file()]
    if missing:
        raise RepublishError(f"{folder} lacks {', '.join(missing)}: it is not a leaderboard with per-example outcomes "
                             "(a first-edition page, or not a leaderboard folder)")
    published = json.loads((folder / "leaderboard.json").read_text(encoding="utf-8"))
    if for_pages and published.get("certificates"):
        raise RepublishError(f"{folder} has certified defenses ({', '.join(published['certificates'])}): their "
                             "per-point certificates are in the run folder only; render it from there")
    cells = pd.read_csv(folder / "cells.csv", keep_default_na=True)
    cells["error"] = cells["error"].astype(object).where(cells["error"].notna(), None)
    ids = {(r.defense, r.attack, float(r.eps), int(r.seed)): r.cell_id for r in cells.itertuples()}
    outcomes = {}
    for (defense, attack, eps, seed), rows in read_per_example(folder / PER_EXAMPLE).groupby(
            ["defense", "attack", "eps", "seed"], sort=False):
        key = (defense, attack, float(eps), int(seed))
        if key not in ids:
            raise RepublishError(f"{PER_EXAMPLE} has outcomes of {key}, which cells.csv does not hold")
        rows = rows.sort_values("index")
        outcomes[ids[key]] = (rows["clean_correct"].to_numpy(dtype=bool), rows["adv_correct"].to_numpy(dtype=bool))
    return cells, published["setting"], outcomes


def digests(folder: Path) -> dict[str, str]:
    return {name: hashlib.sha256((folder / name).read_bytes()).hexdigest()
            for name in DATA_FILES if (folder / name).is_file()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("leaderboard", type=Path, help="a published leaderboard folder (e.g. leaderboards/X)")
    parser.add_argument("--out", type=Path, default=None, help="where to write it (default: the folder itself)")
    args = parser.parse_args(argv)
    try:
        cells, setting, outcomes = published_inputs(args.leaderboard)
    except RepublishError as error:
        parser.exit(2, f"error: {error}\n")
    before = digests(args.leaderboard)
    setting["rendered_again"] = {"git_commit": environment.git_commit(),
                                 "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    out = args.out or args.leaderboard
    written = write_leaderboard(cells, setting, out, outcomes)
    changed = [name for name, digest in digests(out).items() if before.get(name) != digest]
    print(f"wrote {len(written)} files to {out}; data files "
          + (f"that differ from the published ones: {', '.join(changed)}" if changed else "all byte-identical"))
    return 1 if changed else 0


if __name__ == "__main__":
    sys.exit(main())
