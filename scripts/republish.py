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
import sys
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from robustbench_ens import environment  # noqa: E402
from robustbench_ens.leaderboard import PER_EXAMPLE, write_leaderboard  # noqa: E402
from robustbench_ens.leaderboard.per_example import PublishedError, read_published  # noqa: E402

DATA_FILES = ("cells.csv", "matrix.csv", "defenses.csv", "attacks.csv", "success.csv", "paired_tests.csv",
              PER_EXAMPLE, "entries.json")


def digests(folder: Path) -> dict[str, str]:
    return {name: hashlib.sha256((folder / name).read_bytes()).hexdigest()
            for name in DATA_FILES if (folder / name).is_file()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("leaderboard", type=Path, help="a published leaderboard folder (e.g. leaderboards/X)")
    parser.add_argument("--out", type=Path, default=None, help="where to write it (default: the folder itself)")
    args = parser.parse_args(argv)
    try:
        cells, setting, outcomes = read_published(args.leaderboard)
    except PublishedError as error:
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
