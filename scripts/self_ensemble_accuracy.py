"""A self-ensemble's clean accuracy, predictor by predictor, and CrossMax against a plain mean. (a script)

The multi-resolution self-ensemble (Fort & Lakshminarayanan 2024) draws a new random input
stack at every call, so its accuracy varies from draw to draw. For ``--draws`` seeded draws
of the stack over the suite's test points, this measures the accuracy of every predictor
(each linear head, by the 0-based index of the backbone block it reads, then the backbone's
own classifier), of CrossMax over them (the defense's output), and of the plain mean of
their log-probabilities; and writes ``accuracy.csv`` (one row per draw and predictor) and
``README.md`` (mean ± sd over draws) into ``--out``.

The suite's self-ensemble and the model it starts from are trained (or taken from the
cache) exactly as a run of the suite would. The published figures:

    python scripts/self_ensemble_accuracy.py --suite cifar10 --data ../shared/data/cifar10_slice.npz \\
        --models ../shared/models --out leaderboards/cifar10/self_ensemble
"""
from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
from pathlib import Path

import pandas as pd
import torch

from defenses.crossmax import crossmax
from robustbench_ens import atomic, environment
from robustbench_ens.data import load_cifar10
from robustbench_ens.runner import DEFAULT_CACHE, RunConfig, build_defenses, resolve_models
from robustbench_ens.suite import load_suite
from robustbench_ens.zoo.derived import describe as describe_derived

CROSSMAX, MEAN = "CrossMax (the defense)", "mean of the log-probabilities"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--suite", default="cifar10", help="shipped suite name or .toml path (default cifar10)")
    parser.add_argument("--defense", help="the suite's self-ensemble defense (default: its first one)")
    parser.add_argument("--data", help="CIFAR-10 .npz or folder (default: $RBE_DATA, else torchvision's download)")
    parser.add_argument("--models", type=Path, help="folder of pretrained checkpoints (default: $RBE_MODELS)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="cache of models trained here")
    parser.add_argument("--draws", type=int, default=3, help="draws of the random input stack (default 3)")
    parser.add_argument("--n-examples", type=int, help="first N test points (default: the suite's)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:i]")
    parser.add_argument("--out", type=Path, required=True, help="folder for accuracy.csv and README.md")
    args = parser.parse_args(argv)
    if args.draws < 2:
        parser.error("--draws must be at least 2 (the spread over draws is the point)")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    suite = load_suite(args.suite)
    entry = self_ensemble_entry(suite, args.defense)
    suite = dataclasses.replace(suite, attacks=(), defenses=(entry,))  # only its models are resolved
    device = environment.select_device(args.device)
    data = load_cifar10(args.data)
    n = args.n_examples or suite.n_examples
    images, labels = data.test(n)
    config = RunConfig(suite=suite, out_dir=args.out, leaderboard_dir=None, data_path=args.data,
                       models_dir=args.models, cache_dir=args.cache)
    models, provenance = resolve_models(suite, data, config, device)
    model = build_defenses(suite, models, device)[entry.name]
    draws = [draw_correct(model, images, labels, suite.batch_size, device, draw) for draw in range(args.draws)]
    table = pd.DataFrame([{"draw": draw, "predictor": name, "accuracy": hits.float().mean().item()}
                          for draw, correct in enumerate(draws) for name, hits in correct.items()])
    floor = every_draw(torch.stack([correct[CROSSMAX] for correct in draws]))
    args.out.mkdir(parents=True, exist_ok=True)
    atomic.write_text(args.out / "accuracy.csv", table.to_csv(index=False))
    command = "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])])
    about = describe_derived(provenance[entry.members[0]])
    atomic.write_text(args.out / "README.md", summary(table, entry.name, about, n, device, command, floor))
    print((args.out / "README.md").read_text())
    return 0


def self_ensemble_entry(suite, name: str | None):
    candidates = [d for d in suite.defenses if d.kind == "self_ensemble"]
    chosen = [d for d in candidates if name is None or d.name == name]
    if not chosen:
        raise SystemExit(f"the suite {suite.name!r} has no self-ensemble defense"
                         + (f" named {name!r} (it has: {', '.join(d.name for d in candidates) or 'none'})"
                            if name else ""))
    return chosen[0]


@torch.no_grad()
def draw_correct(model, images, labels, batch_size: int, device, draw: int) -> dict[str, torch.Tensor]:
    """Which points each predictor, CrossMax and the mean log-probability classify correctly, for one seeded draw
    of the stack."""
    model.eval()
    model.stack.reseed(draw)
    logits = torch.cat([model.predictor_logits(images[i:i + batch_size].to(device)).cpu()
                        for i in range(0, len(images), batch_size)])  # [N, predictors, classes]
    names = [f"head on block {block}" for block in model.head_blocks] + ["the backbone's classifier"]
    correct = {name: logits[:, p].argmax(1) == labels for p, name in enumerate(names)}
    correct[CROSSMAX] = crossmax(logits, model.k).argmax(1) == labels
    correct[MEAN] = logits.log_softmax(2).mean(1).argmax(1) == labels
    return correct


def every_draw(correct: torch.Tensor) -> dict[int, float]:
    """For k = 1, 2, 4, 8, ... and the last: the share of the points classified correctly in each of the first k draws
    (``correct``: [draws, N]). A per-example worst case over k cells, each evaluated on a fresh draw, can fall this far
    with no attack at all."""
    ks = sorted({k for k in (2 ** i for i in range(len(correct).bit_length())) if k <= len(correct)} | {len(correct)})
    return {k: correct[:k].all(0).float().mean().item() for k in ks}


def summary(table: pd.DataFrame, defense: str, about: str, n: int, device, command: str,
            floor: dict[int, float]) -> str:
    stats = table.groupby("predictor", sort=False)["accuracy"].agg(["mean", "std", "min", "max"])
    draws = table["draw"].nunique()
    lines = [f"# Clean accuracy of the self-ensemble {defense}", "",
             f"{about}.", "",
             f"The first {n} test points, {draws} seeded draws of the random input stack (seeds "
             f"{', '.join(map(str, sorted(table['draw'].unique())))}); mean ± sd over the draws.", "",
             "Hardware: " + ", ".join(f"{k} {v}" for k, v in environment.hardware(device).items()) + ".", "",
             f"Command: `{command}`", "",
             "| predictor | accuracy % (mean ± sd) | min | max |", "|---|---:|---:|---:|"]
    lines += [f"| {name} | {100 * row['mean']:.1f} ± {100 * row['std']:.1f} | {100 * row['min']:.1f} | "
              f"{100 * row['max']:.1f} |" for name, row in stats.iterrows()]
    lines += ["", "The defense's own randomness, point by point: the share of the points CrossMax classifies correctly "
              "in every one of its first k draws (no attack). A per-example worst case takes the union over cells, "
              "each evaluated on a fresh draw, so over k such cells it counts these losses too.", "",
              "| draws k | correct in all k (%) |", "|---:|---:|"]
    lines += [f"| {k} | {100 * share:.1f} |" for k, share in floor.items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
