"""From a suite's model entry to a ready model: pretrained file, cached training, or training now.

Order: (a) ``<checkpoint>.safetensors`` in ``models_dir`` (or a user's ``<checkpoint>.pt``, read
with ``weights_only=True``); (b) ``<name>-<key>.safetensors``
in ``cache_dir``, where ``key`` hashes everything that determines the weights (arch, recipe,
seed, normalisation, data hash); (c) train, then save into the cache. A model that a suite
names is thus trained once and reused afterwards. An arch ``"robustbench:<name>"`` or
``"timm:<name>"`` is instead a model that library loads with its own pretrained weights (:mod:`.external`).
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch

from ..suite import external_library
from .checkpoints import TORCH_SUFFIXES, CheckpointError, load_checkpoint, registered_arch, save_checkpoint
from .external import load_external
from .normalize import Normalized, as_channel_stats
from .registry import create_model, default_normalization
from .train import TrainRecipe, train_model

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")


@dataclass(frozen=True)
class ModelSpec:
    """One model of a suite: its name, architecture, optional pretrained file, and how to train it."""

    name: str
    arch: str
    checkpoint: str | None = None
    recipe: TrainRecipe = field(default_factory=TrainRecipe)
    seed: int = 0
    mean: tuple | None = None
    std: tuple | None = None
    threat_model: str = "Linf"  # the RobustBench leaderboard of a "robustbench:<name>" arch

    def __post_init__(self):
        if not isinstance(self.name, str) or not _NAME_RE.fullmatch(self.name):
            raise ValueError(f"model name {self.name!r} must be letters, digits, '_', '.', '+' or '-' "
                             "(it becomes a file name)")
        if self.checkpoint is not None and (not isinstance(self.checkpoint, str) or "/" in self.checkpoint
                                            or "\\" in self.checkpoint or self.checkpoint in ("", ".", "..")):
            raise ValueError(f"checkpoint {self.checkpoint!r} must be a file stem inside models_dir")
        if isinstance(self.recipe, dict):
            object.__setattr__(self, "recipe", TrainRecipe.from_dict(self.recipe))
        if not isinstance(self.recipe, TrainRecipe):
            raise TypeError(f"recipe must be a TrainRecipe or a dict, got {type(self.recipe).__name__}")
        for key in ("mean", "std"):
            value = getattr(self, key)
            if value is not None:
                object.__setattr__(self, key, as_channel_stats(value, key))

    def normalization(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """The effective (mean, std): the spec's own, else the architecture's default."""
        default_mean, default_std = default_normalization(self.arch)
        return (self.mean or default_mean), (self.std or default_std)


def cache_key(spec: ModelSpec, data_sha256: str) -> str:
    """First 16 hex digits of the sha256 of a canonical JSON of what determines the trained weights."""
    mean, std = spec.normalization()
    payload = {"arch": spec.arch, "recipe": spec.recipe.to_dict(), "seed": spec.seed,
               "mean": list(mean), "std": list(std), "data_sha256": data_sha256}
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def pretrained_file(models_dir: Path, checkpoint: str) -> Path | None:
    """``<checkpoint>.safetensors`` in ``models_dir``, else a user's ``<checkpoint>.pt``/``.pth``; None if neither."""
    for suffix in (".safetensors", *TORCH_SUFFIXES):
        if (models_dir / f"{checkpoint}{suffix}").is_file():
            return models_dir / f"{checkpoint}{suffix}"
    return None


def resolve_model(spec: ModelSpec, data, models_dir: Path | None, cache_dir: Path,
                  device: str | torch.device = "cpu", progress: bool = True) -> tuple[Normalized, dict]:
    """Return ``(model in eval mode, provenance)``.

    ``provenance`` is the checkpoint's record plus ``origin`` (``"models_dir"``, ``"cache"`` or
    ``"trained"``) and ``path`` (the safetensors file). A pretrained file's own normalisation
    wins over ``spec.mean``/``spec.std``; those only apply to models trained here. A model of another
    library (``"robustbench:<name>"``, ``"timm:<name>"``) comes from :func:`.external.load_external`.
    """
    if external_library(spec.arch):
        return load_external(spec, models_dir, cache_dir, device)
    if spec.checkpoint is not None:
        path = pretrained_file(Path(models_dir), spec.checkpoint) if models_dir is not None else None
        if path is not None:
            model, provenance = load_checkpoint(path, arch=spec.arch if path.suffix in TORCH_SUFFIXES else None,
                                                device=device)
            if model.arch != registered_arch(spec.arch):
                raise CheckpointError(f"{path} holds a {model.arch!r} network but model {spec.name!r} "
                                      f"declares arch {spec.arch!r}")
            print(f"[zoo] {spec.name}: loaded pretrained {path}")
            return model, {**provenance, "origin": "models_dir", "path": str(path)}
        where = models_dir if models_dir is not None else "(no models_dir given)"
        print(f"[zoo] {spec.name}: checkpoint {spec.checkpoint!r} not found in {where}; using the cache or training")

    data_sha256 = data.sha256
    key = cache_key(spec, data_sha256)
    cache_dir = Path(cache_dir)
    stem = cache_dir / f"{spec.name}-{key}"
    cached = stem.with_name(stem.name + ".safetensors")
    if cached.is_file():
        try:
            model, provenance = load_checkpoint(cached, arch=spec.arch, device=device)
        except CheckpointError as error:
            print(f"[zoo] {spec.name}: cached {cached} is unusable ({error}); training again")
        else:
            print(f"[zoo] {spec.name}: loaded cached {cached}")
            return model, {**provenance, "origin": "cache", "path": str(cached)}

    mean, std = spec.normalization()
    print(f"[zoo] {spec.name}: training {spec.arch} (seed {spec.seed}, {spec.recipe.epochs} epochs) "
          f"into {cached}")
    model = create_model(spec.arch, mean=mean, std=std, seed=spec.seed)
    result = train_model(model, data, spec.recipe, seed=spec.seed, device=device, progress=progress)
    provenance = {
        "name": spec.name, "arch": spec.arch, "recipe": spec.recipe.to_dict(), "seed": spec.seed,
        "data_sha256": data_sha256, "data_source": str(data.source), "cache_key": key,
        "epochs": result["epochs"], "n_train": result["n_train"], "clean_acc": result["clean_acc"],
        "train_time_s": result["train_time_s"], "device": str(device),
        "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "torch": torch.__version__,
    }
    save_checkpoint(model, stem, provenance)
    _, saved = load_checkpoint(cached, arch=spec.arch)  # re-read: returns exactly what the cache holds
    return model, {**saved, "origin": "trained", "path": str(cached)}
