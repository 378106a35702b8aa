"""How much do the transfer attacks' results move across seeds? (a script, not a test)

For each seed s, draws a random subset of ``--n-examples`` points of the test split (seeded
by s), runs every chosen attack of the suite on it with ``seed=s`` (SVRE's model draws and
LGV's member order follow it; Ens, CWA and AdaEA are deterministic given the images), and
evaluates every defense of the suite. The spread across seeds thus covers both the choice of
test points and the attacks' own randomness.

Writes ``spread.csv`` (one row per seed, attack, eps, defense) and ``README.md`` (per attack:
mean success rate over the defenses, mean and standard deviation across seeds, and its
paired difference to the reference attack) into ``--out``.

    python scripts/seed_spread.py --suite cifar10 --data ../shared/data/cifar10_slice.npz \\
        --models ../shared/models --seeds 0 1 2 --n-examples 200 --eps 8/255 \\
        --out leaderboards/cifar10/seed_spread
"""
from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
import time
import tomllib
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from attacks import create_attack
from robustbench_ens import atomic, environment
from robustbench_ens.data import load_cifar10
from robustbench_ens.leaderboard.format import fmt_eps
from robustbench_ens.metrics import accuracy_metrics, predict
from robustbench_ens.runner import DEFAULT_CACHE, RunConfig, build_defenses, craft, expand_models, resolve_models
from robustbench_ens.suite import AttackEntry, apply_overrides, load_suite, parse_eps


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", default="cifar10", help="shipped suite name or .toml path (default cifar10)")
    parser.add_argument("--data", help="CIFAR-10 .npz or folder (default: $RBE_DATA, else torchvision's download)")
    parser.add_argument("--models", type=Path, help="folder of pretrained checkpoints (default: $RBE_MODELS)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="cache of models trained here")
    parser.add_argument("--attacks", nargs="+", help="attack names of the suite (default: all)")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=ATTACK:KEY=VALUE[,KEY=VALUE]",
                        help="also run a variant of one of the suite's attacks with changed parameters, e.g. "
                             "CWA-beta50=CWA:inner_step_size=50 (values are TOML; repeatable)")
    parser.add_argument("--reference", default="Ens", help="attack the others are compared with (default Ens)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="seeds (default 0 1 2)")
    parser.add_argument("--n-examples", type=int, default=200, help="test points per seed (default 200)")
    parser.add_argument("--eps", nargs="+", default=["8/255"], help="budgets, e.g. 8/255 (default 8/255)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:i]")
    parser.add_argument("--out", type=Path, required=True, help="folder for spread.csv and README.md")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    suite = apply_overrides(load_suite(args.suite), attacks=args.attacks, device=args.device)
    suite = dataclasses.replace(suite, attacks=suite.attacks + tuple(variant(suite, text) for text in args.variant))
    eps_values = [parse_eps(e) for e in args.eps]
    device = environment.select_device(suite.device)
    data = load_cifar10(args.data)
    all_images, all_labels = data.test(len(data.y_test))
    if not 1 <= args.n_examples <= len(all_labels):
        raise SystemExit(f"--n-examples must lie in [1, {len(all_labels)}]")
    config = RunConfig(suite=suite, out_dir=args.out, leaderboard_dir=None, data_path=args.data,
                       models_dir=args.models, cache_dir=args.cache)
    models, _ = resolve_models(suite, data, config, device)
    defenses = build_defenses(suite, models, device)

    rows = []
    for seed in args.seeds:
        order = torch.randperm(len(all_labels), generator=torch.Generator().manual_seed(seed))[:args.n_examples]
        images, labels = all_images[order], all_labels[order]
        clean = {name: predict(d, images, suite.batch_size, device) for name, d in defenses.items()}
        for entry in suite.attacks:
            for eps in eps_values:
                attack = create_attack(entry.attack, expand_models(models, entry.surrogates), eps=eps,
                                       norm=suite.norm, seed=seed, **entry.params)
                started = time.perf_counter()
                x_adv = craft(attack, images, labels, suite.batch_size, device)
                craft_s = time.perf_counter() - started
                for name, defense in tqdm(defenses.items(), desc=f"seed {seed} {entry.name} eps={fmt_eps(eps)}",
                                          leave=False):
                    metrics = accuracy_metrics(labels, clean[name], predict(defense, x_adv, suite.batch_size, device))
                    rows.append({"seed": seed, "attack": entry.name, "eps": eps, "defense": name,
                                 "craft_time_s": craft_s, **metrics})
                tqdm.write(f"seed {seed} {entry.name} eps={fmt_eps(eps)}: crafted in {craft_s:.1f} s")
    cells = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    atomic.write_text(args.out / "spread.csv", cells.to_csv(index=False))
    command = "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])])
    atomic.write_text(args.out / "README.md", summary(cells, args, suite, device, command))
    print((args.out / "README.md").read_text())
    return 0


def variant(suite, text: str) -> AttackEntry:
    """``NAME=ATTACK:KEY=VALUE,...`` -> a copy of the suite's attack ``ATTACK`` named NAME with those params."""
    try:
        name, rest = text.split("=", 1)
        base_name, assignments = rest.split(":", 1)
        changes = tomllib.loads("\n".join(assignments.split(",")))
    except (ValueError, tomllib.TOMLDecodeError) as error:
        raise SystemExit(f"--variant {text!r}: write it as NAME=ATTACK:KEY=VALUE[,KEY=VALUE] ({error})") from None
    base = next((a for a in suite.attacks if a.name == base_name), None)
    if base is None:
        raise SystemExit(f"--variant {text!r}: the suite has no attack {base_name!r}")
    if any(a.name == name for a in suite.attacks):
        raise SystemExit(f"--variant {text!r}: the suite already has an attack named {name!r}")
    return dataclasses.replace(base, name=name, params={**base.params, **changes})


def reference_of(attack: str, reference: str, attacks) -> str | None:
    """The attack ``attack`` is compared with: ``reference`` crafted on the same pool (``Ens@homo`` for
    ``CWA@homo``), else ``reference`` itself; None when the spread has neither."""
    pool = attack.partition("@")[2]
    for name in (f"{reference}@{pool}" if pool else None, reference):
        if name in attacks:
            return name
    return None


def summary(cells: pd.DataFrame, args, suite, device, command: str) -> str:
    """Markdown: per attack and eps, the mean success rate over defenses, across seeds, and vs the reference."""
    per_seed = cells.groupby(["attack", "eps", "seed"])["success_rate"].mean().unstack("seed")  # attack x seeds
    lines = [f"# Seed spread of the transfer attacks ({suite.name})", "",
             f"Seeds {', '.join(map(str, args.seeds))}; for each seed, {args.n_examples} test points drawn at "
             f"random (seeded) from the {suite.name} data and the attacks run with that seed. Success rate: "
             "share of the points a defense classified correctly that the attack turns wrong, averaged over "
             f"the {cells['defense'].nunique()} defenses ({', '.join(cells['defense'].unique())}).", "",
             "Hardware: " + ", ".join(f"{k} {v}" for k, v in environment.hardware(device).items()) + ".", "",
             f"Command: `{command}`", ""]
    for eps, table in per_seed.groupby(level="eps"):
        table = table.droplevel("eps")
        lines += [f"## eps = {fmt_eps(eps)}", "", "| attack | " + " | ".join(f"seed {s}" for s in table.columns) +
                  f" | mean ± sd | vs {args.reference} (on the same pool): mean ± sd (min, max) |",
                  "|---|" + "---:|" * (len(table.columns) + 2)]
        for attack, row in table.iterrows():
            reference = reference_of(attack, args.reference, table.index)
            diff = row - table.loc[reference] if reference is not None else None
            versus = "—" if diff is None or attack == reference else (
                f"{100 * diff.mean():+.1f} ± {100 * diff.std(ddof=1):.1f} "
                f"({100 * diff.min():+.1f}, {100 * diff.max():+.1f})")
            lines.append(f"| {attack} | " + " | ".join(f"{100 * v:.1f}" for v in row) +
                         f" | {100 * row.mean():.1f} ± {100 * row.std(ddof=1):.1f} | {versus} |")
        lines.append("")
    per_defense = cells.pivot_table(index=["attack", "eps"], columns="defense", values="success_rate",
                                    aggfunc="mean", sort=False)
    lines += ["Per defense (mean success rate across seeds, %):", "",
              "| attack | eps | " + " | ".join(per_defense.columns) + " |",
              "|---|---|" + "---:|" * len(per_defense.columns)]
    lines += [f"| {attack} | {fmt_eps(eps)} | " + " | ".join(f"{100 * v:.1f}" for v in row) + " |"
              for (attack, eps), row in per_defense.iterrows()]
    return "\n".join(lines) + "\n"



if __name__ == "__main__":
    sys.exit(main())
