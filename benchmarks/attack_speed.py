"""Attack speed: images per second, efficiency against the model passes alone, peak memory.

For every attack and every ensemble size K, on the same surrogates and the same batch of
CIFAR-10 test images, this script

1. runs the attack once, recording every forward and backward pass of its models
   (:class:`robustbench_ens.profiling.PassRecorder`; the hooks' own cost is counted against
   the attack), and its peak memory;
2. replays exactly those passes alone on random inputs (:func:`robustbench_ens.profiling.replay`);
3. reports images/s = batch / attack time and efficiency = replay time / attack time (medians
   over ``--repeats`` runs);
4. counts the FLOPs of those passes (:func:`robustbench_ens.profiling.recorded_flops`) and reports
   the attack's achieved FLOP/s as a share of the machine's attainable peak, a large matrix
   product timed once per run (:func:`robustbench_ens.profiling.matmul_peak`; fp32, and bf16 on
   a GPU). The JSON also lists each surrogate's forward and backward FLOPs per image.

Variants (``--variants``): ``fp32`` (plain), ``bf16`` (the attack inside torch.autocast),
``channels_last``, ``stack`` (same-architecture surrogates vmapped together), ``compile``
(torch.compile) and ``cudagraphs`` (torch.compile's reduce-overhead mode: CUDA graphs on a
GPU); see :mod:`attacks.acceleration`. A variant's efficiency is against the passes of its own
(accelerated) models; its speed-up is against ``fp32``.

Example (the published CPU figures)::

    python benchmarks/attack_speed.py --models ../shared/models --data ../shared/data/cifar10_slice.npz \\
        --device cpu --batch 128 --steps 2 --out benchmarks/results/attack_speed_cpu.json
"""
from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from arguments import benchmark_parser  # noqa: E402  (this folder)
from attacks import create_attack  # noqa: E402
from attacks.acceleration import StackedMember, accelerate  # noqa: E402
from defenses import Ensemble  # noqa: E402
from robustbench_ens import environment  # noqa: E402
from robustbench_ens.data import load_cifar10  # noqa: E402
from robustbench_ens.profiling import (PassRecorder, PeakMemory, matmul_peak, pass_flops,  # noqa: E402
                                      recorded_flops, replay, synchronize)
from robustbench_ens.zoo import load_checkpoint  # noqa: E402

# Surrogates in the order they join the ensemble: K=2 the first two, K=4 the four standard
# CIFAR ResNets (option A), K=8 those plus four ResNet-20s (option B) of the DVERGE paper.
SURROGATES = ("resnet20_a_standard", "resnet32_a_standard", "resnet44_a_standard", "resnet56_a_standard",
              "resnet20_b_baseline_m0", "resnet20_b_baseline_m1", "resnet20_b_baseline_m2",
              "resnet20_b_dverge_s0_m0")

# name -> (registry name, parameters, steps parameter or None, attacks one fused model?)
ATTACKS = {
    "Ens": ("ens", {}, "steps", False),
    "CWA": ("cwa", {}, "steps", False),
    "AdaEA": ("adaea", {}, "steps", False),
    "SVRE": ("svre", {}, "steps", False),
    "LGV": ("lgv", {}, "steps", False),
    "PGD": ("pgd", {}, "steps", False),
    "AutoAttack-APGD-CE": ("autoattack", {"version": "custom", "attacks": ["apgd-ce"]}, "n_iter", True),
    "Square-1k": ("square", {"n_queries": 1000}, "n_queries", True),  # the suites' budget (paper: 5000)
}
VARIANTS = ("fp32", "bf16", "channels_last", "stack", "compile", "cudagraphs")


def build_parser() -> argparse.ArgumentParser:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--batch", type=int, default=None, help="images per attack call (default 128 CPU, 512 GPU)")
    parser.add_argument("--surrogates", type=int, nargs="+", default=[2, 4, 8], help="ensemble sizes K")
    parser.add_argument("--attacks", nargs="+", default=list(ATTACKS), choices=list(ATTACKS), metavar="ATTACK",
                        help=f"attacks to time (default all: {', '.join(ATTACKS)})")
    parser.add_argument("--steps", type=int, default=None,
                        help="override every attack's iterations (Square: queries) to save time; default: each "
                             "attack's paper default. Per-step cost, hence efficiency, does not depend on it")
    parser.add_argument("--variants", nargs="+", default=["fp32"], choices=VARIANTS, help="default: fp32")
    parser.add_argument("--variant-surrogates", type=int, default=8,
                        help="K at which the non-fp32 variants are timed (default 8: four share an architecture)")
    parser.add_argument("--variant-attacks", nargs="+", default=list(ATTACKS)[:6], choices=list(ATTACKS),
                        metavar="ATTACK", help="attacks timed in the non-fp32 variants (default: the gradient "
                                               "attacks on the surrogates)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed runs of each attack and of its passes alone; the medians are reported "
                             "(default 3 on a GPU, 1 on a CPU)")
    parser.add_argument("--eps", type=float, default=8 / 255, help="Linf budget (default 8/255)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: the machine's)")
    parser.add_argument("--default-allocator", action="store_true",
                        help="leave the C library's malloc as it comes (default: tuned as run_all.py does, "
                             "see robustbench_ens.environment.tune_cpu_allocator)")
    parser.add_argument("--no-onednn", action="store_true",
                        help="turn oneDNN (mkldnn) off on the CPU, to measure what it brings (default: on, as torch "
                             "has it)")
    parser.add_argument("--out", type=Path, default=None, help="JSON output (default benchmarks/results/"
                                                                "attack_speed_<device>.json)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    device = environment.select_device(args.device)
    threads = environment.configure_threads(args.threads)
    torch.backends.mkldnn.enabled = not args.no_onednn
    batch = args.batch or (512 if device.type == "cuda" else 128)
    args.repeats = args.repeats or (3 if device.type == "cuda" else 1)
    if max(args.surrogates) > len(SURROGATES):
        raise SystemExit(f"at most {len(SURROGATES)} surrogates are defined")
    images, labels = load_cifar10(args.data).test(batch)
    images, labels = images.to(device), labels.to(device)
    out = args.out or REPO / "benchmarks" / "results" / f"attack_speed_{device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    allocator = "default, as it comes" if args.default_allocator else environment.tune_cpu_allocator()
    peaks = {"fp32": matmul_peak(device)}
    if device.type == "cuda":
        peaks["bf16"] = matmul_peak(device, torch.bfloat16)
    machine = {**environment.hardware(device), "threads": threads, "allocator": allocator,
               "onednn": torch.backends.mkldnn.enabled,
               "matmul_peak_flops": peaks}
    per_image = {name: dict(zip(("forward", "backward"), (f / batch for f in pass_flops(
        model, tuple(images.shape), device)))) for name, model in zip(SURROGATES, load_surrogates(
            args.models, max(args.surrogates), device))}
    rows = []
    for k in args.surrogates:
        for variant in ["fp32"] + [v for v in args.variants if v != "fp32" and k == args.variant_surrogates]:
            models = accelerated(load_surrogates(args.models, k, device), variant)
            warm_up(models, images, labels)
            for name in (a for a in args.attacks if variant == "fp32" or a in args.variant_attacks):
                row = time_attack(name, models, variant, images, labels, args, device)
                row["share_of_peak"] = row["flops_per_s"] / peaks["bf16" if variant == "bf16" and "bf16" in peaks
                                                                 else "fp32"]
                rows.append(row)
                print(format_row(row), flush=True)
                add_speedups(rows)
                out.write_text(json.dumps({"machine": machine, "batch": batch, "eps": args.eps,
                                           "model_flops_per_image": per_image, "rows": rows},
                                          indent=1))  # after every row: a cut-short run keeps what it measured
    print(markdown_table(rows))
    print(f"wrote {out}")
    return 0


def load_surrogates(folder: Path, k: int, device) -> list[torch.nn.Module]:
    return [load_checkpoint(folder / f"{name}.safetensors", device=device)[0] for name in SURROGATES[:k]]


def accelerated(models, variant: str):
    if variant in ("channels_last", "stack", "compile"):
        return accelerate(models, **{variant: True})
    if variant == "cudagraphs":  # torch.compile's reduce-overhead mode: each pass replayed as a CUDA graph
        return accelerate(models, compile="reduce-overhead")
    return models


def warm_up(models, images, labels) -> None:
    """One forward and backward per model (kernel selection, allocator, compilation)."""
    create_attack("ens", models, steps=1, eps=1 / 255)(images, labels)


def time_attack(name, models, variant, images, labels, args, device) -> dict:
    registry_name, params, steps_key, fused = ATTACKS[name]
    params = dict(params)
    if args.steps is not None:
        params[steps_key] = args.steps
    targets = [Ensemble(models, aggregation="mean_logits")] if fused else models
    attack = create_attack(registry_name, targets, eps=args.eps, **params)
    watched = watched_modules(targets)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if variant == "bf16" else contextlib.nullcontext()
    runs, alone = [], []
    for _ in range(args.repeats):
        with PassRecorder(watched) as recorder, PeakMemory(device) as memory, autocast:
            synchronize(device)
            started = time.perf_counter()
            attack(images, labels)
            synchronize(device)
            runs.append(time.perf_counter() - started)
        with autocast:
            alone.append(replay(watched, recorder.passes, device))
    seconds, alone = statistics.median(runs), statistics.median(alone)
    flops = recorded_flops(watched, recorder.passes, device)
    return {"attack": name, "variant": variant, "surrogates": len(models), "batch": len(images),
            "repeats": args.repeats,
            "steps": params.get(steps_key, getattr(attack, steps_key, None)), "seconds": seconds,
            "images_per_s": len(images) / seconds, "passes_alone_s": alone, "efficiency": alone / seconds,
            "flops": flops, "flops_per_s": flops / seconds,
            **recorder.counts(), "peak_mib": None if memory.peak_bytes is None else memory.peak_bytes / 2**20}


def watched_modules(models) -> list[torch.nn.Module]:
    """The modules whose calls are the model passes: the models, and the stacks behind stacked members."""
    watched: dict[int, torch.nn.Module] = {}
    for model in models:
        watched[id(model)] = model
        if isinstance(model, StackedMember):
            watched[id(model.stack)] = model.stack
    return list(watched.values())


def add_speedups(rows: list[dict]) -> None:
    plain = {(r["attack"], r["surrogates"]): r["seconds"] for r in rows if r["variant"] == "fp32"}
    for row in rows:
        baseline = plain.get((row["attack"], row["surrogates"]))
        row["speedup_vs_fp32"] = None if baseline is None else baseline / row["seconds"]


def format_row(row: dict) -> str:
    peak = "-" if row["peak_mib"] is None else f"{row['peak_mib']:.0f} MiB"
    return (f"{row['attack']:>20} {row['variant']:>13} K={row['surrogates']} steps={row['steps']}: "
            f"{row['images_per_s']:8.1f} img/s  efficiency {row['efficiency']:.3f}  "
            f"{row['flops_per_s'] / 1e9:.1f} GFLOP/s ({100 * row.get('share_of_peak', 0):.0f} % of peak)  peak {peak}  "
            f"({row['forward']} fwd, {row['backward']} bwd)")


def markdown_table(rows: list[dict]) -> str:
    lines = ["| attack | variant | K | steps | images/s | efficiency | GFLOP/s | share of peak | speed-up vs fp32 "
             "| peak MiB | fwd | bwd |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        peak = "–" if r["peak_mib"] is None else f"{r['peak_mib']:.0f}"
        speedup = "–" if r["speedup_vs_fp32"] is None else f"{r['speedup_vs_fp32']:.2f}"
        lines.append(f"| {r['attack']} | {r['variant']} | {r['surrogates']} | {r['steps']} | "
                     f"{r['images_per_s']:.1f} | {r['efficiency']:.2f} | {r['flops_per_s'] / 1e9:.1f} | "
                     f"{100 * r['share_of_peak']:.1f} % | {speedup} | {peak} | "
                     f"{r['forward']} | {r['backward']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
