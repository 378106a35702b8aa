"""Benchmark your own defense in one call, as RobustBench's ``benchmark()`` does for single models.

``benchmark(model, suite="cifar10")`` runs a suite's attacks on ``model``: its transfer attacks, whose adversarial
sets come from the run folder (``runs/<suite>``, where ``run_all.py --suite <suite>`` left them; crafted once there if
absent, then reused), and its white-box and black-box attacks on the model itself; with ``members`` (the models
``model`` aggregates), its adaptive attacks too, on their mean logits. The same checks as a run apply (the model's
output shape, the data, the attacks' parameters). It returns the model's clean accuracy and per-example worst case per
threat model, and the rank it would take on the suite's published leaderboard (``leaderboards/<suite>/defenses.csv``)
where that leaderboard was measured on the same data and points. Its own leaderboard is written to
``<out>/benchmark-<name>/``. From the command line, for a zoo checkpoint::

    python -m robustbench_ens.benchmarking my_model.safetensors --suite cifar10 --data ../shared/data/cifar10.npz \\
        --models ../shared/models
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
from torch import nn

from .leaderboard.format import fmt_eps
from .leaderboard.worst_case import THREAT_MODELS
from .runner import RunConfig, run_suite
from .suite import SUPPLIED, DefenseEntry, ModelEntry, Suite, apply_overrides, load_suite

THREATS = ("overall", *(t for t in THREAT_MODELS if t != "overall"))


@dataclass
class BenchmarkResult:
    """What :func:`benchmark` measured on the model; ``None`` where a threat model had no attack."""

    name: str
    suite: str
    n_examples: int
    headline_eps: float
    clean_acc: float
    worst_case: dict[str, dict[float, float | None]]  # threat model -> eps -> per-example worst-case robust accuracy
    rank: dict[str, tuple[int, int] | None]  # threat model -> (rank, defenses ranked) on the published leaderboard
    published: Path | None  # the leaderboard compared with, if it was measured on the same data and points
    leaderboard_dir: Path

    def summary(self) -> str:
        eps = fmt_eps(self.headline_eps)
        lines = [f"{self.name} on suite {self.suite} ({self.n_examples} test points): clean accuracy "
                 f"{100 * self.clean_acc:.1f} %; per-example worst case at {eps}:"]
        for threat in THREATS:
            value = self.worst_case.get(threat, {}).get(self.headline_eps)
            rank = self.rank.get(threat)
            where = f", rank {rank[0]} of {rank[1]} on the published leaderboard" if rank else ""
            lines.append(f"  {threat}: {'not evaluated' if value is None else f'{100 * value:.1f} %'}{where}")
        if self.published is None:
            lines.append("  (no published leaderboard of this suite on the same data and points to rank against)")
        lines.append(f"  leaderboard: {self.leaderboard_dir / 'README.md'}")
        return "\n".join(lines)


def benchmark(model: nn.Module, suite: str | Suite = "cifar10", *, members: list[nn.Module] | None = None,
              name: str = "my-defense", data: str | None = None, models: str | Path | None = None,
              out: str | Path | None = None, published: str | Path | None = None, n_examples: int | None = None,
              cache: str | Path | None = None, device: str | None = None, progress: bool = True) -> BenchmarkResult:
    """Runs ``suite``'s attacks on ``model`` (images in [0, 1] -> logits) and ranks it; see the module docstring."""
    base = load_suite(suite) if isinstance(suite, str) else suite
    if n_examples is not None or device is not None:
        base = apply_overrides(base, n_examples=n_examples, device=device)
    if not isinstance(model, nn.Module) or not all(isinstance(m, nn.Module) for m in members or []):
        raise TypeError("model (and every member) must be an nn.Module mapping images in [0, 1] to logits")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name) or name in base.models:
        raise ValueError(f"name {name!r} must be letters, digits, '_', '.' or '-', and no model of the suite")
    out_dir = Path(out) if out is not None else Path("runs") / base.name
    bench = benchmark_suite(base, name, len(members or []))
    supplied = {name: model, **{f"{name}.m{i}": member for i, member in enumerate(members or [])}}
    models = models if models is not None else os.environ.get("RBE_MODELS")
    cache = cache if cache is not None else os.environ.get("RBE_CACHE")
    config = RunConfig(suite=bench, out_dir=out_dir, leaderboard_dir=out_dir / f"benchmark-{name}", data_path=data,
                       models_dir=None if models is None else Path(models), progress=progress, supplied=supplied,
                       command=f"robustbench_ens.benchmark({name!r}, suite={base.name!r})",
                       **({} if cache is None else {"cache_dir": Path(cache)}))
    run_suite(config)
    return _result(bench, name, config.leaderboard_dir,
                   Path(published) if published is not None else Path("leaderboards") / base.name)


def benchmark_suite(suite: Suite, name: str, n_members: int = 0) -> Suite:
    """``suite`` with the supplied model as its only defense: every transfer attack, every white-box and black-box
    attack on it (whatever defenses the suite restricts them to), the adaptive ones only given its members."""
    member_names = tuple(f"{name}.m{i}" for i in range(n_members))
    added = {n: ModelEntry(name=n, arch=SUPPLIED, source="supplied by the caller") for n in (name, *member_names)}
    attacks = tuple(replace(a, defenses=None) for a in suite.attacks if a.on != "adaptive" or n_members)
    defense = DefenseEntry(name=name, kind="supplied", members=(name, *member_names), params={})
    return replace(suite, models={**suite.models, **added}, attacks=attacks, defenses=(defense,))


def _result(suite: Suite, name: str, leaderboard: Path, published: Path) -> BenchmarkResult:
    own = pd.read_csv(leaderboard / "defenses.csv").set_index("defense").loc[name]
    worst = {threat: {eps: _number(own.get(f"{_prefix(threat)}worst_robust_acc@{fmt_eps(eps)}")) for eps in suite.eps}
             for threat in THREATS}
    reference = published if _same_points(leaderboard, published) else None
    rank = {threat: None for threat in THREATS}
    if reference is not None:
        others = pd.read_csv(reference / "defenses.csv")
        for threat in THREATS:
            column, value = f"{_prefix(threat)}worst_robust_acc@{fmt_eps(suite.headline_eps)}", \
                worst[threat][suite.headline_eps]
            if value is not None and column in others:
                scores = [v for v in others[column] if not pd.isna(v)]
                rank[threat] = (1 + sum(v > value for v in scores), len(scores) + 1)
    return BenchmarkResult(name, suite.name, suite.n_examples, suite.headline_eps, float(own["clean_acc"]), worst,
                           rank, reference, leaderboard)


def _prefix(threat: str) -> str:
    return "" if threat == "overall" else f"{threat}:"


def _number(value) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def _same_points(leaderboard: Path, published: Path) -> bool:
    """Whether the published leaderboard was measured on the same data file, test points and threat model."""
    try:
        mine, theirs = (json.loads((folder / "leaderboard.json").read_text())["setting"]
                        for folder in (leaderboard, published))
    except (OSError, KeyError, ValueError):
        return False
    return all(mine.get(key) == theirs.get(key) for key in ("data", "threat", "seeds"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m robustbench_ens.benchmarking",
                                     description="Benchmark a model (a zoo .safetensors checkpoint) on a suite and "
                                                 "rank it on the published leaderboard.")
    parser.add_argument("checkpoint", type=Path, help="the model: a .safetensors checkpoint of the zoo's format")
    parser.add_argument("--members", nargs="*", type=Path, default=[],
                        help="checkpoints of the models it aggregates (turns on the adaptive attacks)")
    parser.add_argument("--suite", default="cifar10", help="a shipped suite or a suite .toml (default: cifar10)")
    parser.add_argument("--name", help="its name on the page (default: the checkpoint's file name)")
    parser.add_argument("--data", help="CIFAR-10 .npz or folder (default: $RBE_DATA)")
    parser.add_argument("--models", help="the suite's pretrained checkpoints (default: $RBE_MODELS)")
    parser.add_argument("--out", help="run folder whose transfer sets are reused (default: runs/<suite>)")
    parser.add_argument("--n-examples", type=int, help="the first N test points (default: the suite's)")
    parser.add_argument("--cache", help="where models trained here are cached (default: $RBE_CACHE or "
                                        "~/.cache/robustbench_ens/models)")
    parser.add_argument("--device", help="cpu, cuda or cuda:i (default: the suite's, auto: a GPU where there is one)")
    args = parser.parse_args(argv)
    if args.checkpoint.suffix != ".safetensors" or not all(path.suffix == ".safetensors" for path in args.members):
        parser.error("the model and its members must be .safetensors checkpoints of the zoo's format")
    from .cli import user_errors
    from .zoo import load_checkpoint

    try:
        model = load_checkpoint(args.checkpoint)[0]
        members = [load_checkpoint(path)[0] for path in args.members]
        result = benchmark(model, args.suite, members=members or None,
                           name=args.name or re.sub(r"[^A-Za-z0-9_.-]", "-", args.checkpoint.stem), data=args.data,
                           models=args.models, out=args.out, n_examples=args.n_examples, cache=args.cache,
                           device=args.device)
    except (*user_errors(), ValueError, TypeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(result.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
