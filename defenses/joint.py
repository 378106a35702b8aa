"""Joint training of an ensemble on one objective (ADP, GAL, TRS): one optimiser over every member's parameters.

:func:`train_jointly` runs ``epochs`` passes over the training split (crop + flip augmentation), each batch one
optimiser step on ``objective(members, images, labels, progress)`` (``progress``: the epoch over the
recipe's epochs, from 0), with a progress bar, and, given a
``checkpoint_dir``, the members and the optimiser saved after every epoch so that a later call resumes where the
last one stopped (each epoch's randomness comes from a generator seeded by (seed, epoch)). The defaults are those
the official codes of ADP, GAL (both in DVERGE's repository) and TRS share: Adam, lr 0.001, eps 1e-7, weight decay
1e-4, batch 128, lr x0.1 at each milestone.

:func:`register_joint_method` makes a method a derived model of suites (``method = "adp"``, ``from`` the members to
start from, ``params`` its coefficients, ``train`` the recipe).
"""
from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from robustbench_ens.zoo.derived import Method, register_method, with_defaults
from robustbench_ens.zoo.normalize import Normalized
from robustbench_ens.zoo.train import augment, log_epoch, recipe_from_dict

from .checkpointing import EpochSchedule, resume_epoch, save_epoch

OPTIMIZERS = ("adam", "sgd")


@dataclass(frozen=True)
class JointRecipe(EpochSchedule):
    """Training hyper-parameters of a jointly trained ensemble; ``n_train=None`` uses every training point,
    ``epoch_steps=None`` a whole pass per epoch (an integer: that many batches of it, a compute budget)."""

    epochs: int = 200
    batch_size: int = 128
    optimizer: str = "adam"
    lr: float = 0.001
    momentum: float = 0.9  # SGD only
    weight_decay: float = 1e-4
    milestones: tuple[int, ...] = (100, 150)
    gamma: float = 0.1
    n_train: int | None = None
    epoch_steps: int | None = None

    def __post_init__(self):
        self.check_schedule(min_batch=2)  # TRS splits each batch in two
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if not self.lr > 0 or not self.weight_decay >= 0 or not 0 < self.gamma <= 1:
            raise ValueError("lr must be > 0, weight_decay >= 0 and gamma in (0, 1]")

    @classmethod
    def from_dict(cls, values: dict) -> JointRecipe:
        return recipe_from_dict(cls, values, "ensemble training recipe")

    def make_optimizer(self, params) -> torch.optim.Optimizer:
        if self.optimizer == "adam":
            return torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay, eps=1e-7)
        return torch.optim.SGD(params, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay)


Objective = Callable[..., tuple[torch.Tensor, dict[str, float]]]


def train_jointly(members: list[Normalized], data, objective: Objective, recipe: JointRecipe, *, method: str,
                  seed: int = 0, device: str | torch.device = "cpu", checkpoint_dir: Path | None = None,
                  progress: bool = True) -> dict:
    """Train ``members`` in place on ``objective(members, images, labels, epoch / epochs) -> (loss, terms)``; returns
    a summary (the mean loss and terms of each epoch, epoch times, the epoch it resumed from, the training time)."""
    if len(members) < 2:
        raise ValueError(f"{method} trains an ensemble: give it at least two members")
    x_train, y_train = data.train()
    if recipe.n_train is not None:
        x_train, y_train = x_train[:recipe.n_train], y_train[:recipe.n_train]
    n = len(x_train)
    steps_per_epoch = recipe.steps_per_epoch(n)
    for member in members:
        member.to(device)
    optimizers = [recipe.make_optimizer([p for member in members for p in member.parameters()])]
    history = {"losses": [], "terms": [], "epoch_time_s": []}
    start_epoch = resume_epoch(checkpoint_dir, members, optimizers, recipe, seed, history, device, method)
    started = time.perf_counter()
    bar = tqdm(total=(recipe.epochs - start_epoch) * steps_per_epoch, disable=None if progress else True, desc=method,
               unit="it", leave=False)
    for epoch in range(start_epoch, recipe.epochs):
        epoch_started, epoch_seed = time.perf_counter(), seed * 1_000_003 + epoch
        generator = torch.Generator().manual_seed(epoch_seed)
        for group in optimizers[0].param_groups:
            group["lr"] = recipe.lr_at(epoch)
        order = torch.randperm(n, generator=generator)
        totals: dict[str, float] = {}
        for member in members:
            member.train()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(epoch_seed)  # random starts inside an objective (TRS's PGD), dropout
            for step in range(steps_per_epoch):
                index = order[step * recipe.batch_size:(step + 1) * recipe.batch_size]
                images = augment(x_train[index], 4, True, generator).to(device)
                loss, terms = objective(members, images, y_train[index].to(device), epoch / recipe.epochs)
                if not torch.isfinite(loss):
                    raise RuntimeError(f"{method} training diverged (loss {loss.item()}) at epoch {epoch + 1}")
                optimizers[0].zero_grad(set_to_none=True)
                loss.backward()
                optimizers[0].step()
                for key, value in {"loss": loss.item(), **terms}.items():
                    totals[key] = totals.get(key, 0.0) + value / steps_per_epoch
                bar.update(1)
                bar.set_postfix(epoch=f"{epoch + 1}/{recipe.epochs}", loss=f"{loss.item():.3f}", refresh=False)
        log_epoch(bar, progress, method, epoch, recipe.epochs, started, f"loss {totals['loss']:.3f}")
        history["losses"].append(totals.pop("loss"))
        history["terms"].append(totals)
        history["epoch_time_s"].append(round(time.perf_counter() - epoch_started, 3))
        if checkpoint_dir is not None:
            save_epoch(checkpoint_dir, members, optimizers, recipe, seed, epoch + 1, history, method)
    bar.close()
    for member in members:
        member.eval()
    return {**history, "epochs": recipe.epochs, "resumed_from_epoch": start_epoch,
            "train_time_s": round(time.perf_counter() - started, 3)}


def register_joint_method(name: str, objective: Callable[..., Objective], defaults: dict, recipe: JointRecipe,
                          what: str) -> None:
    """Registers ``name`` as a derived-model method: copies of the ``from`` models trained jointly on
    ``objective(**params)`` (``defaults``: its coefficients), from ``recipe`` updated by the suite's ``train``."""

    def settings(params: dict, train: dict) -> dict:
        values = with_defaults(name, params, defaults)
        for key, value in values.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name}'s {key} must be a finite number, got {value!r}")
        return {"params": {k: float(v) for k, v in values.items()},
                "recipe": asdict(JointRecipe.from_dict({**asdict(recipe), **train}))}

    def build(bases, data, settings: dict, *, seed: int, device, progress: bool, work_dir):
        members = [copy.deepcopy(base) for base in bases]
        summary = train_jointly(members, data, objective(**settings["params"]), JointRecipe.from_dict(
            settings["recipe"]), method=name, seed=seed, device=device, checkpoint_dir=work_dir, progress=progress)
        return members, {"training": summary}

    def describe(manifest: dict) -> str:
        settings = manifest["settings"]
        return (f"{what}, trained here from {manifest['n_models']} members (sha256 "
                f"{', '.join(h[:12] for h in manifest['base_sha256'])}): {json.dumps(settings['params'])}, recipe "
                f"{json.dumps(settings['recipe'], sort_keys=True)}")

    register_method(name, Method(settings=settings, build=build, describe=describe, bases=(2, None)))
