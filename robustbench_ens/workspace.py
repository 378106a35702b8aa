"""The work of one grid cell, shared by every executor: crafting an adversarial set and evaluating a defense on it.

A :class:`Workspace` holds what that work needs (the suite, its test points, models,
defenses and device). The runner builds one in the driver; a Ray worker builds its own
from the same run configuration (:func:`open_workspace`), so that the local and the Ray
executor run the very same crafting and evaluation code. Nothing here writes to the
results store: the caller records what it returns.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from attacks import create_attack
from attacks.acceleration import accelerate
from defenses import build_defense

from . import atomic
from .data import load_cifar10
from .leaderboard.format import fmt_eps
from .metrics import accuracy_metrics, per_example, predict
from .suite import CLEAN, SUPPLIED, AttackEntry, Suite, SuiteError, at_eps
from .text import plural
from .whitebox import attacked_model, eot_samples, is_randomised, whitebox_params
from .zoo import CheckpointError, ModelSpec, TrainRecipe, pretrained_file, resolve_derived, resolve_model
from .zoo.derived import checked_settings
from .zoo.external import state_sha256

ADV_FOLDER = "adv"  # the adversarial sets, under the run folder (--out)


@dataclass(frozen=True)
class Acceleration:
    """How the attacked models run while crafting (``run_all.py --bf16 --channels-last --stack --compile``).

    Measured effect of each, on CIFAR ResNets: benchmarks/README.md. bf16 changes the adversarial
    images (within the tolerance stated there), so it is part of a cell's identity; the others
    change only the order of floating-point sums.
    """

    bf16: bool = False
    channels_last: bool = False
    stack: bool = False
    compile: bool = False

    def models(self, models: list) -> list:
        return accelerate(models, stack=self.stack, channels_last=self.channels_last, compile=self.compile)

    def autocast(self, device: torch.device):
        return torch.autocast(device.type, dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()


@dataclass(frozen=True)
class Cell:
    attack: str
    eps: float
    defense: str
    cell_id: str
    adv_key: str
    after: str | None = None  # a cascaded cell's previous stage: its adversarial-set key, or CLEAN for the first

    @property
    def cascaded(self) -> bool:
        """Crafted only on the points still robust after the cascade's stages before it."""
        return self.after is not None


class Workspace:
    """The test points, models and defenses of a run, and the two jobs done with them: craft a set, evaluate a cell.

    A transfer set is crafted once on its surrogates; a white-box set once per defense, on
    the defense (or its adaptive view), with EOT if the defense's forward pass is random.
    Each set is saved atomically as ``<adv_folder>/<adv_key>.safetensors``.
    """

    def __init__(self, suite: Suite, images: torch.Tensor, labels: torch.Tensor, models: dict, defenses: dict,
                 device: torch.device, adv_folder: Path, progress: bool = False,
                 acceleration: Acceleration = Acceleration()):
        self.suite, self.images, self.labels, self.models, self.defenses = suite, images, labels, models, defenses
        self.device, self.adv_folder, self.progress = device, Path(adv_folder), progress
        self.acceleration = acceleration
        self._randomised: dict[str, bool] = {}
        self._clean_pred: dict[str, torch.Tensor] = {}
        self._adv_pred: dict[str, torch.Tensor] = {}  # a cascaded set's adv_key -> its defense's predictions

    def craft_set(self, cell: Cell) -> tuple[torch.Tensor, dict]:
        """Crafts and saves the adversarial set of ``cell``: its images and its ``adv_sets`` record for the store
        (``attacked``: for a cascaded cell, how many points it attacked)."""
        x_adv, craft_time, attacked = self._craft(next(a for a in self.suite.attacks if a.name == cell.attack), cell)
        path = adv_file(self.adv_folder, cell.adv_key)
        atomic.write_with(path, lambda tmp: save_file({"x_adv": x_adv}, str(tmp),
                                                      metadata={"attack": cell.attack, "eps": repr(cell.eps)}))
        return x_adv, {"adv_key": cell.adv_key, "suite": self.suite.name, "attack": cell.attack, "eps": cell.eps,
                       "n": len(x_adv), "path": str(path), "craft_time_s": craft_time, "attacked": attacked,
                       "created_at": now()}

    def adversarial_images(self, cell: Cell, record: dict | None) -> torch.Tensor:
        """The images ``cell`` is evaluated on: the clean ones, or the saved set that ``record`` points to."""
        return self.images if cell.attack == CLEAN else load_file(record["path"])["x_adv"]

    def randomised(self, defense: str) -> bool:
        if defense not in self._randomised:
            self._randomised[defense] = is_randomised(self.defenses[defense], self.images[:8].to(self.device))
        return self._randomised[defense]

    def clean_pred(self, defense: str) -> torch.Tensor:
        """The defense's predictions on the clean points, computed once."""
        if defense not in self._clean_pred:
            self._clean_pred[defense] = predict(self.defenses[defense], self.images, self.suite.batch_size,
                                                self.device)
        return self._clean_pred[defense]

    def evaluate(self, cell: Cell, x_adv: torch.Tensor | None, norms: dict, craft_error: str | None) -> dict:
        """The cell's metrics and per-example outcomes (``status`` ok), or a failed record when its crafting or its
        evaluation failed."""
        if craft_error is not None:
            return failed(f"crafting failed: {craft_error}")
        try:
            started = time.perf_counter()
            clean_pred = self.clean_pred(cell.defense)
            adv_pred = clean_pred if cell.attack == CLEAN else predict(
                self.defenses[cell.defense], x_adv, self.suite.batch_size, self.device)
            if cell.cascaded:  # the next stage of its cascade starts from these outcomes, not from another pass
                self._adv_pred[cell.adv_key] = adv_pred
            eval_time = time.perf_counter() - started
        except Exception as error:  # a failed evaluation fails its cell; the grid goes on
            return failed(f"evaluation failed: {describe_error(error)}")
        return {**accuracy_metrics(self.labels, clean_pred, adv_pred),
                **per_example(self.labels, clean_pred, adv_pred), **norms,
                "eval_time_s": eval_time, "status": "ok", "error": None}

    def _craft(self, entry: AttackEntry, cell: Cell) -> tuple[torch.Tensor, float, int | None]:
        if entry.whitebox:
            randomised = self.randomised(cell.defense)
            models = [attacked_model(entry, self.defenses[cell.defense])]
            eot = eot_samples(entry) if randomised else None  # Square, say, queries one draw per step: no EOT
            draws = "" if not randomised else f", randomised: EOT over {eot} draws" if eot else ", randomised: no EOT"
            params, where = whitebox_params(entry, randomised), f"{cell.defense} ({entry.on}{draws})"
        else:
            models = expand_models(self.models, entry.surrogates)
            params, where = entry.params, plural(len(models), "surrogate")
        attack = create_attack(entry.attack, self.acceleration.models(models), eps=cell.eps, norm=self.suite.norm,
                               seed=self.suite.seed + entry.restart, **at_eps(params, cell.eps))
        start, robust = self._cascade_start(cell) if cell.cascaded else (None, None)
        images, labels = (self.images, self.labels) if start is None else (self.images[robust], self.labels[robust])
        started = time.perf_counter()
        with self.acceleration.autocast(self.device):
            crafted = craft(attack, images, labels, self.suite.batch_size, self.device,
                            desc=f"crafting {entry.name} eps={fmt_eps(cell.eps)}", progress=self.progress) \
                if len(images) else images
        x_adv = crafted if start is None else start.clone().index_put_((robust,), crafted)
        craft_time = time.perf_counter() - started
        attacked = None if start is None else int(robust.sum())
        points = f"{len(self.images)} images" if start is None else \
            f"{attacked} of {len(self.images)} images (those still robust in the cascade)"
        tqdm.write(f"crafted {entry.name} eps={fmt_eps(cell.eps)} on {where}: {points} in {craft_time:.1f} s")
        return x_adv, craft_time, attacked

    def _cascade_start(self, cell: Cell) -> tuple[torch.Tensor, torch.Tensor]:
        """A cascaded cell's starting set (the clean images for the cascade's first stage, else the saved set of the
        stage before it) and the mask of the points the defense still classifies correctly on it: the only ones
        this stage attacks."""
        if cell.after == CLEAN:
            return self.images, self.clean_pred(cell.defense) == self.labels
        path = adv_file(self.adv_folder, cell.after)
        if not path.is_file():
            raise CascadeError(f"the cascade's stage before {cell.attack} on {cell.defense} at eps "
                               f"{fmt_eps(cell.eps)} has no saved set (it failed); once its cause is fixed, "
                               "--retry-failed runs both again")
        start = load_file(path)["x_adv"]
        # as the stage's cell recorded them, when it was evaluated in this process
        predicted = self._adv_pred.pop(cell.after, None)
        if predicted is None:
            predicted = predict(self.defenses[cell.defense], start, self.suite.batch_size, self.device)
        return start, predicted == self.labels


class CascadeError(RuntimeError):
    """A cascaded attack's previous stage has no adversarial set to start from."""


def adv_file(adv_folder: Path, adv_key: str) -> Path:
    """Where the adversarial set ``adv_key`` is saved."""
    return adv_folder / f"{adv_key}.safetensors"


def open_workspace(config, device: torch.device, identity: dict | None = None) -> tuple[Workspace, object, dict]:
    """The workspace of the run ``config`` (a RunConfig) on ``device``, with the data and the models' provenance.

    ``identity`` (model name -> sha256), where given, must match the models found here: a
    worker whose models differ from the driver's (another --models or --cache) stops with a
    CheckpointError instead of computing cells under the driver's ids.
    """
    suite = config.suite
    data = load_cifar10(config.data_path)
    images, labels = data.test(suite.n_examples)
    models, provenance = resolve_models(suite, data, config, device)
    for name, sha256 in (identity or {}).items():
        if provenance[name].get("sha256") != sha256:
            raise CheckpointError(f"model {name!r} here has sha256 {provenance[name].get('sha256')}, the driver's "
                                  f"{sha256}: every node must see the same --models and --cache folders")
    defenses = build_defenses(suite, models, device)
    return Workspace(suite, images, labels, models, defenses, device, config.out_dir / ADV_FOLDER,
                     config.progress, config.acceleration), data, provenance


def resolve_models(suite: Suite, data, config, device) -> tuple[dict, dict]:
    """Every model the suite uses, by name (a derived model as a list), and each one's provenance."""
    names = suite.model_names()
    for name in names:  # before any training: a model the zoo cannot reproduce is never replaced
        entry = suite.models[name]
        if entry.arch == SUPPLIED:
            if name not in config.supplied:
                raise SuiteError(f"model {name!r} is to be supplied by the caller (robustbench_ens.benchmark)")
            continue
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
        if entry.arch == SUPPLIED:
            model = config.supplied[name]
            models[name] = model.to(device).eval()
            provenance[name] = {"sha256": state_sha256(model), "arch": type(model).__name__,
                                "origin": "supplied by the caller"}
        elif entry.method:
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
            spec = ModelSpec(name=name, arch=entry.arch, checkpoint=entry.checkpoint, recipe=recipe, seed=entry.seed,
                             threat_model=entry.threat_model)
            model, provenance[name] = resolve_model(spec, data, config.models_dir, config.cache_dir, device=device,
                                                    progress=config.progress)
            models[name] = model.to(device).eval()
        provenance[name] = {**provenance[name], "about": entry.source}
        if entry.licence and not provenance[name].get("license"):  # the file's own licence comes first
            provenance[name]["license"] = entry.licence
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
                                     disable=None if progress else True)]).contiguous()
    if not torch.isfinite(x_adv).all():
        raise ValueError(f"{type(attack).__name__} produced NaN or infinite pixels")
    return x_adv


def failed(message: str) -> dict:
    """The record of a cell that failed, with why."""
    return {"status": "failed", "error": message}


def describe_error(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
