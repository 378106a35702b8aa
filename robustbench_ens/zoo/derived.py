"""Derived models: made here from other models of a suite, by a registered method, and cached.

A method turns base models into one or more new models: an LGV collection (SGD snapshots
of one trained model), a DVERGE ensemble (members diversified from a trained ensemble), a
multi-resolution self-ensemble (a backbone initialised from a trained model). A suite
names the method, its bases and its settings::

    [models.dverge_ours]
    method = "dverge"
    from = ["baseline_m0", "baseline_m1", "baseline_m2"]
    train = { epochs = 10, lr = 0.01 }

:func:`resolve_derived` makes the models once and caches them under
``<cache_dir>/<name>-<key>/``, where ``key`` hashes everything that determines them (the
method, the bases' hashes, the effective settings, the seed and the data's hash). Each
model is a hash-checked safetensors file, and ``collection.json`` is written last, so an
interrupted build is never read as complete; a method may resume its own training from
the ``work/`` folder it is given.
"""
from __future__ import annotations

import difflib
import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .. import atomic
from .checkpoints import CheckpointError, load_checkpoint, save_checkpoint

MANIFEST = "collection.json"
WORK_FOLDER = "work"


@dataclass(frozen=True)
class Method:
    """How to derive models from bases.

    Attributes:
        settings: ``(params, train) -> settings``: the suite's ``params`` and ``train`` tables
            checked (a ``ValueError`` says what is wrong) and completed with the defaults,
            as JSON-able values; they enter the cache key.
        build: ``(bases, data, settings, *, seed, device, progress, work_dir) -> (models, record)``:
            the new models (eval mode) and extra JSON-able facts for the manifest.
        describe: ``manifest -> str``: one line for the leaderboard on how the models were made.
        bases: the allowed number of bases, ``(at least, at most)``; ``None``: no upper bound.
        save, load: a model's checkpoint writer ``(model, stem, provenance)`` and reader
            ``(path, device) -> (model, provenance)``; by default the zoo's.
    """

    settings: Callable[[dict, dict], dict]
    build: Callable[..., tuple[list[nn.Module], dict]]
    describe: Callable[[dict], str]
    bases: tuple[int, int | None] = (1, 1)
    save: Callable = save_checkpoint
    load: Callable = load_checkpoint

    def check_bases(self, count: int) -> None:
        low, high = self.bases
        if count < low or (high is not None and count > high):
            wanted = f"exactly {low}" if low == high else f"at least {low}" if high is None else f"{low} to {high}"
            raise ValueError(f"takes {wanted} base model(s) in 'from', got {count}")


_METHODS: dict[str, Method] = {}


def register_method(name: str, method: Method) -> Method:
    _METHODS[name] = method
    return method


def list_methods() -> list[str]:
    return sorted(_METHODS)


def get_method(name: str) -> Method:
    if name not in _METHODS:
        close = difflib.get_close_matches(name, list(_METHODS), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown method {name!r}{hint} (known: {', '.join(list_methods())})")
    return _METHODS[name]


def checked_settings(method_name: str, n_bases: int, params: dict | None = None,
                     train: dict | None = None) -> tuple[Method, dict]:
    """The method and its effective settings; a ValueError if the name, the base count or a setting is bad."""
    method = get_method(method_name)
    method.check_bases(n_bases)
    return method, method.settings(dict(params or {}), dict(train or {}))


def with_defaults(method: str, params: dict, defaults: dict) -> dict:
    """A method's ``params`` completed with its ``defaults``; a ValueError naming any key it does not know."""
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        raise ValueError(f"unknown {method} params {unknown} (known: {', '.join(defaults)})")
    return {**defaults, **params}


def derived_cache_key(method: str, base_sha256: list[str], settings: dict, seed: int, data_sha256: str) -> str:
    """First 16 hex digits of the sha256 of what determines the derived models."""
    payload = {"method": method, "base_sha256": base_sha256, "settings": settings, "seed": seed,
               "data_sha256": data_sha256}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def resolve_derived(name: str, method_name: str, bases: list[nn.Module], base_sha256: list[str], data,
                    cache_dir: Path, *, params: dict | None = None, train: dict | None = None, seed: int = 0,
                    device: str | torch.device = "cpu", progress: bool = True) -> tuple[list[nn.Module], dict]:
    """The models that ``method_name`` derives from ``bases``: read from the cache, else made and cached.

    Returns ``(models, provenance)``: the manifest plus ``origin`` (``"cache"`` or
    ``"trained"``) and ``path``; provenance's ``sha256`` hashes the models' hashes in order.
    """
    method, settings = checked_settings(method_name, len(bases), params, train)
    key = derived_cache_key(method_name, list(base_sha256), settings, seed, data.sha256)
    folder = Path(cache_dir) / f"{name}-{key}"
    manifest = folder / MANIFEST
    if manifest.is_file():
        record = json.loads(manifest.read_text())
        try:
            models = [method.load(folder / f"{stem}.safetensors", device=device)[0] for stem in record["members"]]
        except CheckpointError as error:
            print(f"[zoo] {name}: cached {method_name} models in {folder} are unusable ({error}); making them again")
        else:
            print(f"[zoo] {name}: loaded {len(models)} cached {method_name} model(s) from {folder}")
            return models, {**record, "origin": "cache", "path": str(folder)}

    print(f"[zoo] {name}: making {method_name} model(s) from {len(bases)} base(s) into {folder}")
    started = time.perf_counter()
    models, extra = method.build(bases, data, settings, seed=seed, device=device, progress=progress,
                                 work_dir=folder / WORK_FOLDER)
    hashes, stems = [], []
    for index, model in enumerate(models):
        stem = f"member_{index:03d}"
        method.save(model, folder / stem, {"name": f"{name}[{index}]", "index": index, "method": method_name})
        hashes.append(json.loads((folder / f"{stem}.json").read_text())["sha256"])
        stems.append(stem)
    record = {"name": name, "method": method_name, "arch": getattr(models[0], "arch", type(models[0]).__name__),
              "base_sha256": list(base_sha256), "settings": settings, "seed": seed, "data_sha256": data.sha256,
              "cache_key": key, "n_models": len(models), "members": stems, "member_sha256": hashes,
              "sha256": hashlib.sha256("".join(hashes).encode()).hexdigest(),
              "build_time_s": round(time.perf_counter() - started, 3), "device": str(device),
              "torch": torch.__version__, **extra}
    atomic.write_text(manifest, json.dumps(record, indent=2, sort_keys=True) + "\n")
    shutil.rmtree(folder / WORK_FOLDER, ignore_errors=True)  # a method's resumable state, no longer needed
    return models, {**record, "origin": "trained", "path": str(folder)}


def describe(provenance: dict) -> str:
    """The page's line on how derived models were made (their method's words), on which data, where they came from
    (trained in this run or read from the cache) and how long making them took, on which device."""
    built = provenance.get("build_time_s")
    cost = f"; made in {built / 60:.1f} min on {provenance.get('device', '?')}" if isinstance(built, (int, float)) \
        else ""
    data = f"; on the training split of the data with sha256 {provenance['data_sha256'][:12]}" \
        if provenance.get("data_sha256") else ""
    return f"{get_method(provenance['method']).describe(provenance)} ({provenance.get('origin')}{data}{cost})"
