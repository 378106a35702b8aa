"""The runner: suite -> models and defenses -> attack x eps x defense grid -> store -> leaderboard.

Transfer attacks do not depend on the target, so each (attack, eps) adversarial set is
crafted once on its surrogates, saved (atomically) under ``<out>/adv/``, evaluated on every
defense, and dropped from memory before the next one. Every finished cell is committed to
the SQLite store at once; a re-run skips recorded cells and reloads saved adversarial sets,
so a run killed at any point resumes without losing or repeating work.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from attacks import create_attack, get_attack
from defenses import build_defense

from . import atomic, environment
from .data import NUM_CLASSES, load_cifar10
from .leaderboard import write_leaderboard
from .leaderboard.format import fmt_eps
from .metrics import accuracy, accuracy_metrics, checked_logits, perturbation_norms, predict
from .store import ResultStore
from .suite import CLEAN, AttackEntry, DefenseEntry, Suite, SuiteError
from .whitebox import attack_kind, attacked_model, eot_samples, is_randomised, whitebox_params
from .zoo import CheckpointError, ModelSpec, TrainRecipe, pretrained_file, resolve_derived, resolve_model
from .zoo.derived import checked_settings
from .zoo.derived import describe as describe_derived

ATTACKED = {"white-box": "white-box: each defense itself",
            "adaptive": "white-box: each defense's mean of logits (adaptive)",
            "black-box": "black-box: queries each defense's outputs"}
DEFAULT_CACHE = Path.home() / ".cache" / "robustbench_ens" / "models"
STORE_FILE = "results.sqlite"
ADV_FOLDER = "adv"


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
    progress: bool = True
    command: str = ""


@dataclass
class RunResult:
    cells: pd.DataFrame | None  # this grid's cells
    crafted: list[tuple[str, float]] = field(default_factory=list)  # (attack, eps) crafted in this run
    evaluated: int = 0
    skipped: int = 0
    failed: int = 0
    retried: int = 0  # failed cells forgotten by --retry-failed (and run again)
    leaderboard_files: list[Path] = field(default_factory=list)


@dataclass(frozen=True)
class Cell:
    attack: str
    eps: float
    defense: str
    cell_id: str
    adv_key: str


def run_suite(config: RunConfig) -> RunResult:
    suite = config.suite
    atomic.check_writable(config.out_dir, "run folder (--out)")
    if config.leaderboard_dir is not None:
        atomic.check_writable(config.leaderboard_dir, "leaderboard folder (--leaderboard-dir)")
    device = environment.select_device(suite.device)
    data = load_cifar10(config.data_path)
    images, labels = data.test(suite.n_examples)
    if config.fresh:
        _discard_results(config.out_dir)
    store = ResultStore(config.out_dir / STORE_FILE)
    versions = environment.versions()

    models, provenance = resolve_models(suite, data, config, device)
    defenses = build_defenses(suite, models, device)
    _check_outputs(suite, models, defenses, images[:2].to(device))
    _check_attacks(suite, models, defenses)
    identity = {name: _model_identity(name, provenance[name]) for name in models}
    cells = _grid(suite, data.sha256, identity)
    retried = store.discard_failed(c.cell_id for c in cells) if config.retry_failed else 0
    finished = store.finished_ids()
    result = RunResult(cells=None, skipped=sum(c.cell_id in finished for c in cells), retried=retried)

    adversarial_sets = _AdversarialSets(suite, models, defenses, images, labels, store,
                                        config.out_dir / ADV_FOLDER, device, config.progress)
    evaluator = _Evaluator(images, labels, defenses, suite.batch_size, device)
    bar = tqdm(total=len(cells), initial=result.skipped, desc=f"{suite.name} grid", unit="cell",
               disable=not config.progress)
    for group in _by_adv_set(cells):
        pending = [c for c in group if c.cell_id not in finished]
        if not pending:
            continue
        try:
            x_adv, craft_time = adversarial_sets.get(pending[0])
        except Exception as error:  # a failed crafting fails its cells; the grid goes on
            x_adv, craft_time, craft_error = None, 0.0, error
        else:
            craft_error = None
        norms = perturbation_norms(images, x_adv) if craft_error is None else {}  # one per set, not per defense
        for cell in pending:
            record = evaluator.evaluate(cell, x_adv, norms, craft_error)
            store.put_cell({**asdict(cell), **record, "suite": suite.name, "seed": suite.seed,
                            "n": len(images), "craft_time_s": craft_time, "versions": versions,
                            "finished_at": _now()})
            result.evaluated += 1
            result.failed += record["status"] != "ok"
            bar.update(1)
            bar.write(_cell_line(cell, record))
        del x_adv
    bar.close()

    result.crafted = adversarial_sets.crafted
    result.cells = store.cells([c.cell_id for c in cells])
    if config.leaderboard_dir is not None:
        randomised = {name: adversarial_sets.randomised(name) for name in defenses}
        setting = _setting(suite, data, images, labels, models, provenance, result.cells, device, versions, config,
                           randomised)
        result.leaderboard_files = write_leaderboard(result.cells, setting, config.leaderboard_dir)
    return result


def resolve_models(suite: Suite, data, config: RunConfig, device) -> tuple[dict, dict]:
    """Every model the suite uses, by name (a derived model as a list), and each one's provenance."""
    names = suite.model_names()
    for name in names:  # before any training: a model the zoo cannot reproduce is never replaced
        entry = suite.models[name]
        found = config.models_dir and pretrained_file(config.models_dir, entry.checkpoint)
        if entry.require_checkpoint and not found:
            raise CheckpointError(
                f"model {name!r} needs the checkpoint {entry.checkpoint}.safetensors in --models "
                f"(now {config.models_dir}); the zoo's standard recipe cannot reproduce it "
                f"({entry.source or entry.arch})")
        if entry.method:  # a bad method or setting stops the run before any training
            try:
                checked_settings(entry.method, len(entry.bases), entry.params, entry.train)
            except (TypeError, ValueError) as error:
                raise SuiteError(f"{suite.source}: model {name!r} ({entry.method}): {error}") from None
    models, provenance = {}, {}
    for name in names:  # bases come before the models derived from them (Suite.model_names)
        entry = suite.models[name]
        if entry.method:
            members, provenance[name] = resolve_derived(
                name, entry.method, [models[b] for b in entry.bases], [provenance[b]["sha256"] for b in entry.bases],
                data, config.cache_dir, params=entry.params, train=entry.train, seed=entry.seed, device=device,
                progress=config.progress)
            models[name] = [member.to(device).eval() for member in members]
        else:
            try:
                recipe = TrainRecipe.from_dict({**suite.train, **entry.train})
            except ValueError as error:
                raise SuiteError(f"{suite.source}: bad training recipe for model {name!r}: {error}") from None
            spec = ModelSpec(name=name, arch=entry.arch, checkpoint=entry.checkpoint, recipe=recipe, seed=entry.seed)
            model, provenance[name] = resolve_model(spec, data, config.models_dir, config.cache_dir, device=device,
                                                    progress=config.progress)
            models[name] = model.to(device).eval()
        provenance[name] = {**provenance[name], "about": entry.source}
    return models, provenance


def expand_models(models: dict, names) -> list:
    """The modules behind ``names``; a derived model (LGV collection, DVERGE ensemble) contributes all its members."""
    return [member for name in names
            for member in (models[name] if isinstance(models[name], list) else [models[name]])]


def build_defenses(suite: Suite, models: dict, device) -> dict:
    """Every defense of the suite by name, built from its members and moved to ``device``."""
    return {d.name: build_defense(d.kind, expand_models(models, d.members), **d.params).to(device)
            for d in suite.defenses}


def craft(attack, images: torch.Tensor, labels: torch.Tensor, batch_size: int, device, *, desc: str = "",
          progress: bool = False) -> torch.Tensor:
    """``attack`` run batch by batch on ``device``; the adversarial images, on the CPU (a ValueError if not finite)."""
    x_adv = torch.cat([attack(images[i:i + batch_size].to(device), labels[i:i + batch_size].to(device)).cpu()
                       for i in tqdm(range(0, len(images), batch_size), desc=desc, unit="batch", leave=False,
                                     disable=not progress)]).contiguous()
    if not torch.isfinite(x_adv).all():
        raise ValueError(f"{type(attack).__name__} produced NaN or infinite pixels")
    return x_adv


def _discard_results(out_dir: Path) -> None:
    """``--fresh``: removes the store and the adversarial sets, nothing else in ``out_dir``."""
    (out_dir / STORE_FILE).unlink(missing_ok=True)
    shutil.rmtree(out_dir / ADV_FOLDER, ignore_errors=True)


@torch.no_grad()
def _check_outputs(suite: Suite, models: dict, defenses: dict, images: torch.Tensor) -> None:
    """Every surrogate and defense gives finite scores over the data's classes, before any work."""
    surrogates = dict.fromkeys(m for a in suite.attacks for m in a.surrogates)
    checks = [(f"surrogate model {name!r}", member) for name in surrogates for member in expand_models(models, [name])]
    checks += [(f"defense {name!r}", defense.eval()) for name, defense in defenses.items()]
    for what, model in checks:
        checked_logits(model(images), len(images), NUM_CLASSES, what)


def _check_attacks(suite: Suite, models: dict, defenses: dict) -> None:
    """Builds every attack once so that a bad name or parameter stops the run before any work."""
    for entry in suite.attacks:
        if "eps" in entry.params or "norm" in entry.params:
            raise SuiteError(f"attack {entry.name!r}: set eps and norm under [threat], not in params")
        targets = [attacked_model(entry, next(iter(defenses.values())))] if entry.whitebox else \
            expand_models(models, entry.surrogates)
        try:  # an unknown name raises UnknownAttackError (with the closest names) from create_attack
            create_attack(entry.attack, targets, eps=suite.eps[0], norm=suite.norm, seed=suite.seed,
                          **whitebox_params(entry, randomised=True) if entry.whitebox else entry.params)
        except (TypeError, ValueError) as error:
            raise SuiteError(f"attack {entry.name!r} ({entry.attack}): {error}") from None


def _model_identity(name: str, provenance: dict) -> dict:
    return {"name": name, "arch": provenance.get("arch"), "sha256": provenance.get("sha256")}


def _fingerprint(payload) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _grid(suite: Suite, data_sha256: str, identity: dict) -> list[Cell]:
    """The clean row, then attack x eps x defense, each with its cell id and adversarial-set key."""
    common = {"suite": suite.name, "data": data_sha256, "n": suite.n_examples, "norm": suite.norm,
              "seed": suite.seed}
    defense_ids = {d.name: _defense_payload(d, identity) for d in suite.defenses}
    cells = []
    rows = [(None, 0.0)] + [(a, eps) for a in suite.attacks for eps in a.eps_values(suite.eps)]
    for attack, eps in rows:
        attack_payload = _attack_payload(attack, identity) if attack else CLEAN
        shared_key = _fingerprint({**common, "attack": attack_payload, "eps": eps})
        for defense in (d for d in suite.defenses if attack is None or attack.runs_on(d.name)):
            # a transfer set serves every defense; a white-box set is crafted on (and for) one defense
            adv_key = _fingerprint({"shared": shared_key, "defense": defense_ids[defense.name]}) \
                if attack is not None and attack.whitebox else shared_key
            cell_id = _fingerprint({"adv": adv_key, "defense": defense_ids[defense.name]})
            cells.append(Cell(attack.name if attack else CLEAN, eps, defense.name, cell_id, adv_key))
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


class _AdversarialSets:
    """Each adversarial set: reloaded from ``folder`` if saved, else crafted in batches and saved.

    A transfer set is crafted once on its surrogates; a white-box set once per defense, on
    the defense (or its adaptive view), with EOT if the defense's forward pass is random.
    """

    def __init__(self, suite: Suite, models: dict, defenses: dict, images, labels, store: ResultStore, folder: Path,
                 device, progress: bool):
        self.suite, self.models, self.defenses, self.images, self.labels = suite, models, defenses, images, labels
        self.store, self.folder, self.device, self.progress = store, folder, device, progress
        self.crafted: list[tuple[str, float]] = []
        self._randomised: dict[str, bool] = {}

    def get(self, cell: Cell) -> tuple[torch.Tensor, float]:
        """The adversarial images of ``cell`` and the seconds their crafting took."""
        if cell.attack == CLEAN:
            return self.images, 0.0
        record = self.store.adv_set(cell.adv_key)
        if record and Path(record["path"]).is_file():
            return load_file(record["path"])["x_adv"], record["craft_time_s"]
        x_adv, craft_time = self._craft(next(a for a in self.suite.attacks if a.name == cell.attack), cell)
        path = self.folder / f"{cell.adv_key}.safetensors"
        atomic.write_with(path, lambda tmp: save_file({"x_adv": x_adv}, str(tmp),
                                                      metadata={"attack": cell.attack, "eps": repr(cell.eps)}))
        self.store.put_adv_set({"adv_key": cell.adv_key, "suite": self.suite.name, "attack": cell.attack,
                                "eps": cell.eps, "n": len(x_adv), "path": str(path), "craft_time_s": craft_time,
                                "created_at": _now()})
        self.crafted.append((cell.attack, cell.eps))
        return x_adv, craft_time

    def randomised(self, defense: str) -> bool:
        if defense not in self._randomised:
            self._randomised[defense] = is_randomised(self.defenses[defense], self.images[:8].to(self.device))
        return self._randomised[defense]

    def _craft(self, entry: AttackEntry, cell: Cell) -> tuple[torch.Tensor, float]:
        if entry.whitebox:
            randomised = self.randomised(cell.defense)
            models = [attacked_model(entry, self.defenses[cell.defense])]
            params, where = whitebox_params(entry, randomised), \
                f"{cell.defense} ({entry.on}{', randomised: EOT' if randomised else ''})"
        else:
            models = expand_models(self.models, entry.surrogates)
            params, where = entry.params, f"{len(models)} surrogate{'s' * (len(models) != 1)}"
        attack = create_attack(entry.attack, models, eps=cell.eps, norm=self.suite.norm, seed=self.suite.seed,
                               **params)
        started = time.perf_counter()
        x_adv = craft(attack, self.images, self.labels, self.suite.batch_size, self.device,
                      desc=f"crafting {entry.name} eps={fmt_eps(cell.eps)}", progress=self.progress)
        craft_time = time.perf_counter() - started
        tqdm.write(f"crafted {entry.name} eps={fmt_eps(cell.eps)} on {where}: "
                   f"{len(self.images)} images in {craft_time:.1f} s")
        return x_adv, craft_time


class _Evaluator:
    """Evaluates defenses on adversarial sets; each defense's clean predictions computed once."""

    def __init__(self, images, labels, defenses, batch_size, device):
        self.images, self.labels, self.defenses = images, labels, defenses
        self.batch_size, self.device = batch_size, device
        self._clean_pred: dict[str, torch.Tensor] = {}

    def clean_pred(self, defense: str) -> torch.Tensor:
        if defense not in self._clean_pred:
            self._clean_pred[defense] = predict(self.defenses[defense], self.images, self.batch_size, self.device)
        return self._clean_pred[defense]

    def evaluate(self, cell: Cell, x_adv, norms: dict, craft_error) -> dict:
        if craft_error is not None:
            return _failed(f"crafting failed: {type(craft_error).__name__}: {craft_error}")
        try:
            started = time.perf_counter()
            clean_pred = self.clean_pred(cell.defense)
            adv_pred = clean_pred if cell.attack == CLEAN else predict(
                self.defenses[cell.defense], x_adv, self.batch_size, self.device)
            eval_time = time.perf_counter() - started
        except Exception as error:  # a failed evaluation fails its cell; the grid goes on
            return _failed(f"evaluation failed: {type(error).__name__}: {error}")
        return {**accuracy_metrics(self.labels, clean_pred, adv_pred), **norms,
                "eval_time_s": eval_time, "status": "ok", "error": None}


def _failed(message: str) -> dict:
    return {"status": "failed", "error": message}


def _cell_line(cell: Cell, record: dict) -> str:
    where = f"{cell.attack} -> {cell.defense}" if cell.attack == CLEAN else \
        f"{cell.attack} eps={fmt_eps(cell.eps)} -> {cell.defense}"
    if record["status"] != "ok":
        return f"{where}: FAILED ({record['error']})"
    return f"{where}: clean {100 * record['clean_acc']:.1f}%  robust {100 * record['robust_acc']:.1f}%"


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _setting(suite, data, images, labels, models, provenance, cells, device, versions, config, randomised) -> dict:
    clean = cells[cells["attack"] == CLEAN].set_index("defense")["clean_acc"].to_dict()
    surrogates = list(dict.fromkeys(m for a in suite.attacks for m in a.surrogates))
    surrogate_acc = {name: _mean_accuracy(expand_models(models, [name]), images, labels, suite.batch_size, device)
                     for name in surrogates}  # a derived collection: its members' mean
    compute_s = cells.drop_duplicates("adv_key")["craft_time_s"].sum() + cells["eval_time_s"].sum()
    return {
        "suite": suite.name, "description": suite.description, "date": _now(),
        "version": versions["robustbench_ens"], "git_commit": versions["git_commit"],
        "hardware": environment.hardware(device),
        "libraries": ", ".join(f"{k} {v}" for k, v in versions.items() if k not in ("git_commit", "robustbench_ens")),
        "data": {"source": data.source, "sha256": data.sha256, "n_examples": len(images)},
        "threat": {"norm": suite.norm, "eps": list(suite.eps), "headline_eps": suite.headline_eps},
        "seeds": [suite.seed],
        "attacks": [{"name": a.name, "class": get_attack(a.attack).__name__, "params": a.params,
                     "surrogates": list(a.surrogates) or [ATTACKED[attack_kind(a)]], "kind": attack_kind(a),
                     "eps": a.eps_values(suite.eps), "eot": eot_samples(a),
                     "defenses": "all" if a.defenses is None else list(a.defenses)} for a in suite.attacks],
        "surrogates": [{"name": name, "arch": provenance[name].get("arch"), "origin": provenance[name].get("origin"),
                        "source": _origin_text(provenance[name]), "sha256": provenance[name].get("sha256"),
                        "clean_acc": surrogate_acc[name]} for name in surrogates],
        "defenses": [{"name": d.name, "kind": d.kind, "params": d.params, "members": list(d.members),
                      "origin": "; ".join(f"{m}: {_origin_text(provenance[m])}" for m in d.members),
                      "clean_acc": clean.get(d.name), "randomised": randomised[d.name]} for d in suite.defenses],
        "runtime_s": float(compute_s), "command": config.command,
    }


def _mean_accuracy(members: list, images, labels, batch_size: int, device) -> float:
    return sum(accuracy(m, images, labels, batch_size, device) for m in members) / len(members)


def _origin_text(provenance: dict) -> str:
    if provenance.get("method"):
        return describe_derived(provenance)
    if provenance.get("origin") == "models_dir":
        about = f", {provenance['about']}" if provenance.get("about") else ""
        return f"pretrained file {Path(str(provenance.get('source', ''))).name}{about}"
    return (f"trained here by the zoo ({provenance.get('origin')}; recipe "
            f"{json.dumps(provenance.get('recipe', {}), sort_keys=True)}, clean acc {provenance.get('clean_acc')})")
