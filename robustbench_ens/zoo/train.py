"""Training of zoo models: SGD with a per-iteration schedule and standard CIFAR augmentation.

Deterministic for a given seed: the data order and the augmentation draw from a private
``torch.Generator``, and any randomness inside the model (dropout) runs under a forked,
seeded global RNG, so the caller's RNG state is never touched.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..metrics import accuracy

SCHEDULES = ("cosine", "onecycle", "constant", "cyclical")


@dataclass(frozen=True)
class TrainRecipe:
    """Hyper-parameters of one training run; ``n_train=None`` means the whole training split.

    ``schedule``: ``"cosine"`` (annealed to 0 over the run), ``"onecycle"``, ``"constant"``, or
    ``"cyclical"``: ``cycles`` cosine cycles, each restarting at ``lr`` (cSG-MCMC's schedule).
    """

    epochs: int = 30
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    crop_padding: int = 4
    flip: bool = True
    label_smoothing: float = 0.0
    n_train: int | None = None
    cycles: int = 1

    def __post_init__(self):
        problems = []
        if not isinstance(self.epochs, int) or self.epochs < 1:
            problems.append(f"epochs must be an integer >= 1, got {self.epochs!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            problems.append(f"batch_size must be an integer >= 1, got {self.batch_size!r}")
        if not self.lr > 0:
            problems.append(f"lr must be > 0, got {self.lr!r}")
        if not 0 <= self.momentum < 1:
            problems.append(f"momentum must lie in [0, 1), got {self.momentum!r}")
        if self.nesterov and self.momentum == 0:
            problems.append("nesterov=True needs momentum > 0")
        if not self.weight_decay >= 0:
            problems.append(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if self.schedule not in SCHEDULES:
            problems.append(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if not isinstance(self.crop_padding, int) or self.crop_padding < 0:
            problems.append(f"crop_padding must be an integer >= 0, got {self.crop_padding!r}")
        if not 0 <= self.label_smoothing < 1:
            problems.append(f"label_smoothing must lie in [0, 1), got {self.label_smoothing!r}")
        if not isinstance(self.cycles, int) or self.cycles < 1 or self.cycles > self.epochs:
            problems.append(f"cycles must be an integer in [1, epochs], got {self.cycles!r}")
        if self.n_train is not None and (not isinstance(self.n_train, int) or self.n_train < 1):
            problems.append(f"n_train must be None (all) or an integer >= 1, got {self.n_train!r}")
        if problems:
            raise ValueError("bad training recipe: " + "; ".join(problems))

    def to_dict(self) -> dict:
        """The recipe as a dict; ``cycles`` only where it is not 1, so that the recipes (and the derived models'
        cache keys) of everything trained before it existed stay as they were."""
        values = asdict(self)
        if values["cycles"] == 1:
            del values["cycles"]
        return values

    @classmethod
    def from_dict(cls, values: dict) -> TrainRecipe:
        """Build from a mapping (e.g. a suite file); unknown keys are a ValueError."""
        return recipe_from_dict(cls, values, "training recipe")


def recipe_from_dict(cls, values: dict, what: str):
    """The dataclass ``cls`` built from ``values``; a key that is not one of its fields is a ValueError."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown {what} keys {unknown} (known: {', '.join(sorted(known))})")
    return cls(**values)


def augment(x: torch.Tensor, padding: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """Random crop (zero padding, random offset per image) and random horizontal flip, batched."""
    n, _, height, width = x.shape
    if padding:
        padded = F.pad(x, (padding, padding, padding, padding))
        dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
        dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
        rows = (dy[:, None] + torch.arange(height)[None, :])[:, None, :, None]  # [n, 1, H, 1]
        cols = (dx[:, None] + torch.arange(width)[None, :])[:, None, None, :]   # [n, 1, 1, W]
        x = padded[torch.arange(n)[:, None, None, None], torch.arange(x.shape[1])[None, :, None, None], rows, cols]
    if flip:
        mask = torch.rand(n, generator=generator) < 0.5
        x = torch.where(mask[:, None, None, None], x.flip(3), x)
    return x


def log_epoch(bar, progress: bool, what: str, epoch: int, epochs: int, started: float, summary: str) -> None:
    """Where the bar is hidden (the output is a log file) but progress was asked for: one line per finished epoch."""
    if progress and bar.disable:
        print(f"[{what}] epoch {epoch + 1}/{epochs}, {summary}, {time.perf_counter() - started:.0f} s", flush=True)


def evaluate_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500,
                      device: str | torch.device = "cpu") -> float:
    """Fraction of ``x`` that ``model`` (in eval mode) classifies as ``y``."""
    return accuracy(model, x, y, batch_size, device)


def _scheduler(optimizer: torch.optim.Optimizer, recipe: TrainRecipe, total_steps: int):
    if recipe.schedule == "constant":  # e.g. LGV's high constant learning rate
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    if recipe.schedule == "cosine":
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps)))
    if recipe.schedule == "cyclical":  # Zhang et al., ICLR 2020: a cosine from lr to 0 in each of the cycles
        cycle = total_steps // recipe.cycles
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * (step % cycle) / cycle)))
    # One-cycle (Smith & Topin 2019): warm up to lr over 30 % of the steps, then anneal; momentum stays fixed.
    return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=recipe.lr, total_steps=total_steps,
                                               cycle_momentum=False)


def train_model(model: nn.Module, data, recipe: TrainRecipe, seed: int = 0, device: str | torch.device = "cpu",
                progress: bool = True, after_step: Callable[[int], None] | None = None,
                adjust_gradients: Callable[..., None] | None = None) -> dict:
    """Train ``model`` in place on ``data.train()`` (first ``recipe.n_train`` points) and test it.

    ``after_step(step)``, if given, is called after every optimiser step (``step`` counts from 0).
    ``adjust_gradients(model, inputs, targets, step=..., lr=...)``, if given, is called between the
    backward pass and the optimiser step and may change the parameters' ``.grad`` (MBA's flatness
    term, cSGLD's Langevin noise); ``lr`` is the step's learning rate.

    Returns ``{"clean_acc", "train_time_s", "epochs", "n_train", "final_loss", "final_train_acc"}``
    where ``clean_acc`` is the accuracy on the whole test split; the model is left in eval mode.
    """
    if not isinstance(recipe, TrainRecipe):
        raise TypeError(f"recipe must be a TrainRecipe, got {type(recipe).__name__}")
    x_train, y_train = data.train()
    if recipe.n_train is not None:
        if recipe.n_train > len(x_train):
            raise ValueError(f"recipe.n_train={recipe.n_train} exceeds the {len(x_train)} training points")
        x_train, y_train = x_train[:recipe.n_train], y_train[:recipe.n_train]
    n = len(x_train)
    steps_per_epoch = math.ceil(n / recipe.batch_size)
    total_steps = recipe.epochs * steps_per_epoch

    model.to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                                nesterov=recipe.nesterov, weight_decay=recipe.weight_decay)
    scheduler = _scheduler(optimizer, recipe, total_steps)
    generator = torch.Generator().manual_seed(seed)
    device = torch.device(device)
    rng_devices = [device] if device.type == "cuda" else []

    start = time.perf_counter()
    what = f"train {getattr(model, 'arch', '')}".strip()
    bar = tqdm(total=total_steps, desc=what, unit="it", leave=False,
               disable=None if progress else True)  # None: hidden where the output is not a terminal
    loss_sum = correct = seen = 0
    with torch.random.fork_rng(devices=rng_devices):
        torch.manual_seed(seed)  # only for randomness inside the model (e.g. dropout)
        for epoch in range(recipe.epochs):
            model.train()
            loss_sum = correct = seen = 0
            order = torch.randperm(n, generator=generator)
            for step in range(steps_per_epoch):
                index = order[step * recipe.batch_size:(step + 1) * recipe.batch_size]
                inputs = augment(x_train[index], recipe.crop_padding, recipe.flip, generator).to(device)
                targets = y_train[index].to(device)
                logits = model(inputs)
                loss = F.cross_entropy(logits, targets, label_smoothing=recipe.label_smoothing)
                if not torch.isfinite(loss):
                    bar.close()
                    raise RuntimeError(f"training diverged (loss {loss.item()}) at epoch {epoch + 1}; lower lr")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if adjust_gradients is not None:
                    adjust_gradients(model, inputs, targets, step=epoch * steps_per_epoch + step,
                                     lr=optimizer.param_groups[0]["lr"])
                optimizer.step()
                scheduler.step()
                if after_step is not None:
                    after_step(epoch * steps_per_epoch + step)
                loss_sum += loss.item() * len(index)
                correct += (logits.argmax(1) == targets).sum().item()
                seen += len(index)
                bar.update(1)
                bar.set_postfix(epoch=f"{epoch + 1}/{recipe.epochs}", loss=f"{loss_sum / seen:.3f}",
                                acc=f"{correct / seen:.3f}", refresh=False)
            log_epoch(bar, progress, what, epoch, recipe.epochs, start,
                      f"loss {loss_sum / seen:.3f}, train accuracy {correct / seen:.3f}")
    bar.close()
    train_time = time.perf_counter() - start

    model.eval()
    x_test, y_test = data.test()
    clean_acc = evaluate_accuracy(model, x_test, y_test, device=device)
    return {"clean_acc": clean_acc, "train_time_s": round(train_time, 3), "epochs": recipe.epochs,
            "n_train": n, "final_loss": loss_sum / max(seen, 1), "final_train_acc": correct / max(seen, 1)}
