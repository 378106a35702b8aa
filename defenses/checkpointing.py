"""Per-epoch checkpoints of an ensemble being trained: members, optimiser momentum, and a state file written last.

:func:`save_epoch` writes the members (hash-checked safetensors with provenance), every optimiser's state tensors
and ``state.json`` (epochs done, recipe, seed, history) atomically, in that order; :func:`resume_epoch` loads them
back if the recipe and seed match, so a resumed run continues exactly where the interrupted one stopped.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from robustbench_ens import atomic
from robustbench_ens.zoo.checkpoints import load_checkpoint, save_checkpoint

STATE_FILE = "state.json"


class EpochSchedule:
    """What the per-epoch training recipes (DVERGE's, the joint methods') share: checks of ``epochs``,
    ``batch_size`` and ``epoch_steps``, ``milestones`` as a tuple, the step learning-rate schedule and the number of
    batches an epoch takes."""

    def check_schedule(self, min_batch: int = 1) -> None:
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise ValueError(f"epochs must be an integer >= 1, got {self.epochs!r}")
        if self.epoch_steps is not None and (isinstance(self.epoch_steps, bool) or not isinstance(
                self.epoch_steps, int) or self.epoch_steps < 1):
            raise ValueError(f"epoch_steps must be None (a whole pass) or an integer >= 1, got {self.epoch_steps!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < min_batch:
            raise ValueError(f"batch_size must be an integer >= {min_batch}, got {self.batch_size!r}")
        object.__setattr__(self, "milestones", tuple(int(m) for m in self.milestones))

    def lr_at(self, epoch: int) -> float:
        """The step schedule: lr x gamma for every milestone reached (epochs count from 0)."""
        return self.lr * self.gamma ** sum(epoch >= m for m in self.milestones)

    def steps_per_epoch(self, n: int) -> int:
        """Batches per epoch on ``n`` training points: a whole pass, or its first ``epoch_steps`` batches (a compute
        budget: each epoch still shuffles all ``n`` points, so the batches are drawn from the whole split)."""
        whole = math.ceil(n / self.batch_size)
        return whole if self.epoch_steps is None else min(whole, self.epoch_steps)


def save_epoch(folder: Path, members, optimizers, recipe, seed: int, epochs_done: int, history: dict,
               method: str) -> None:
    """Everything needed to resume after ``epochs_done`` epochs, in ``folder`` (the state file last)."""
    folder = Path(folder)
    for index, member in enumerate(members):
        save_checkpoint(member, folder / f"member_{index}", {f"{method}_epoch": epochs_done, "seed": seed})
    tensors = {f"{i}.{k}.{name}": value.detach().cpu().contiguous()
               for i, optimizer in enumerate(optimizers)
               for k, p in enumerate(p for group in optimizer.param_groups for p in group["params"])
               for name, value in optimizer.state.get(p, {}).items() if torch.is_tensor(value) and value.dim() > 0}
    steps = {f"{i}.{k}": float(state["step"]) for i, optimizer in enumerate(optimizers)
             for k, p in enumerate(p for group in optimizer.param_groups for p in group["params"])
             if "step" in (state := optimizer.state.get(p, {}))}
    atomic.write_with(folder / "optimizers.safetensors", lambda tmp: save_file(tensors, str(tmp)))
    state = {"epochs_done": epochs_done, "recipe": asdict(recipe), "seed": seed, "history": history,
             "optimizer_steps": steps}
    atomic.write_text(folder / STATE_FILE, json.dumps(state, indent=2) + "\n")


def resume_epoch(folder: Path | None, members, optimizers, recipe, seed: int, history: dict, device,
                 method: str) -> int:
    """Loads the saved epoch from ``folder`` if it matches ``recipe`` and ``seed``; returns the epoch to start."""
    if folder is None or not (Path(folder) / STATE_FILE).is_file():
        return 0
    folder = Path(folder)
    state = json.loads((folder / STATE_FILE).read_text())
    if state["recipe"] != json.loads(json.dumps(asdict(recipe))) or state["seed"] != seed:
        raise ValueError(f"{folder} holds a {method} run with another recipe or seed; use another checkpoint_dir")
    for index, member in enumerate(members):
        saved, _ = load_checkpoint(folder / f"member_{index}.safetensors", device=device)
        member.net.load_state_dict(saved.net.state_dict())
    tensors = load_file(str(folder / "optimizers.safetensors"))
    steps = state.get("optimizer_steps", {})
    for i, optimizer in enumerate(optimizers):
        for k, p in enumerate(p for group in optimizer.param_groups for p in group["params"]):
            prefix = f"{i}.{k}."
            for key in (key for key in tensors if key.startswith(prefix)):
                optimizer.state[p][key[len(prefix):]] = tensors[key].to(device)
            if f"{i}.{k}" in steps:
                optimizer.state[p]["step"] = torch.tensor(steps[f"{i}.{k}"])
    history.update(state["history"])
    return int(state["epochs_done"])
