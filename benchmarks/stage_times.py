"""Where a run's time went: the recorded seconds of a run folder's cells, by stage.

Reads the results store of a finished (or partial) run and the suite it ran, and sums, per stage:
transfer crafting (each adversarial set once, however many defenses read it), white-box and
adaptive crafting, black-box crafting (one set per defense and eps), and evaluation (every cell's
defense passes). A cascaded stage also reports how many points it attacked out of how many it
could have. Model training and the checks before the grid are not in the store: the zoo's cache
records each trained model's time, and the runner prints the rest.

Example::

    python benchmarks/stage_times.py --suite cifar10_pools --out /work/runs/cifar10_pools
    python benchmarks/stage_times.py --suite cifar10 --out ~/runs/cifar10_v2 --leaderboard leaderboards/cifar10
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from robustbench_ens.leaderboard.tables import planned_defenses  # noqa: E402
from robustbench_ens.runner import STORE_FILE  # noqa: E402
from robustbench_ens.store import ResultStore  # noqa: E402
from robustbench_ens.suite import CLEAN, load_suite  # noqa: E402
from robustbench_ens.whitebox import attack_kind  # noqa: E402


def stage_times(cells: pd.DataFrame, kinds: dict[str, str]) -> pd.DataFrame:
    """One row per stage: sets, cells, recorded seconds (and for cascaded cells, points attacked of those possible)."""
    ok = cells[(cells["status"] == "ok") & (cells["attack"] != CLEAN)].copy()
    ok["kind"] = ok["attack"].map(kinds).fillna("not in the suite")
    sets = ok.drop_duplicates("adv_key")
    rows = [{"stage": f"crafting: {kind}", "sets": len(group), "cells": int((ok["kind"] == kind).sum()),
             "seconds": group["craft_time_s"].sum(),
             "points attacked": _attacked(group)} for kind, group in sets.groupby("kind", sort=True)]
    rows.append({"stage": "evaluation (every cell, the clean row included)", "sets": None,
                 "cells": int((cells["status"] == "ok").sum()),
                 "seconds": cells.loc[cells["status"] == "ok", "eval_time_s"].sum(), "points attacked": None})
    table = pd.DataFrame(rows)
    total = {"stage": "total", "sets": int(table["sets"].sum()), "cells": len(cells),
             "seconds": table["seconds"].sum(), "points attacked": None}
    return pd.concat([table, pd.DataFrame([total])], ignore_index=True).astype({"sets": "Int64"})


def in_grid(cells: pd.DataFrame, suite, runs_on: dict[str, frozenset] | None = None) -> pd.Series:
    """Which cells the suite's grid has now: the clean row and each attack's eps and defenses, at the suite's n
    (a store may also hold cells of an earlier version of the suite, e.g. an attack since limited to fewer
    defenses). ``runs_on``: the defenses each attack ran on as the run decided them (its published setting); an
    adaptive attack that names none runs on the defenses with predictors, known only once they are built."""
    attacks = {a.name: a for a in suite.attacks}
    defenses = {d.name for d in suite.defenses}
    runs_on = runs_on or {}

    def planned(cell) -> bool:
        attack = attacks.get(cell.attack)
        if cell.defense not in defenses or cell.n != suite.n_examples:
            return False
        if cell.attack == CLEAN:
            return True
        return attack is not None and (cell.defense in runs_on[attack.name] if attack.name in runs_on
                                       else attack.runs_on(cell.defense)) \
            and any(abs(cell.eps - e) < 1e-9 for e in attack.eps_values(suite.eps))
    return cells.apply(planned, axis=1).astype(bool)


def _attacked(group: pd.DataFrame) -> str | None:
    if "attacked" not in group or group["attacked"].isna().all():
        return None
    cascaded = group.dropna(subset=["attacked"])
    return f"{int(cascaded['attacked'].sum())} of {int(cascaded['n'].sum())} (cascaded sets)"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", required=True, help="the suite the run folder ran (a name or a .toml path)")
    parser.add_argument("--out", type=Path, required=True, help="the run folder (run_all.py --out)")
    parser.add_argument("--leaderboard", type=Path, help="the leaderboard the run published (its leaderboard.json "
                        "says which defenses each attack ran on); needed for a suite with an adaptive attack that "
                        "names no defenses")
    args = parser.parse_args(argv)
    store_path = args.out / STORE_FILE
    if not store_path.is_file():
        parser.error(f"{args.out} holds no results store ({STORE_FILE}): give the folder run_all.py --out wrote")
    suite = load_suite(args.suite)
    cells = ResultStore(store_path).cells()
    cells = cells[cells["suite"] == suite.name]
    if cells.empty:
        parser.error(f"{store_path} holds no cells of the suite {suite.name!r}")
    runs_on = None
    if args.leaderboard is not None:
        published = args.leaderboard / "leaderboard.json"
        if not published.is_file():
            parser.error(f"{args.leaderboard} holds no leaderboard.json: give the folder the run published into")
        runs_on = planned_defenses(json.loads(published.read_text())["setting"])
    elif any(a.on == "adaptive" and a.defenses is None for a in suite.attacks):
        parser.error(f"the suite {suite.name!r} has an adaptive attack that names no defenses: the run decided them "
                     "when it built the defenses; give --leaderboard <the folder it published into>")
    planned = in_grid(cells, suite, runs_on)
    table = stage_times(cells[planned], {a.name: attack_kind(a) for a in suite.attacks})
    table["minutes"] = (table["seconds"] / 60).round(1)
    outside = cells[~planned]
    print(f"{suite.name}: {int(planned.sum())} cells of the suite's grid recorded in {args.out}"
          + (f" (and {len(outside)} outside it, not counted: "
             f"{', '.join(sorted(outside['attack'].unique()))}; "
             f"{(outside['craft_time_s'].fillna(0).sum() + outside['eval_time_s'].fillna(0).sum()) / 60:.1f} min)"
             if len(outside) else ""))
    shown = table.drop(columns="seconds").astype(object)
    print(shown.where(shown.notna(), "").to_string(index=False))


if __name__ == "__main__":
    main()
