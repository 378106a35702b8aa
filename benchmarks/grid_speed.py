"""Runner overhead: an A x D grid's time against the sum of its parts.

0. A warm-up: one step of each attack and one pass of each defense, untimed.
1. The grid: ``run_suite`` on ``benchmarks/grid_suite.toml`` (4 transfer attacks x 4 defenses at
   8/255, plus the clean row) into a fresh folder, without a leaderboard; wall time from the call
   to its return (models loaded, checks, crafting, saving, evaluation, the store).
2. Its parts, alone, in this process, on the same models, images and batch size: each attack's
   crafting run (``create_attack`` + ``craft``), and each evaluation pass (every defense on
   the clean images and on every adversarial set).
3. A second ``run_suite`` over the finished grid, writing the leaderboard: what resuming a finished
   grid and publishing it cost.

Reported: grid / sum of parts (the target is <= 1.1), and where the rest of the time went: the grid's
own crafting and evaluation seconds (as its store records them) and the runner's own time, the rest
(loading models and data, checks, saving sets, store commits). Parts timed inside and outside the
grid differ by how much the machine's speed drifted between the two.

Example::

    python benchmarks/grid_speed.py --models ../shared/models --data ../shared/data/cifar10_slice.npz --device cpu
"""
from __future__ import annotations

import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from arguments import benchmark_parser  # noqa: E402  (this folder)
from attacks import create_attack  # noqa: E402
from robustbench_ens import environment  # noqa: E402
from robustbench_ens.metrics import predict  # noqa: E402
from robustbench_ens.profiling import synchronize  # noqa: E402
from robustbench_ens.runner import RunConfig, run_suite  # noqa: E402
from robustbench_ens.suite import apply_overrides, load_suite  # noqa: E402
from robustbench_ens.workspace import craft, expand_models, open_workspace  # noqa: E402

SUITE = REPO / "benchmarks" / "grid_suite.toml"


def main(argv: list[str] | None = None) -> int:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--n", type=int, default=None, help="test images (default: the suite's 256)")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default: the suite's 128)")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON output (default benchmarks/results/grid_speed_<device>.json)")
    args = parser.parse_args(argv)
    environment.configure_threads()
    allocator = environment.tune_cpu_allocator()  # as run_all.py does
    suite = apply_overrides(load_suite(str(SUITE)), n_examples=args.n, device=args.device)
    if args.batch is not None:
        suite = dataclasses.replace(suite, batch_size=args.batch)
    device = environment.select_device(suite.device)

    with tempfile.TemporaryDirectory() as folder:
        config = RunConfig(suite=suite, out_dir=Path(folder) / "run", leaderboard_dir=None, data_path=args.data,
                           models_dir=args.models, cache_dir=Path(folder) / "cache", progress=False)
        warm_up(config, device)
        grid = {}
        grid_s = timed(lambda: grid.setdefault("cells", run_suite(config).cells), device)
        config.leaderboard_dir = Path(folder) / "leaderboard"
        publish_s = timed(lambda: run_suite(config), device)
        workspace = open_workspace(config, device)[0]
        parts = time_parts(workspace, device)

    crafting, evaluation = sum(parts["crafting"].values()), sum(parts["evaluation"].values())
    # the same work as timed inside the grid (the store's records): what is left is the runner's own time
    inside_crafting = float(grid["cells"].drop_duplicates("adv_key")["craft_time_s"].sum())
    inside_evaluation = float(grid["cells"]["eval_time_s"].sum())
    result = {"machine": {**environment.hardware(device), "allocator": allocator}, "n": suite.n_examples,
              "batch": suite.batch_size, "attacks": len(suite.attacks), "defenses": len(suite.defenses),
              "grid_s": grid_s, "crafting_s": crafting, "evaluation_s": evaluation,
              "ratio": grid_s / (crafting + evaluation), "grid_crafting_s": inside_crafting,
              "grid_evaluation_s": inside_evaluation, "runner_own_s": grid_s - inside_crafting - inside_evaluation,
              "resume_and_publish_s": publish_s, "parts": parts}
    out = args.out or REPO / "benchmarks" / "results" / f"grid_speed_{device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"grid {len(suite.attacks)} attacks x {len(suite.defenses)} defenses, n={suite.n_examples}, "
          f"{device}: {grid_s:.1f} s; parts alone: crafting {crafting:.1f} s + evaluation {evaluation:.1f} s; "
          f"ratio {result['ratio']:.3f}; inside the grid: crafting {inside_crafting:.1f} s + evaluation "
          f"{inside_evaluation:.1f} s + the runner's own {result['runner_own_s']:.1f} s; resume + leaderboard "
          f"{publish_s:.1f} s; wrote {out}")
    return 0


def warm_up(config, device) -> None:
    """One step of every attack and one pass of every defense on one batch, so that neither the grid nor
    its parts pays the first calls' costs (CUDA context, kernel selection, allocator growth)."""
    workspace = open_workspace(config, device)[0]
    suite = workspace.suite
    images, labels = workspace.images[:suite.batch_size], workspace.labels[:suite.batch_size]
    for defense in workspace.defenses.values():
        predict(defense, images, suite.batch_size, device)
    for entry in suite.attacks:
        attack = create_attack(entry.attack, expand_models(workspace.models, entry.surrogates), eps=suite.eps[0],
                               norm=suite.norm, seed=suite.seed, **{**entry.params, "steps": 1})
        craft(attack, images, labels, suite.batch_size, device)


def time_parts(workspace, device) -> dict:
    """Seconds of each crafting run and each evaluation pass, alone."""
    suite, images, labels = workspace.suite, workspace.images, workspace.labels
    parts: dict[str, dict[str, float]] = {"crafting": {}, "evaluation": {}}
    for name, defense in workspace.defenses.items():
        parts["evaluation"][f"clean -> {name}"] = timed(
            lambda d=defense: predict(d, images, suite.batch_size, device), device)
    for entry in suite.attacks:
        attack = create_attack(entry.attack, expand_models(workspace.models, entry.surrogates), eps=suite.eps[0],
                               norm=suite.norm, seed=suite.seed, **entry.params)
        started = time.perf_counter()
        x_adv = craft(attack, images, labels, suite.batch_size, device, progress=False)
        synchronize(device)
        parts["crafting"][entry.name] = time.perf_counter() - started
        for name, defense in workspace.defenses.items():
            parts["evaluation"][f"{entry.name} -> {name}"] = timed(
                lambda d=defense, x=x_adv: predict(d, x, suite.batch_size, device), device)
    return parts


def timed(work, device) -> float:
    synchronize(device)
    started = time.perf_counter()
    work()
    synchronize(device)
    return time.perf_counter() - started


if __name__ == "__main__":
    sys.exit(main())
