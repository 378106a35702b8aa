"""``python run_all.py --suite cifar10``: parse the command line, run the suite, publish.

Exit codes: 0 all of the grid's cells finished; 1 some of the grid's cells are recorded as failed
(in this run or an earlier one; shown on the leaderboard; ``--retry-failed`` runs them again);
2 bad input (data, suite, names, device, checkpoint), reported in one line; 130 interrupted
(finished cells are kept: the same command resumes).
"""
from __future__ import annotations

import argparse
import faulthandler
import os
import shlex
import sys
import time
from pathlib import Path

from .executors import EXECUTORS, RayOptions
from .suite import apply_overrides, load_suite, shipped_suites

EPILOG = """\
examples:
  python run_all.py --suite cifar10 --data ../shared/data/cifar10.npz --models ../shared/models
  python run_all.py --suite smoke --n-examples 32 --eps 4/255,8/255 --out /tmp/smoke
  python run_all.py --suite cifar10 --attacks Ens --defenses DVERGE-s0-3xRN20,RN4B-AT2 --out /tmp/part
  python run_all.py --suite cifar10 --executor ray --ray-address auto --out /mnt/shared/runs/cifar10

environment variables: RBE_DATA (data path), RBE_MODELS (pretrained models folder),
RBE_CACHE (where trained models are cached; default ~/.cache/robustbench_ens/models).

exit codes: 0 every cell of the grid finished; 1 some cells are recorded as failed (see the
leaderboard; --retry-failed runs them again); 2 bad input, reported in one line; 130 interrupted
(finished cells are kept: run the same command to resume).
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="run_all.py", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Evaluate every attack of a suite against every defense and publish its leaderboard "
                    "(Markdown, CSV, JSON, HTML, PNG) under leaderboards/<suite>/.")
    parser.add_argument("--suite", default="cifar10",
                        help=f"a shipped suite ({', '.join(shipped_suites())}) or a path to a suite .toml "
                             "(default: cifar10)")
    parser.add_argument("--data", metavar="PATH", default=None,
                        help="CIFAR-10: a folder with cifar-10-batches-py/ (downloaded there if absent) or an "
                             ".npz with x_train/y_train/x_test/y_test (default: $RBE_DATA, else "
                             "~/.cache/robustbench_ens/data)")
    parser.add_argument("--models", metavar="PATH", default=None,
                        help="folder of pretrained checkpoints that the suite names (default: $RBE_MODELS); "
                             "an absent one is trained by the zoo and cached, unless the suite marks it "
                             "require_checkpoint (DVERGE, adversarially trained models), which stops the run")
    parser.add_argument("--cache", metavar="PATH", default=None,
                        help="cache of models trained by the zoo (default: $RBE_CACHE or "
                             "~/.cache/robustbench_ens/models)")
    parser.add_argument("--attacks", metavar="A,B", type=_names, default=None,
                        help="run only these attacks of the suite, by their names in the suite; an attack the suite "
                             "runs on several surrogate pools is NAME@POOL, and NAME alone selects it on every pool")
    parser.add_argument("--defenses", metavar="D,E", type=_names, default=None,
                        help="evaluate only these defenses of the suite")
    parser.add_argument("--eps", metavar="E,F", type=_names, default=None,
                        help="perturbation budgets, e.g. 4/255,8/255 (Linf) or 0.25,0.5 (L2); replaces the suite's")
    parser.add_argument("--n-examples", metavar="N", type=int, default=None,
                        help="evaluate on the first N test points (replaces the suite's)")
    parser.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N (default: the suite's, auto)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the attacks (default: the suite's)")
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="run folder: results store and adversarial sets (default: runs/<suite>)")
    parser.add_argument("--leaderboard-dir", metavar="DIR", default=None,
                        help="where the leaderboard is written (default: leaderboards/<suite>; <out>/leaderboard "
                             "when --attacks, --defenses, --eps, --n-examples or --seed change the suite's grid, so "
                             "that such a run never replaces the suite's own leaderboard)")
    resume = parser.add_mutually_exclusive_group()
    resume.add_argument("--resume", dest="fresh", action="store_false", default=False,
                        help="reuse finished cells and saved adversarial sets in --out (default)")
    resume.add_argument("--fresh", dest="fresh", action="store_true",
                        help="discard this grid's results and adversarial sets in --out and compute them again "
                             "(other results there are kept); done only once every check has passed")
    parser.add_argument("--retry-failed", action="store_true",
                        help="run the grid's failed cells again (a failed cell is otherwise kept as finished); "
                             "every other finished cell is reused")
    parser.add_argument("--publish-only", action="store_true",
                        help="run no cell: write the leaderboard from the cells already in --out, the others shown "
                             "as not run and named on the page (a long run's partial results; the models are "
                             "loaded, or trained if absent, as for a run)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="hide progress bars")
    speed = parser.add_argument_group(
        "speed", "how the attacked models run while crafting; measured effects in benchmarks/README.md")
    speed.add_argument("--bf16", action="store_true",
                       help="craft under bf16 autocast: half the memory; changes the images (robust accuracy moved "
                            "by at most 2 points in our measurement), so bf16 cells are separate cells")
    speed.add_argument("--channels-last", action="store_true",
                       help="surrogates in the channels_last memory format (0.98-1.29x on an H200)")
    speed.add_argument("--stack", action="store_true",
                       help="evaluate same-architecture surrogates together with torch.func.vmap (slower on an "
                            "H200 for CIFAR ResNets: 0.56-0.83x)")
    speed.add_argument("--compile", action="store_true",
                       help="torch.compile the surrogates (slower for CIFAR ResNets: 0.71-0.92x on a 2-core CPU, "
                            "0.47x for Ens on an H200)")
    speed.add_argument("--threads", metavar="N", type=_at_least(int, 1), default=None,
                       help="torch CPU threads (default: the CPUs this process may use, cgroup quota included)")
    cluster = parser.add_argument_group(
        "running on a Ray cluster", "crafting jobs and evaluation cells as Ray tasks; the results store and the "
        "leaderboard are those of a local run (needs the extra: pip install -e \".[ray]\")")
    cluster.add_argument("--executor", choices=EXECUTORS, default="local",
                         help="local: every cell in this process (default); ray: cells as tasks on a Ray cluster")
    cluster.add_argument("--ray-address", metavar="ADDR", default=None,
                         help="the cluster to join: auto (the one `ray start --head` started on this machine), "
                              "HOST:6379 or ray://HOST:10001 (default: $RAY_ADDRESS, else a cluster started here "
                              "for this run); every node must see --out, --data, --models and --cache")
    cluster.add_argument("--ray-max-retries", metavar="N", type=_at_least(int, 0), default=None,
                         help=f"times Ray runs a task again after its worker died (default: {RayOptions.max_retries});"
                              " a cell whose task still fails is recorded as failed")
    cluster.add_argument("--ray-gpus-per-task", metavar="G", type=_at_least(float, 0), default=None,
                         help="GPUs Ray reserves for each task, fractions allowed (default: 1 when the device is "
                              "cuda, else 0)")
    cluster.add_argument("--ray-task-memory", metavar="GIB", type=_at_least(float, 0), default=None,
                         help=f"memory in GiB Ray reserves for each task when scheduling it (default: "
                              f"{RayOptions.task_memory_gb:g}; 0: none)")
    return parser


def main(argv: list[str] | None = None) -> int:
    sys.stdout.reconfigure(line_buffering=True)
    # a crash in native code (a segfault in a torch kernel) kills the process before Python can report it: this
    # writes the Python stack of every thread to stderr first, so a long run's log says where it died
    try:
        faulthandler.enable()
    except (AttributeError, ValueError):  # stderr is not a file (captured, as under pytest): nothing to write to
        pass
    parser = build_parser()
    args = parser.parse_args(argv)
    from . import environment  # after parsing, not at the top: --help and usage errors answer without loading torch
    from .text import plural
    from .runner import DEFAULT_CACHE, Acceleration, RunConfig, run_suite

    ray_flags = {"address": args.ray_address, "max_retries": args.ray_max_retries,
                 "gpus_per_task": args.ray_gpus_per_task, "task_memory_gb": args.ray_task_memory}
    given = {key: value for key, value in ray_flags.items() if value is not None}
    if given and args.executor != "ray":
        parser.error("--ray-* options need --executor ray")
    if args.publish_only and (args.fresh or args.retry_failed):
        parser.error("--publish-only runs no cell: it cannot be combined with --fresh or --retry-failed")
    started, out_dir = time.perf_counter(), None
    try:
        environment.configure_threads(args.threads)
        environment.tune_cpu_allocator()
        suite = apply_overrides(load_suite(args.suite), attacks=args.attacks, defenses=args.defenses,
                                eps=args.eps, n_examples=args.n_examples, device=args.device, seed=args.seed)
        skipped = [a.name for a in suite.attacks if not a.eps_values(suite.eps)]
        if skipped:
            print(f"note: skipped {', '.join(skipped)}: the suite runs them at none of this run's eps", file=sys.stderr)
        out_dir = Path(args.out or Path("runs") / suite.name)
        changed = any(value is not None for value in (args.attacks, args.defenses, args.eps, args.n_examples,
                                                       args.seed))
        config = RunConfig(
            suite=suite,
            out_dir=out_dir,
            leaderboard_dir=Path(args.leaderboard_dir or (out_dir / "leaderboard" if changed
                                                          else Path("leaderboards") / suite.name)),
            data_path=args.data,
            models_dir=_optional_path(args.models or os.environ.get("RBE_MODELS")),
            cache_dir=Path(args.cache or os.environ.get("RBE_CACHE") or DEFAULT_CACHE),
            fresh=args.fresh, retry_failed=args.retry_failed, publish_only=args.publish_only, progress=args.progress,
            executor=args.executor, ray=RayOptions(**given),
            acceleration=Acceleration(bf16=args.bf16, channels_last=args.channels_last, stack=args.stack,
                                      compile=args.compile),
            command=shlex.join(["python", "run_all.py", *(sys.argv[1:] if argv is None else argv)]))
        result = run_suite(config)
    except user_errors() as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        kept = f"the finished cells are saved in {out_dir}; " if out_dir and out_dir.is_dir() else \
            "no cell had finished; "
        print(f"\ninterrupted: {kept}run the same command to resume", file=sys.stderr)
        return 130
    retried = f" ({result.retried} of them failed before and were retried)" if result.retried else ""
    minutes, seconds = divmod(round(time.perf_counter() - started), 60)
    print(f"{plural(result.evaluated, 'cell')} evaluated{retried}, {result.skipped} already finished, "
          f"{plural(len(result.crafted), 'adversarial set')} crafted, {result.failed} of the grid's "
          f"{len(result.cells) + sum(result.not_run.values())} failed; {minutes} min {seconds} s; results in "
          f"{config.out_dir}")
    if result.not_run:
        print(f"not run yet: {', '.join(f'{attack} {n}' for attack, n in result.not_run.items())} cells (run the same "
              "command without --publish-only to finish them)")
    if result.failed:
        print("failed cells are recorded with their errors on the leaderboard; once the cause is fixed, "
              "run the same command with --retry-failed to compute them again", file=sys.stderr)
    if result.leaderboard_files:
        print(f"leaderboard: {config.leaderboard_dir}/README.md (and {len(result.leaderboard_files) - 1} more files)")
    return 1 if result.failed else 0


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _at_least(kind, minimum):
    def parse(text: str):
        value = kind(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be {minimum} or more, not {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its message for a value it cannot parse
    return parse


def _optional_path(value: str | None) -> Path | None:
    return Path(value).expanduser() if value else None


def user_errors() -> tuple[type[Exception], ...]:
    from attacks import UnknownAttackError
    from defenses import UnknownDefenseError

    from .atomic import UnwritableFolderError
    from .data import DataError
    from .environment import DeviceError
    from .executors.ray_cluster import ExecutorUnavailableError
    from .metrics import ModelOutputError
    from .suite import SuiteError
    from .zoo import CheckpointError, UnknownModelError

    return (DataError, SuiteError, DeviceError, UnknownAttackError, UnknownDefenseError, UnknownModelError,
            CheckpointError, ModelOutputError, UnwritableFolderError, ExecutorUnavailableError)
