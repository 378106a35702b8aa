"""The C library's malloc as it comes against the tuned one: the same attack calls, processes alternating.

Each round runs, in fresh processes and in the order default, tuned, tuned, default, one call of each
attack asked for on the K = 8 surrogates of ``attack_speed.py`` (models loaded, one Ens step of
warm-up first); ``tuned`` calls :func:`robustbench_ens.environment.tune_cpu_allocator` first, as
``run_all.py`` does. Alternating processes spreads the machine's drift over both settings.

Example (the published figures)::

    python benchmarks/allocator_ab.py --models ../shared/models --data ../shared/data/cifar10_slice.npz \\
        --attacks ens adaea --rounds 2 --out benchmarks/results/allocator_ab_cpu.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from arguments import benchmark_parser  # noqa: E402  (this folder)

ORDER = ("default", "tuned", "tuned", "default")


def main(argv: list[str] | None = None) -> int:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--attacks", nargs="+", default=["ens", "adaea"], help="registry names (default ens adaea)")
    parser.add_argument("--steps", type=int, default=2, help="iterations per attack call (default 2)")
    parser.add_argument("--batch", type=int, default=128, help="images per call (default 128)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of default, tuned, tuned, default (default 2)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "allocator_ab_cpu.json",
                        help="JSON results (default: benchmarks/results/allocator_ab_cpu.json, replaced)")
    parser.add_argument("--child", choices=("default", "tuned"), help=argparse.SUPPRESS)  # one measuring process
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(one_process(args)))
        return 0
    rows = []
    for _ in range(args.rounds):
        for mode in ORDER:
            command = [sys.executable, __file__, "--child", mode, "--models", str(args.models), "--data", args.data,
                       "--device", "cpu", "--steps", str(args.steps), "--batch", str(args.batch), "--attacks",
                       *args.attacks]
            rows.append(json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout))
            print(rows[-1], flush=True)
    medians = {mode: {name: statistics.median(r[name] for r in rows if r["mode"] == mode) for name in args.attacks}
               for mode in ("default", "tuned")}
    for name in args.attacks:
        print(f"{name}: default {medians['default'][name]:.1f} s, tuned {medians['tuned'][name]:.1f} s "
              f"(medians of {args.rounds * 2}): {medians['default'][name] / medians['tuned'][name]:.2f}x")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"steps": args.steps, "batch": args.batch, "rows": rows, "medians": medians},
                                   indent=1))
    return 0


def one_process(args) -> dict:
    """One fresh process's seconds per attack call (the allocator set first, before torch allocates anything)."""
    from robustbench_ens import environment
    allocator = environment.tune_cpu_allocator() if args.child == "tuned" else "as it comes"
    environment.configure_threads()
    from attack_speed import load_surrogates
    from attacks import create_attack
    from robustbench_ens.data import load_cifar10

    models = load_surrogates(args.models, 8, environment.select_device("cpu"))
    images, labels = load_cifar10(args.data).test(args.batch)
    create_attack("ens", models, steps=1)(images, labels)  # warm-up
    row = {"mode": args.child, "allocator": allocator, "machine": environment.hardware(images.device)}
    for name in args.attacks:
        attack = create_attack(name, models, steps=args.steps)
        started = time.perf_counter()
        attack(images, labels)
        row[name] = time.perf_counter() - started
    return row


if __name__ == "__main__":
    sys.exit(main())
