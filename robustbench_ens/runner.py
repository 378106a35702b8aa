"""The runner: suite -> models and defenses -> attack x eps x defense grid -> store -> leaderboard.

Transfer attacks do not depend on the target, so each (attack, eps) adversarial set is
crafted once on its surrogates, saved (atomically) under ``<out>/adv/``, and evaluated on
every defense. The runner prepares the grid and checks everything before any work; an
executor (:mod:`.executors`: ``local`` in this process, or ``ray`` on a cluster) does the
crafting and the evaluations, and hands every finished cell back to the runner, which
alone writes it to the SQLite store at once. A re-run skips recorded cells and reloads
saved adversarial sets, so a run killed at any point resumes without losing or repeating
work.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import sys
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from attacks import create_attack, get_attack
from attacks.transforms import resolve_transforms
from defenses import adaptive_view, get_defense

from . import atomic, environment
from .certify import UnsupportedModelError, certified
from .data import NUM_CLASSES
from .executors import GridWork, RayOptions, create_executor
from .leaderboard import write_leaderboard
from .leaderboard.front import write_front_page
from .leaderboard.format import fmt_eps
from .leaderboard.per_example import FILENAME as PER_EXAMPLE_FILE
from .metrics import accuracy, checked_logits, refuse_probabilities
from .store import ResultStore
from .suite import CLEAN, EXTERNAL_LIBRARIES, AttackEntry, DefenseEntry, Suite, SuiteError, at_eps
from .whitebox import attack_kind, attacked_model, eot_samples, whitebox_params
from .workspace import (ADV_FOLDER, Acceleration, Cell, adv_file, build_defenses, craft,  # noqa: F401
                        expand_models, now, open_workspace, resolve_models)  # (F401: the runner's API)
from .zoo import CheckpointError, create_model
from .zoo.derived import describe as describe_derived

ATTACKED = {"white-box": "white-box: each defense itself",
            "adaptive": "white-box: each defense's mean of logits (adaptive)",
            "black-box": "black-box: queries each defense's outputs"}
DEFAULT_CACHE = Path.home() / ".cache" / "robustbench_ens" / "models"
STORE_FILE = "results.sqlite"


@dataclass
class RunConfig:
    suite: Suite
    out_dir: Path
    leaderboard_dir: Path | None
    data_path: str | None = None
    models_dir: Path | None = None
    cache_dir: Path = DEFAULT_CACHE
    fresh: bool = False
    retry_failed: bool = False  # forget this grid's failed cells first, so that they run again
    publish_only: bool = False  # run no cell: publish what the store holds, the other cells as not run
    progress: bool = True
    command: str = ""
    executor: str = "local"  # who runs the cells: "local" (this process) or "ray" (a Ray cluster)
    ray: RayOptions = field(default_factory=RayOptions)  # used by the ray executor only
    acceleration: Acceleration = field(default_factory=Acceleration)  # how models run while crafting
    supplied: dict = field(default_factory=dict)  # name -> nn.Module: models of arch "supplied" (benchmark())


@dataclass
class RunResult:
    cells: pd.DataFrame | None  # this grid's cells
    crafted: list[tuple[str, float]] = field(default_factory=list)  # (attack, eps) crafted in this run
    evaluated: int = 0
    skipped: int = 0
    failed: int = 0  # this grid's cells recorded as failed, in this run or an earlier one
    retried: int = 0  # failed cells forgotten by --retry-failed (and run again)
    leaderboard_files: list[Path] = field(default_factory=list)
    not_run: dict = field(default_factory=dict)  # attack -> its cells of this grid that have not run (--publish-only)


def run_suite(config: RunConfig) -> RunResult:
    _check_paths(config)  # first of all: a run whose results cannot be saved stops before any model is loaded
    suite = config.suite
    executor = create_executor(config.executor, config.ray)  # a missing Ray stops the run before any work
    _check_names(suite)  # before any model is loaded or trained
    _check_values(suite)  # the same, for the attacks' parameter values (on stand-in models)
    if config.models_dir is not None and not config.models_dir.is_dir():
        raise CheckpointError(f"the pretrained models folder (--models or $RBE_MODELS) {config.models_dir} "
                              "does not exist")
    device = environment.select_device(suite.device)
    workspace, data, provenance = open_workspace(config, device)
    store = ResultStore(config.out_dir / STORE_FILE)
    versions = environment.versions(device)
    models, defenses, images, labels = workspace.models, workspace.defenses, workspace.images, workspace.labels
    _check_outputs(suite, models, defenses, images[:2].to(device))
    _certificates(suite, defenses, images[:2], labels[:2], device)  # a defense IBP cannot bound stops here
    _check_attacks(suite, models, defenses)
    suite = adaptive_on_aggregates(suite, defenses)
    identity = {name: _model_identity(name, provenance[name]) for name in models}
    cells = _grid(suite, data.sha256, identity, bf16=config.acceleration.bf16)
    if config.fresh:  # only once every check has passed, and only this grid's cells and sets
        _discard_grid(store, cells, config.out_dir)
    retried = store.discard_failed(c.cell_id for c in cells) if config.retry_failed else 0
    finished = store.finished_ids()
    result = RunResult(cells=None, skipped=sum(c.cell_id in finished for c in cells), retried=retried)
    if result.skipped:
        print(f"resuming: {result.skipped} of the grid's {len(cells)} cells are already in {config.out_dir} "
              "(--fresh computes them again)")

    if not config.publish_only:  # --publish-only: the cells not yet run are published as not run
        groups = [pending for group in _by_adv_set(cells)
                  if (pending := [c for c in group if c.cell_id not in finished])]
        bar = tqdm(total=len(cells), initial=result.skipped, desc=f"{suite.name} grid", unit="cell",
                   disable=None if config.progress else True)  # None: hidden where the output is not a terminal
        recorder = _Recorder(store, suite, len(images), versions, result, bar)
        executor.run(GridWork(groups, workspace, store, config, {name: i["sha256"] for name, i in identity.items()}),
                     recorder)
        bar.close()

    result.cells = store.cells([c.cell_id for c in cells])
    result.not_run = _not_run(cells, set(result.cells["cell_id"]))
    result.failed = len(store.failed_ids([c.cell_id for c in cells]))
    if config.leaderboard_dir is not None:
        randomised = {name: workspace.randomised(name) for name in defenses}
        setting = _setting(suite, data, images, labels, models, provenance, result.cells, device, versions, config,
                           randomised)
        if result.not_run:
            setting["not_run"] = {"cells": len(cells), "attacks": result.not_run}
        try:
            result.leaderboard_files = write_leaderboard(
                result.cells, setting, config.leaderboard_dir, store.outcomes(result.cells["cell_id"]),
                certificates=_certificates(suite, defenses, images, labels, device))
        except atomic.UnwritableFolderError as error:  # a full disk after hours of work: the cells are safe
            raise atomic.UnwritableFolderError(f"{error} (the cells are saved in {config.out_dir}: once there is "
                                               "room, run the same command with --publish-only)") from None
        if config.leaderboard_dir.resolve().parent.name == "leaderboards":  # a published suite: the front page too
            result.leaderboard_files += write_front_page(config.leaderboard_dir.resolve().parent)
    return result


def _check_paths(config: RunConfig) -> None:
    """Every path the run writes can be written (see :mod:`.atomic`); an UnwritableFolderError names the first that
    cannot, with its flag."""
    atomic.check_writable(config.out_dir, "run folder (--out)")
    atomic.check_writable_file(config.out_dir / STORE_FILE, "results store (in --out)")
    atomic.check_writable(config.out_dir / ADV_FOLDER, "adversarial sets folder (in --out)")
    atomic.check_writable(config.cache_dir, "model cache (--cache or $RBE_CACHE)")
    if config.leaderboard_dir is not None:
        atomic.check_writable(config.leaderboard_dir, "leaderboard folder (--leaderboard-dir)")
        atomic.check_writable_file(config.leaderboard_dir / PER_EXAMPLE_FILE, "per-example file (in --leaderboard-dir)")


class _Recorder:
    """The one writer of a run's results: each saved set and finished cell goes into the store at once, and is shown."""

    def __init__(self, store: ResultStore, suite: Suite, n: int, versions: dict, result: RunResult, bar):
        self.store, self.suite, self.n, self.versions, self.result, self.bar = store, suite, n, versions, result, bar

    def saved_set(self, record: dict) -> None:
        """An adversarial set crafted and saved in this run (its ``adv_sets`` record)."""
        self.store.put_adv_set(record)
        self.result.crafted.append((record["attack"], record["eps"]))

    def finished_cell(self, cell: Cell, record: dict, adv_set: dict | None) -> None:
        """A cell's metrics, or its failure, with its adversarial set's record (None: the clean row, or no set):
        the seconds the set took to craft and, for a cascaded cell, on how many points its attack ran."""
        adv_set = adv_set or {}
        self.store.put_cell({**asdict(cell), **record, "suite": self.suite.name, "seed": self.suite.seed,
                             "n": self.n, "craft_time_s": adv_set.get("craft_time_s", 0.0),
                             "attacked": adv_set.get("attacked"), "versions": self.versions, "finished_at": now()})
        self.result.evaluated += 1
        self.bar.update(1)
        self.bar.write(_cell_line(cell, record))


def _not_run(cells: list[Cell], recorded: set[str]) -> dict:
    """{attack: number of its cells not in the store}, in grid order: what a partial leaderboard lacks."""
    return dict(Counter(c.attack for c in cells if c.cell_id not in recorded))


def _discard_grid(store: ResultStore, cells: list[Cell], out_dir: Path) -> None:
    """``--fresh``: forgets this grid's cells and adversarial sets (their files too); other grids' stay."""
    adv_keys = list(dict.fromkeys(c.adv_key for c in cells))
    discarded = store.discard([c.cell_id for c in cells], adv_keys)
    removed = sum(_remove(adv_file(out_dir / ADV_FOLDER, key)) for key in adv_keys)
    print(f"--fresh: discarded {discarded} cells and {removed} adversarial sets of this grid from {out_dir} "
          "(other results there are kept)")


def _remove(path: Path) -> bool:
    try:
        path.unlink()
        return True
    except FileNotFoundError:
        return False


def adaptive_on_aggregates(suite: Suite, defenses: dict) -> Suite:
    """The suite with each adaptive attack that names no defenses limited to those with predictors to average (whose
    adaptive view is not the defense itself): on a single model the adaptive view is the model, and the attack would
    be its white-box twin again. An attack left with none is said so."""
    aggregates = tuple(name for name, defense in defenses.items() if adaptive_view(defense) is not defense)
    attacks = tuple(replace(a, defenses=aggregates) if a.on == "adaptive" and a.defenses is None else a
                    for a in suite.attacks)
    for entry in (a for a, before in zip(attacks, suite.attacks) if a is not before and not a.defenses):
        print(f"note: the adaptive attack {entry.name} runs on no defense: none of the suite's has predictors to "
              "average (an ensemble or a self-ensemble)", file=sys.stderr)
    return replace(suite, attacks=attacks)


@torch.no_grad()
def _check_outputs(suite: Suite, models: dict, defenses: dict, images: torch.Tensor) -> None:
    """Every surrogate and defense gives finite scores over the data's classes, and not probabilities, before any
    work."""
    surrogates = dict.fromkeys(m for a in suite.attacks for m in a.surrogates)
    checks = [(f"surrogate model {name!r}", member) for name in surrogates for member in expand_models(models, [name])]
    checks += [(f"defense {name!r}", defense.eval()) for name, defense in defenses.items()]
    for what, model in checks:
        refuse_probabilities(checked_logits(model(images), len(images), NUM_CLASSES, what), what)


def _certificates(suite: Suite, defenses: dict, images: torch.Tensor, labels: torch.Tensor, device) -> dict:
    """``(defense, eps) -> certified points`` (:func:`.certify.certified`) of every defense that asks for a certified
    floor (``certify = "ibp"``), at every eps of the suite; recomputed at each call, which is cheap for the small
    networks IBP certifies. A defense it cannot bound is a SuiteError."""
    found = {}
    for entry in (d for d in suite.defenses if d.certify):
        try:
            found.update({(entry.name, eps): certified(defenses[entry.name], images, labels, eps, suite.norm,
                                                       suite.batch_size, device) for eps in suite.eps})
        except UnsupportedModelError as error:
            raise SuiteError(f"defense {entry.name!r} (certify = {entry.certify!r}): {error}") from None
    return found


def _check_names(suite: Suite) -> None:
    """Every attack and defense kind exists and takes the parameters the suite gives it, judged from the suite
    alone: a typo stops the run before any model is loaded or trained (values are checked once they are)."""
    for entry in suite.attacks:
        if "eps" in entry.params or "norm" in entry.params:
            raise SuiteError(f"attack {entry.name!r}: set eps and norm under [threat], not in params")
        params = whitebox_params(entry, randomised=True) if entry.whitebox else entry.params
        _check_parameter_names(get_attack(entry.attack), params, f"attack {entry.name!r} ({entry.attack})")
    for defense in suite.defenses:
        _check_parameter_names(get_defense(defense.kind), defense.params, f"defense {defense.name!r} ({defense.kind})")


def _check_parameter_names(target, params: dict, what: str) -> None:
    accepted = {name: p for name, p in inspect.signature(target).parameters.items()
                if name not in ("models", "members")}
    if any(p.kind is p.VAR_KEYWORD for p in accepted.values()):
        return
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise SuiteError(f"{what}: unknown parameter{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
                         f"(it takes: {', '.join(accepted)})")


def _check_values(suite: Suite) -> None:
    """Builds every attack once on stand-in models (a randomly initialised CIFAR ResNet-20: residual, as SGM needs;
    two of them at least, as AdaEA needs) so that a bad parameter value (``fusion = "logit"``) stops the run before
    any model is loaded or trained; :func:`_check_attacks` builds them again on the real models."""
    stand_in = create_model("resnet20_a").eval()
    for entry in suite.attacks:
        _build_attack(suite, entry, [stand_in] * (1 if entry.whitebox else max(2, len(entry.surrogates))))


def _check_attacks(suite: Suite, models: dict, defenses: dict) -> None:
    """Builds every attack once on its real models so that a bad parameter value stops the run before any work."""
    for entry in suite.attacks:
        _build_attack(suite, entry, [attacked_model(entry, next(iter(defenses.values())))] if entry.whitebox
                      else expand_models(models, entry.surrogates))


def _build_attack(suite: Suite, entry: AttackEntry, targets: list) -> None:
    try:  # an unknown name raises UnknownAttackError (with the closest names) from create_attack
        params = whitebox_params(entry, randomised=True) if entry.whitebox else entry.params
        create_attack(entry.attack, targets, eps=suite.eps[0], norm=suite.norm, seed=suite.seed,
                      **at_eps(params, suite.eps[0]))
    except (TypeError, ValueError) as error:
        raise SuiteError(f"attack {entry.name!r} ({entry.attack}): {error}") from None


def _model_identity(name: str, provenance: dict) -> dict:
    return {"name": name, "arch": provenance.get("arch"), "sha256": provenance.get("sha256")}


def _fingerprint(payload) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _grid(suite: Suite, data_sha256: str, identity: dict, bf16: bool = False) -> list[Cell]:
    """The clean row, then attack x eps x defense, each with its cell id and adversarial-set key."""
    common = {"suite": suite.name, "data": data_sha256, "n": suite.n_examples, "norm": suite.norm,
              "seed": suite.seed}
    precision = {"precision": "bf16"} if bf16 else {}  # bf16 sets are other sets; fp32 ones keep their ids
    defense_ids = {d.name: _defense_payload(d, identity) for d in suite.defenses}
    cells = []
    stage = {}  # (kind, eps, defense) -> the adversarial-set key of the kind's last cascaded attack so far
    rows = [(None, 0.0)] + [(a, eps) for a in suite.attacks for eps in a.eps_values(suite.eps)]
    for attack, eps in rows:
        attack_payload = _attack_payload(attack, identity) if attack else CLEAN
        shared_key = _fingerprint({**common, "attack": attack_payload, "eps": eps, **(precision if attack else {})})
        for defense in (d for d in suite.defenses if attack is None or attack.runs_on(d.name)):
            cascaded = attack is not None and attack.cascade
            chain = (attack_kind(attack), eps, defense.name) if cascaded else None  # one cascade per threat model
            after = stage.get(chain, CLEAN) if cascaded else None
            # a transfer set serves every defense; a white-box set is crafted on (and for) one defense, and a
            # cascaded one also on the set of the cascade's stage before it
            adv_key = _fingerprint({"shared": shared_key, "defense": defense_ids[defense.name],
                                    **({"cascade_after": after} if cascaded else {})}) \
                if attack is not None and attack.whitebox else shared_key
            cell_id = _fingerprint({"adv": adv_key, "defense": defense_ids[defense.name]})
            cells.append(Cell(attack.name if attack else CLEAN, eps, defense.name, cell_id, adv_key, after))
            if cascaded:
                stage[chain] = adv_key
    return cells


def _attack_payload(attack: AttackEntry, identity: dict) -> dict:
    payload = {"name": attack.name, "attack": attack.attack, "params": attack.params,
               "surrogates": [identity[m] for m in attack.surrogates]}
    return {**payload, "on": attack.on, "eot": attack.eot} if attack.whitebox else payload


def _defense_payload(defense: DefenseEntry, identity: dict) -> dict:
    return {"name": defense.name, "kind": defense.kind, "params": defense.params,
            "members": [identity[m] for m in defense.members]}


def _by_adv_set(cells: list[Cell]):
    """The cells grouped by the adversarial set they evaluate, in grid order."""
    groups: dict[str, list[Cell]] = {}
    for cell in cells:
        groups.setdefault(cell.adv_key, []).append(cell)
    return groups.values()


def _cell_line(cell: Cell, record: dict) -> str:
    where = f"{cell.attack} -> {cell.defense}" if cell.attack == CLEAN else \
        f"{cell.attack} eps={fmt_eps(cell.eps)} -> {cell.defense}"
    if record["status"] != "ok":
        return f"{where}: FAILED ({record['error']})"
    return f"{where}: clean {100 * record['clean_acc']:.1f}%  robust {100 * record['robust_acc']:.1f}%"



def _setting(suite, data, images, labels, models, provenance, cells, device, versions, config, randomised) -> dict:
    clean = cells[cells["attack"] == CLEAN].set_index("defense")["clean_acc"].to_dict()
    surrogates = list(dict.fromkeys(m for a in suite.attacks for m in a.surrogates))
    surrogate_acc = {name: _mean_accuracy(expand_models(models, [name]), images, labels, suite.batch_size, device)
                     for name in surrogates}  # a derived collection: its members' mean
    compute_s = cells.drop_duplicates("adv_key")["craft_time_s"].sum() + cells["eval_time_s"].sum()
    return {
        "suite": suite.name, "description": suite.description, **({"slice": suite.slice} if suite.slice else {}),
        "date": now(),
        "version": versions["robustbench_ens"], "git_commit": versions["git_commit"],
        "hardware": environment.hardware(device),
        "libraries": ", ".join(f"{k} {v}" for k, v in versions.items()
                               if k not in ("git_commit", "robustbench_ens", "cpu", "gpu")),  # the machine: hardware
        "data": {"source": data.source, "file_sha256": data.file_sha256, "sha256": data.sha256,
                 "n_examples": len(images), "indices": data.indices_text(len(images))},
        "threat": {"norm": suite.norm, "eps": list(suite.eps), "headline_eps": suite.headline_eps},
        "seeds": [suite.seed],
        **({"pools": {name: list(members) for name, members in suite.pools.items()}} if suite.pools else {}),
        "attacks": [{"name": a.name, "class": get_attack(a.attack).__name__, "paper": _paper(a), "params": a.params,
                     "surrogates": list(a.surrogates) or [ATTACKED[attack_kind(a)]], "kind": attack_kind(a),
                     **({"pool": a.pool} if a.pool else {}),
                     "eps": a.eps_values(suite.eps), "eot": eot_samples(a),
                     "defenses": "all" if a.defenses is None else list(a.defenses),
                     **({"cascade": _cascade_text(suite, a)} if a.cascade else {})} for a in suite.attacks],
        "surrogates": [{"name": name, "arch": provenance[name].get("arch"), "origin": provenance[name].get("origin"),
                        "source": _origin_text(provenance[name]), "sha256": provenance[name].get("sha256"),
                        "clean_acc": surrogate_acc[name]} for name in surrogates],
        "defenses": [{"name": d.name, "kind": d.kind, "params": d.params, "members": list(d.members),
                      "origin": "; ".join(f"{m}: {_origin_text(provenance[m])}" for m in d.members),
                      "clean_acc": clean.get(d.name), "randomised": randomised[d.name],
                      **({"group": d.group} if d.group else {})} for d in suite.defenses],
        "runtime_s": float(compute_s), "command": config.command,
        **({"acceleration": accelerated} if (accelerated := [k for k, on in asdict(config.acceleration).items()
                                                              if on]) else {}),
    }


def _paper(entry: AttackEntry) -> str:
    """The paper(s) of an attack and of the input transformations it uses: the first paragraph of each module's
    docstring, which names them."""
    modules = [get_attack(entry.attack).__module__]
    modules += [type(t).__module__ for t in resolve_transforms(entry.params.get("transforms", ()))]
    return " With ".join(" ".join((sys.modules[m].__doc__ or "").split("\n\n")[0].split()) for m in modules)


def _cascade_text(suite: Suite, entry: AttackEntry) -> str:
    """Where a cascaded attack stands in its cascade, for the page."""
    before = [a.name for a in suite.attacks[:suite.attacks.index(entry)]
              if a.cascade and attack_kind(a) == attack_kind(entry)]
    return f"on the points still robust after {', '.join(before)}" if before else \
        "first stage: on the points each defense classifies correctly"


def _mean_accuracy(members: list, images, labels, batch_size: int, device) -> float:
    return sum(accuracy(m, images, labels, batch_size, device) for m in members) / len(members)


def _origin_text(provenance: dict) -> str:
    if provenance.get("method"):
        return describe_derived(provenance)
    about = f", {provenance['about']}" if provenance.get("about") else ""
    if provenance.get("origin") == "models_dir":
        licence = provenance.get("license") or "not stated"
        return f"pretrained file {Path(str(provenance.get('source', ''))).name}{about} (licence: {licence})"
    if provenance.get("origin") in EXTERNAL_LIBRARIES:  # loaded by robustbench or timm (zoo.external)
        return f"{provenance['source']}{about}"
    when = {"trained": "in this run", "cache": "cached from an earlier run"}.get(provenance.get("origin"),
                                                                                provenance.get("origin"))
    clean_acc = provenance.get("clean_acc")  # (not "accuracy": that is the metric this module imports)
    measured = f", {100 * clean_acc:.1f} % clean accuracy on the test split" if isinstance(clean_acc, float) else ""
    return (f"trained here by the zoo ({when}; recipe {json.dumps(provenance.get('recipe', {}), sort_keys=True)}"
            f"{measured})")
