"""MBA surrogates: a fine-tuned model's weight distribution, sampled (Li, Guo & Chen, "Making Substitute
Models More Bayesian Can Enhance Transferability of Adversarial Examples", ICLR 2023).

The trained model is fine-tuned with SGD on a loss that favours flat minima, while the first and
second moments of its weights are collected along the way (SWAG-diagonal); the attack then draws
models from the Gaussian N(mean, scale^2 * (var + beta)) and takes one I-FGSM step on a fresh draw
at every iteration. Here the draws are made once, ``n_samples`` of them, and cached as a collection:
``LGV(collection, steps=n_samples, alpha=eps/8)`` uses each once, in a shuffled order, which is the
same attack in distribution.

One fine-tuning step (the official code, qizhangli/MoreBayesian-attack, ``finetune.py``), with g the
loss gradient at w and r = ``radius``:

    g+  = gradient at w + r * g / ||g||           (||.||: over all parameters together)
    w  <- SGD step with  g + (flatness / r) * (g+ - g)

Defaults are that code's: 10 epochs, constant lr 0.05, momentum 0.9, weight decay 5e-4, r = 0.1,
flatness (its ``lam``) 1, 300 moment updates spread evenly over the steps, BatchNorm statistics
of the mean model recomputed on 10 % of the training data, scale 1.5, beta 0; 50 draws (the
paper attacks for 50 iterations). Its batch of 1024 ImageNet images becomes the zoo's 128 here.
"""
from __future__ import annotations

import copy
import json
import math

import torch
import torch.nn.functional as F

from attacks.checks import positive_int, positive_number

from .derived import Method, register_method, with_defaults
from .normalize import Normalized
from .train import TrainRecipe, augment, train_model

MBA_RECIPE = TrainRecipe(epochs=10, lr=0.05, momentum=0.9, nesterov=False, weight_decay=5e-4, schedule="constant")
MBA_DEFAULTS = {"n_samples": 50, "scale": 1.5, "beta": 0.0, "radius": 0.1, "flatness": 1.0, "moment_updates": 300,
                "bn_fraction": 0.1}


def collect_mba(model: Normalized, data, recipe: TrainRecipe = MBA_RECIPE, *, n_samples: int = 50,
                scale: float = 1.5, beta: float = 0.0, radius: float = 0.1, flatness: float = 1.0,
                moment_updates: int = 300, bn_fraction: float = 0.1, seed: int = 0,
                device: str | torch.device = "cpu", progress: bool = True) -> list[Normalized]:
    """``n_samples`` models drawn from the MBA posterior of the trained ``model`` (left unchanged), in eval mode."""
    walker = copy.deepcopy(model)
    n_train = len(data.y_train) if recipe.n_train is None else recipe.n_train
    total_steps = recipe.epochs * math.ceil(n_train / recipe.batch_size)
    interval = max(1, total_steps // moment_updates)
    moments = _Moments(walker)

    def collect(step: int) -> None:
        if step % interval == 0:
            moments.update(walker)

    def flat_gradient(net, inputs, targets, *, step, lr):
        flatness_gradient(net, inputs, targets, radius, flatness)

    train_model(walker, data, recipe, seed=seed, device=device, progress=progress, after_step=collect,
                adjust_gradients=flat_gradient)
    mean_model = moments.mean_model(walker)
    recompute_batchnorm(mean_model, data, recipe, bn_fraction, seed, device)
    return moments.draw(mean_model, n_samples, scale, beta, seed)


def flatness_gradient(net: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor, radius: float,
                      flatness: float) -> None:
    """Replaces the loss gradient g in the parameters' ``.grad`` by g + (flatness / radius) (g+ - g), g+ the gradient
    at the parameters moved by ``radius`` along g / ||g|| (one more forward and backward pass); parameters restored."""
    params = [p for p in net.parameters() if p.grad is not None]
    grads = [p.grad.detach().clone() for p in params]
    shift = float(radius / (torch.sqrt(sum(g.square().sum() for g in grads)) + 1e-20))
    originals = [p.detach().clone() for p in params]  # restored by copy: p + d - d is not p in floating point
    with torch.no_grad():
        for p, g in zip(params, grads):
            p.add_(g, alpha=shift)
    shifted = torch.autograd.grad(F.cross_entropy(net(inputs), targets), params)
    with torch.no_grad():
        for p, original, g, g_shifted in zip(params, originals, grads, shifted):
            p.copy_(original)
            p.grad = g + (flatness / radius) * (g_shifted - g)


class _Moments:
    """Running first and second moments of a model's parameters (SWAG-diagonal)."""

    def __init__(self, model: torch.nn.Module):
        self.count = 0
        self.mean = [torch.zeros_like(p, device="cpu") for p in model.parameters()]
        self.square = [torch.zeros_like(p, device="cpu") for p in model.parameters()]

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        n = self.count
        for mean, square, p in zip(self.mean, self.square, model.parameters()):
            value = p.detach().cpu()
            mean.mul_(n / (n + 1)).add_(value, alpha=1 / (n + 1))
            square.mul_(n / (n + 1)).add_(value.square(), alpha=1 / (n + 1))
        self.count += 1

    @torch.no_grad()
    def mean_model(self, model: Normalized) -> Normalized:
        out = copy.deepcopy(model)
        for p, mean in zip(out.parameters(), self.mean):
            p.copy_(mean)
        return out

    @torch.no_grad()
    def draw(self, mean_model: Normalized, n: int, scale: float, beta: float, seed: int) -> list[Normalized]:
        generator = torch.Generator().manual_seed(seed)
        std = [torch.sqrt(torch.clamp(square - mean.square(), min=1e-30) + beta)
               for mean, square in zip(self.mean, self.square)]
        samples = []
        for _ in range(n):
            sample = copy.deepcopy(mean_model)
            for p, mean, s in zip(sample.parameters(), self.mean, std):
                p.copy_(mean + scale * s * torch.randn(mean.shape, generator=generator))
            samples.append(sample.eval())
        return samples


@torch.no_grad()
def recompute_batchnorm(model: torch.nn.Module, data, recipe: TrainRecipe, fraction: float, seed: int,
                        device) -> None:
    """BatchNorm running statistics recomputed as the plain average over ``fraction`` of the (augmented) training
    data, as SWA and SWAG do for averaged weights; a model without BatchNorm is left as it is."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches
    x_train, _ = data.train()
    generator = torch.Generator().manual_seed(seed)
    count = max(1, int(len(x_train) * fraction))
    order = torch.randperm(len(x_train), generator=generator)[:count]
    model.to(device).train()
    for start in range(0, count, recipe.batch_size):
        batch = augment(x_train[order[start:start + recipe.batch_size]], recipe.crop_padding, recipe.flip, generator)
        model(batch.to(device))
    for m, momentum in zip(norms, saved):
        m.momentum = momentum
    model.eval()


def _settings(params: dict, train: dict) -> dict:
    settings = with_defaults("MBA", params, MBA_DEFAULTS)
    for key in ("n_samples", "moment_updates"):
        positive_int(settings[key], f"MBA's {key}")
    for key in ("scale", "beta", "radius", "flatness", "bn_fraction"):
        settings[key] = positive_number(settings[key], f"MBA's {key}")
    if settings["radius"] == 0 or not 0 < settings["bn_fraction"] <= 1:
        raise ValueError("MBA's radius must be > 0 and bn_fraction in (0, 1]")
    recipe = TrainRecipe.from_dict({**MBA_RECIPE.to_dict(), **train})
    return {**settings, "recipe": recipe.to_dict()}


def _build(bases: list[Normalized], data, settings: dict, *, seed: int, device, progress: bool,
           work_dir) -> tuple[list[Normalized], dict]:
    options = {key: value for key, value in settings.items() if key != "recipe"}
    return collect_mba(bases[0], data, TrainRecipe.from_dict(settings["recipe"]), seed=seed, device=device,
                       progress=progress, **options), {}


def _describe(manifest: dict) -> str:
    settings = manifest["settings"]
    return (f"MBA samples (Li et al., ICLR 2023) drawn here: {manifest['n_models']} models from the SWAG-diagonal "
            f"Gaussian (scale {settings['scale']}) of the base model (sha256 {manifest['base_sha256'][0][:12]}) "
            "fine-tuned with the "
            f"flatness term (radius {settings['radius']}, weight {settings['flatness']}), recipe "
            f"{json.dumps(settings['recipe'], sort_keys=True)}")


register_method("mba", Method(settings=_settings, build=_build, describe=_describe))
