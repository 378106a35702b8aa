"""LGV surrogates: weights collected along an SGD trajectory at a high constant learning rate.

LGV (Gubri et al., "LGV: Boosting Adversarial Example Transferability from Large Geometric
Vicinity", ECCV 2022) starts from a trained model, runs SGD at a constant learning rate
higher than the end of its training, and keeps a copy of the weights ``samples_per_epoch``
times per epoch; an attack on the collected models as an ensemble transfers better than
one on the single model. It is the cheap relative of the cSGLD posterior samples of
"Efficient and Transferable Adversarial Examples from Bayesian Neural Networks" (Gubri et
al., UAI 2022). Defaults are LGV's: 10 epochs, lr 0.05, momentum 0.9, weight decay 1e-4,
4 samples per epoch (40 models).
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
import time
from pathlib import Path

import torch

from .. import atomic
from .checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from .normalize import Normalized
from .train import TrainRecipe, train_model

LGV_RECIPE = TrainRecipe(epochs=10, lr=0.05, momentum=0.9, nesterov=False, weight_decay=1e-4, schedule="constant")


def collect_lgv(model: Normalized, data, recipe: TrainRecipe = LGV_RECIPE, samples_per_epoch: int = 4,
                seed: int = 0, device: str | torch.device = "cpu", progress: bool = True) -> list[Normalized]:
    """The LGV collection from the trained ``model`` (left unchanged), each member in eval mode.

    ``recipe.schedule`` must be ``"constant"``; ``epochs * samples_per_epoch`` models are
    collected, at evenly spaced steps of each epoch.
    """
    if recipe.schedule != "constant":
        raise ValueError(f"LGV samples along a constant learning rate; got schedule {recipe.schedule!r}")
    if not isinstance(samples_per_epoch, int) or samples_per_epoch < 1:
        raise ValueError(f"samples_per_epoch must be an integer >= 1, got {samples_per_epoch!r}")
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


def lgv_cache_key(base_sha256: str, recipe: TrainRecipe, samples_per_epoch: int, seed: int, data_sha256: str) -> str:
    """First 16 hex digits of the sha256 of what determines a collection."""
    payload = {"base_sha256": base_sha256, "recipe": recipe.to_dict(), "samples_per_epoch": samples_per_epoch,
               "seed": seed, "data_sha256": data_sha256}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def resolve_lgv(name: str, base: Normalized, base_sha256: str, data, cache_dir: Path, *,
                recipe: TrainRecipe = LGV_RECIPE, samples_per_epoch: int = 4, seed: int = 0,
                device: str | torch.device = "cpu", progress: bool = True) -> tuple[list[Normalized], dict]:
    """The LGV collection of ``base``: read from ``cache_dir`` if collected before, else collected and cached.

    The collection is a folder ``<name>-<key>/`` of member checkpoints (each hash-checked on
    load) and a ``collection.json`` written last, so an interrupted collection is never read
    as complete. Returns ``(members, provenance)``; provenance's ``sha256`` hashes the
    members' hashes in order.
    """
    key = lgv_cache_key(base_sha256, recipe, samples_per_epoch, seed, data.sha256)
    folder = Path(cache_dir) / f"{name}-{key}"
    manifest = folder / "collection.json"
    if manifest.is_file():
        record = json.loads(manifest.read_text())
        try:
            members = [load_checkpoint(folder / f"{stem}.safetensors", device=device)[0] for stem in record["members"]]
        except CheckpointError as error:
            print(f"[zoo] {name}: cached collection {folder} is unusable ({error}); collecting again")
        else:
            print(f"[zoo] {name}: loaded {len(members)} cached LGV members from {folder}")
            return members, {**record, "origin": "cache", "path": str(folder)}

    print(f"[zoo] {name}: collecting LGV members of {base.arch} ({recipe.epochs} epochs x {samples_per_epoch}) "
          f"into {folder}")
    started = time.perf_counter()
    members = collect_lgv(base, data, recipe, samples_per_epoch=samples_per_epoch, seed=seed, device=device,
                          progress=progress)
    hashes, stems = [], []
    for index, member in enumerate(members):
        stem = f"member_{index:03d}"
        save_checkpoint(member, folder / stem, {"name": f"{name}[{index}]", "lgv_index": index})
        hashes.append(json.loads((folder / f"{stem}.json").read_text())["sha256"])
        stems.append(stem)
    record = {"name": name, "arch": base.arch, "kind": "lgv", "base_sha256": base_sha256,
              "recipe": recipe.to_dict(), "samples_per_epoch": samples_per_epoch, "seed": seed,
              "data_sha256": data.sha256, "cache_key": key, "n_models": len(members), "members": stems,
              "member_sha256": hashes, "sha256": hashlib.sha256("".join(hashes).encode()).hexdigest(),
              "collect_time_s": round(time.perf_counter() - started, 3), "device": str(device),
              "torch": torch.__version__}
    atomic.write_text(manifest, json.dumps(record, indent=2, sort_keys=True) + "\n")
    return members, {**record, "origin": "trained", "path": str(folder)}
