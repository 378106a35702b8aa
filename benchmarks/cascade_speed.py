"""What a cascade saves: white-box PGD with random restarts on each defense, run in full and cascaded.

The grid: ``benchmarks/grid_suite.toml``'s models and four defenses (the DVERGE paper's baseline and
DVERGE ensembles, two adversarially trained ResNets), attacked by PGD (50 steps of eps/5, as DVERGE's
white-box evaluation) from ``--restarts`` random starts at ``--eps`` (8/255). It runs twice into fresh folders:
each restart on every point, then as a cascade (``cascade = true``: each restart only on the points
the ones before it left robust). Reported: both wall times, the crafting seconds the stores record,
the points each cascaded restart attacked, and whether the per-example worst case (a point is robust
only if every restart fails on it) is the same in both runs, defense by defense.

Example::

    python benchmarks/cascade_speed.py --models ../shared/models --data ../shared/data/cifar10.npz --n 200
"""
from __future__ import annotations

import json
import sys
import tempfile
import tomllib
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from arguments import benchmark_parser  # noqa: E402  (this folder)
from grid_speed import timed  # noqa: E402
from robustbench_ens import environment  # noqa: E402
from robustbench_ens.runner import STORE_FILE, RunConfig, run_suite  # noqa: E402
from robustbench_ens.store import ResultStore  # noqa: E402
from robustbench_ens.suite import apply_overrides, parse_suite  # noqa: E402

BASE = REPO / "benchmarks" / "grid_suite.toml"


def pgd_suite(restarts: int, cascade: bool, n: int | None, device: str, eps: str):
    raw = tomllib.loads(BASE.read_text(encoding="utf-8"))
    raw["name"] = "cascade_speed"
    raw["attacks"] = [{"name": "PGD-50", "attack": "pgd", "on": "defense", "restarts": restarts, "cascade": cascade,
                       "params": {"steps": 50, "alpha": "eps/5"}}]
    return apply_overrides(parse_suite(raw, f"{BASE} (PGD restarts)"), n_examples=n, device=device, eps=[eps])


def worst_cases(out: Path, cells) -> dict[str, list[bool]]:
    """Per defense: the points robust to every restart."""
    outcomes = ResultStore(out / STORE_FILE).outcomes(cells["cell_id"])
    robust = {}
    for row in cells[cells["attack"] != "clean"].itertuples():
        clean, adv = outcomes[row.cell_id]
        robust[row.defense] = (clean & adv) & robust.get(row.defense, clean & adv)
    return {defense: mask.tolist() for defense, mask in robust.items()}


def main(argv: list[str] | None = None) -> int:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--n", type=int, default=200, help="test images (default 200)")
    parser.add_argument("--restarts", type=int, default=5, help="PGD random starts (default 5, as DVERGE's)")
    parser.add_argument("--eps", default="8/255", help="the Linf budget (default 8/255)")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON output (default benchmarks/results/cascade_speed_<device>.json)")
    args = parser.parse_args(argv)
    environment.configure_threads()
    environment.tune_cpu_allocator()
    runs = {}
    with tempfile.TemporaryDirectory() as folder:
        for cascade in (False, True):
            suite = pgd_suite(args.restarts, cascade, args.n, args.device, args.eps)
            device = environment.select_device(suite.device)
            out = Path(folder) / f"cascade_{cascade}"
            config = RunConfig(suite=suite, out_dir=out, leaderboard_dir=None, data_path=args.data,
                               models_dir=args.models, cache_dir=Path(folder) / "cache", progress=False)
            result = {}
            wall = timed(lambda: result.setdefault("cells", run_suite(config).cells), device)
            cells = result["cells"]
            attacked = cells[cells["attack"] != "clean"]
            runs["cascaded" if cascade else "full"] = {
                "wall_s": wall, "crafting_s": float(attacked["craft_time_s"].sum()),
                "points_attacked": {f"{r.defense} {r.attack}": None if pd.isna(r.attacked) else int(r.attacked)
                                    for r in attacked.itertuples()},
                "robust_acc": {f"{r.defense} {r.attack}": r.robust_acc for r in attacked.itertuples()},
                "worst_case": worst_cases(out, cells)}
    full, cascaded = runs["full"], runs["cascaded"]
    same = {d: full["worst_case"][d] == cascaded["worst_case"][d] for d in full["worst_case"]}
    summary = {"machine": environment.hardware(device), "n": args.n, "restarts": args.restarts, "eps": args.eps,
               "full_wall_s": full["wall_s"], "cascaded_wall_s": cascaded["wall_s"],
               "speedup": full["wall_s"] / cascaded["wall_s"], "same_worst_case": same,
               "worst_case_robust_acc": {d: sum(mask) / args.n for d, mask in full["worst_case"].items()},
               "runs": {k: {key: v for key, v in run.items() if key != "worst_case"} for k, run in runs.items()}}
    out = args.out or REPO / "benchmarks" / "results" / \
        f"cascade_speed_{device.type}_eps{args.eps.replace('/', '-')}.json"
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"full {full['wall_s']:.1f} s, cascaded {cascaded['wall_s']:.1f} s ({summary['speedup']:.2f}x); "
          f"same per-example worst case: {same}; written to {out}")
    return 0 if all(same.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
