"""cSGLD surrogates: posterior samples of a Bayesian neural network (Gubri, Cordy, Papadakis & Le Traon,
"Efficient and Transferable Adversarial Examples from Bayesian Neural Networks", UAI 2022).

Cyclical stochastic-gradient Langevin dynamics (Zhang et al., "Cyclical Stochastic Gradient MCMC
for Bayesian Deep Learning", ICLR 2020): SGD without momentum whose learning rate follows a cosine
from ``lr`` to 0 in each of ``cycles`` cycles; in the last ``noise_epochs`` epochs of a cycle
Gaussian noise is added to every step, and at the end of each of the last ``samples_per_cycle``
epochs the weights are kept as a posterior sample. The noisy step, with N training points and
temperature T (1/N by default, as in the reference code):

    w <- w - lr * (grad + weight_decay * w) + sqrt(2 * lr * T / N) * eps,    eps ~ N(0, I)

Defaults are Gubri et al.'s CIFAR-10 configuration (its scripts over Zhang et al.'s code): cycles of
50 epochs from lr 0.5, 3 samples and 3 noise epochs per cycle, batch 64, weight decay 5e-4, from a
fresh initialisation; 5 cycles here (250 epochs, 15 samples; their main runs use more cycles). The
samples are attacked as LGV attacks its snapshots (``LGV(samples)``). ``warm_start=True`` starts
from the base model's trained weights instead (cheaper; not the paper's method).
"""
from __future__ import annotations

import copy
import json
import math

import torch

from .derived import Method, register_method, with_defaults
from .normalize import Normalized
from .registry import create_model
from .train import TrainRecipe, train_model

CSGLD_RECIPE = TrainRecipe(epochs=250, batch_size=64, lr=0.5, momentum=0.0, nesterov=False, weight_decay=5e-4,
                           schedule="cyclical", cycles=5)
CSGLD_DEFAULTS = {"samples_per_cycle": 3, "noise_epochs": 3, "temperature": None, "warm_start": False}


def collect_csgld(model: Normalized, data, recipe: TrainRecipe = CSGLD_RECIPE, *, samples_per_cycle: int = 3,
                  noise_epochs: int = 3, temperature: float | None = None, warm_start: bool = False, seed: int = 0,
                  device: str | torch.device = "cpu", progress: bool = True) -> list[Normalized]:
    """``recipe.cycles * samples_per_cycle`` cSGLD samples of ``model``'s architecture (``model`` is left unchanged)."""
    cycle_epochs = _check(recipe, samples_per_cycle, noise_epochs)
    walker = copy.deepcopy(model) if warm_start else \
        create_model(model.arch, mean=model.normalize_mean, std=model.normalize_std, seed=seed)
    n_train = len(data.y_train) if recipe.n_train is None else recipe.n_train
    steps_per_epoch = math.ceil(n_train / recipe.batch_size)
    temperature = 1 / n_train if temperature is None else temperature
    samples: list[Normalized] = []

    def epoch_in_cycle(step: int) -> int:
        return (step // steps_per_epoch) % cycle_epochs

    def langevin_noise(net, inputs, targets, *, step, lr):
        if epoch_in_cycle(step) >= cycle_epochs - noise_epochs and lr > 0:
            # a gradient term of std sqrt(2 T / (lr N)): SGD's step of lr turns it into noise of std sqrt(2 lr T / N)
            std = math.sqrt(2 * temperature / (lr * n_train))
            for p in net.parameters():
                if p.grad is not None:
                    p.grad.add_(torch.randn_like(p), alpha=std)

    def collect(step: int) -> None:
        if (step + 1) % steps_per_epoch == 0 and epoch_in_cycle(step) >= cycle_epochs - samples_per_cycle:
            samples.append(copy.deepcopy(walker).eval())

    train_model(walker, data, recipe, seed=seed, device=device, progress=progress, after_step=collect,
                adjust_gradients=langevin_noise)
    return samples


def _check(recipe: TrainRecipe, samples_per_cycle, noise_epochs) -> int:
    """The epochs of a cycle; a ValueError unless the recipe is cyclical and the per-cycle counts fit in a cycle."""
    if recipe.schedule != "cyclical" or recipe.epochs % recipe.cycles:
        raise ValueError(f"cSGLD needs schedule 'cyclical' with epochs a multiple of cycles; got schedule "
                         f"{recipe.schedule!r}, {recipe.epochs} epochs, {recipe.cycles} cycles")
    cycle_epochs = recipe.epochs // recipe.cycles
    for name, value in (("samples_per_cycle", samples_per_cycle), ("noise_epochs", noise_epochs)):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= cycle_epochs:
            raise ValueError(f"cSGLD's {name} must be an integer in [0, {cycle_epochs}] (a cycle's epochs), "
                             f"got {value!r}")
    if samples_per_cycle == 0:
        raise ValueError("cSGLD's samples_per_cycle must be at least 1")
    return cycle_epochs


def _settings(params: dict, train: dict) -> dict:
    settings = with_defaults("cSGLD", params, CSGLD_DEFAULTS)
    temperature = settings["temperature"]
    if temperature is not None and (isinstance(temperature, bool) or not isinstance(temperature, (int, float))
                                    or not temperature > 0):
        raise ValueError(f"cSGLD's temperature must be a number > 0 (default 1/N), got {temperature!r}")
    if not isinstance(settings["warm_start"], bool):
        raise ValueError(f"cSGLD's warm_start must be true or false, got {settings['warm_start']!r}")
    recipe = TrainRecipe.from_dict({**CSGLD_RECIPE.to_dict(), **train})
    _check(recipe, settings["samples_per_cycle"], settings["noise_epochs"])
    return {**settings, "recipe": recipe.to_dict()}


def _build(bases: list[Normalized], data, settings: dict, *, seed: int, device, progress: bool,
           work_dir) -> tuple[list[Normalized], dict]:
    options = {key: value for key, value in settings.items() if key != "recipe"}
    return collect_csgld(bases[0], data, TrainRecipe.from_dict(settings["recipe"]), seed=seed, device=device,
                         progress=progress, **options), {}


def _describe(manifest: dict) -> str:
    settings = manifest["settings"]
    start = "the base model's weights" if settings["warm_start"] else "a fresh initialisation of the base's arch"
    return (f"cSGLD posterior samples collected here: {manifest['n_models']} samples ({settings['samples_per_cycle']} "
            f"per cycle) from {start} (base sha256 {manifest['base_sha256'][0][:12]}), recipe "
            f"{json.dumps(settings['recipe'], sort_keys=True)}")


register_method("csgld", Method(settings=_settings, build=_build, describe=_describe))
