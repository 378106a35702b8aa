"""LGV surrogates: weights collected along an SGD trajectory at a high constant learning rate.

LGV (Gubri et al., "LGV: Boosting Adversarial Example Transferability from Large Geometric
Vicinity", ECCV 2022) starts from a trained model, runs SGD at a constant learning rate
higher than the end of its training, and keeps a copy of the weights ``samples_per_epoch``
times per epoch; an attack on the collected models as an ensemble transfers better than
one on the single model. It is the cheap relative of the cSGLD posterior samples of
"Efficient and Transferable Adversarial Examples from Bayesian Neural Networks" (Gubri et
al., UAI 2022). Defaults are LGV's: 10 epochs, lr 0.05, momentum 0.9, weight decay 1e-4,
4 samples per epoch (40 models). A suite declares a collection as the derived model
``method = "lgv"``, ``from = [<base>]``, ``params = { samples_per_epoch = 4 }``.
"""
from __future__ import annotations

import copy
import json
import math

import torch

from .derived import Method, register_method
from .normalize import Normalized
from .train import TrainRecipe, train_model

LGV_RECIPE = TrainRecipe(epochs=10, lr=0.05, momentum=0.9, nesterov=False, weight_decay=1e-4, schedule="constant")


def collect_lgv(model: Normalized, data, recipe: TrainRecipe = LGV_RECIPE, samples_per_epoch: int = 4,
                seed: int = 0, device: str | torch.device = "cpu", progress: bool = True) -> list[Normalized]:
    """The LGV collection from the trained ``model`` (left unchanged), each member in eval mode.

    ``recipe.schedule`` must be ``"constant"``; ``epochs * samples_per_epoch`` models are
    collected, at evenly spaced steps of each epoch.
    """
    _check(recipe, samples_per_epoch)
    n_train = len(data.y_train) if recipe.n_train is None else recipe.n_train
    steps_per_epoch = math.ceil(n_train / recipe.batch_size)
    if samples_per_epoch > steps_per_epoch:
        raise ValueError(f"samples_per_epoch={samples_per_epoch} exceeds the {steps_per_epoch} steps of an epoch")
    interval = steps_per_epoch // samples_per_epoch
    walker = copy.deepcopy(model)
    members: list[Normalized] = []

    def collect(step: int) -> None:
        if (step % steps_per_epoch + 1) % interval == 0 and (step % steps_per_epoch) // interval < samples_per_epoch:
            members.append(copy.deepcopy(walker).eval())

    train_model(walker, data, recipe, seed=seed, device=device, progress=progress, after_step=collect)
    return members


def _settings(params: dict, train: dict) -> dict:
    samples_per_epoch = params.pop("samples_per_epoch", 4)
    if params:
        raise ValueError(f"unknown LGV params {sorted(params)} (known: samples_per_epoch)")
    recipe = TrainRecipe.from_dict({**LGV_RECIPE.to_dict(), **train})
    _check(recipe, samples_per_epoch)
    return {"recipe": recipe.to_dict(), "samples_per_epoch": samples_per_epoch}


def _check(recipe: TrainRecipe, samples_per_epoch) -> None:
    """A ValueError unless the recipe's learning rate is constant and ``samples_per_epoch`` an integer >= 1."""
    if recipe.schedule != "constant":
        raise ValueError(f"LGV samples along a constant learning rate; got schedule {recipe.schedule!r}")
    if isinstance(samples_per_epoch, bool) or not isinstance(samples_per_epoch, int) or samples_per_epoch < 1:
        raise ValueError(f"samples_per_epoch must be an integer >= 1, got {samples_per_epoch!r}")


def _build(bases: list[Normalized], data, settings: dict, *, seed: int, device, progress: bool,
           work_dir) -> tuple[list[Normalized], dict]:
    members = collect_lgv(bases[0], data, TrainRecipe.from_dict(settings["recipe"]),
                          samples_per_epoch=settings["samples_per_epoch"], seed=seed, device=device, progress=progress)
    return members, {}


def _describe(manifest: dict) -> str:
    settings = manifest["settings"]
    return (f"LGV collection (Gubri et al., ECCV 2022) collected here: {manifest['n_models']} members, "
            f"{settings['samples_per_epoch']} per epoch along SGD from the base model (sha256 "
            f"{manifest['base_sha256'][0][:12]}), "
            f"recipe {json.dumps(settings['recipe'], sort_keys=True)}")


register_method("lgv", Method(settings=_settings, build=_build, describe=_describe))
