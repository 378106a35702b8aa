"""Fine-tuning: copies of trained models trained further on the training split of the suite's data.

Registered as the derived-model method ``finetune``: ``from`` names one or more trained
models, ``train`` the recipe (the zoo's :class:`~robustbench_ens.zoo.train.TrainRecipe`).
It is the control for a defense trained from the same models: it separates what the
defense's own loss does from what further training on the same data does.
"""
from __future__ import annotations

import copy
import json

from .derived import Method, register_method
from .normalize import Normalized
from .train import TrainRecipe, train_model


def _settings(params: dict, train: dict) -> dict:
    if params:
        raise ValueError(f"finetune takes no params (got {sorted(params)}); set its recipe under train")
    return {"recipe": TrainRecipe.from_dict(train).to_dict()}


def _build(bases: list[Normalized], data, settings: dict, *, seed: int, device, progress: bool,
           work_dir) -> tuple[list[Normalized], dict]:
    recipe = TrainRecipe.from_dict(settings["recipe"])
    models, summaries = [], []
    for index, base in enumerate(bases):
        model = copy.deepcopy(base)
        summaries.append(train_model(model, data, recipe, seed=seed + index, device=device, progress=progress))
        models.append(model)
    return models, {"training": summaries}


def _describe(manifest: dict) -> str:
    accuracy = ", ".join(f"{100 * s['clean_acc']:.1f} %" for s in manifest.get("training", []))
    return (f"fine-tuned here: {manifest['n_models']} trained model(s) (sha256 "
            f"{', '.join(h[:12] for h in manifest['base_sha256'])}) trained further with recipe "
            f"{json.dumps(manifest['settings']['recipe'], sort_keys=True)} (clean acc {accuracy})")


register_method("finetune", Method(settings=_settings, build=_build, describe=_describe, bases=(1, None)))
