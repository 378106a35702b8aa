"""Checkpoints as safetensors (never pickle) with a JSON provenance record beside them.

A user's own ``.pt``/``.pth`` state dict is read too, only through ``torch.load(weights_only=True)``
(which refuses any object but tensors and plain containers); its architecture comes from the
suite, its normalisation from ``<stem>.json`` or else the architecture's default.

``<stem>.safetensors`` holds the bare network's state dict and the string metadata
``arch``, ``normalize_mean`` and ``normalize_std`` (comma-separated floats), the layout of
the shared pretrained files. ``<stem>.json`` holds the provenance (how the weights were
made), the file's sha256, the arch and the normalisation. Both are written atomically, and
loading verifies the hash whenever the JSON records one.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import struct
from pathlib import Path

import safetensors.torch
import torch

from .. import atomic
from .normalize import Normalized, as_channel_stats
from .registry import UnknownModelError, create_model, default_normalization

SUFFIX = ".safetensors"
TORCH_SUFFIXES = (".pt", ".pth")  # a user's torch.save'd state dict: read with weights_only=True, never unpickled
METADATA_KEYS = ("arch", "normalize_mean", "normalize_std")
# Arch names used by the shared pretrained files -> registered names.
_EXTERNAL_ARCHS = {"resnet-2b-vnncomp": "resnet2b", "resnet-4b-vnncomp": "resnet4b"}
_OPTION_RE = re.compile(r"resnet(\d+)-option([ab])", re.IGNORECASE)


class CheckpointError(Exception):
    """A checkpoint that cannot be trusted or read: hash mismatch, corrupt file, wrong arch or keys."""


def registered_arch(name: str) -> str:
    """Map a checkpoint's arch name ('resnet20-optionA', 'resnet-2b-vnncomp', ...) to a registry name."""
    match = _OPTION_RE.fullmatch(name)
    if match:
        return f"resnet{match.group(1)}_{match.group(2).lower()}"
    return _EXTERNAL_ARCHS.get(name, name)


def _stem_paths(path_stem: Path) -> tuple[Path, Path]:
    path_stem = Path(path_stem)
    if path_stem.suffix in TORCH_SUFFIXES:  # a user's torch file: read as it is named
        return path_stem, path_stem.with_suffix(".json")
    if path_stem.name.endswith(SUFFIX):
        path_stem = path_stem.with_name(path_stem.name[: -len(SUFFIX)])
    return path_stem.with_name(path_stem.name + SUFFIX), path_stem.with_name(path_stem.name + ".json")


def _floats(values) -> str:
    return ",".join(repr(float(v)) for v in values)


def save_checkpoint(model: Normalized, path_stem: Path, provenance: dict) -> Path:
    """Write ``<stem>.safetensors`` and ``<stem>.json``; return the safetensors path."""
    if not isinstance(model, Normalized):
        raise TypeError(f"save_checkpoint takes a Normalized model (from create_model), got {type(model).__name__}")
    metadata = {"arch": model.arch, "normalize_mean": _floats(model.normalize_mean),
                "normalize_std": _floats(model.normalize_std)}
    record = {**provenance, "arch": model.arch, "normalize_mean": list(model.normalize_mean),
              "normalize_std": list(model.normalize_std)}
    return write_weights(model.net.state_dict(), metadata, path_stem, record)


def write_weights(state: dict[str, torch.Tensor], metadata: dict[str, str], path_stem: Path, provenance: dict) -> Path:
    """Any module's state dict as ``<stem>.safetensors`` (with string ``metadata``) and ``<stem>.json``
    (``provenance`` plus the file's sha256), both written atomically; returns the safetensors path."""
    weights_path, json_path = _stem_paths(path_stem)
    # Clone so that no two entries share storage (safetensors refuses shared tensors).
    tensors = {key: value.detach().to("cpu").clone().contiguous() for key, value in state.items()}
    data = safetensors.torch.save(tensors, metadata=metadata)
    record = {**provenance, "sha256": hashlib.sha256(data).hexdigest()}
    try:
        text = json.dumps(record, indent=2, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise ValueError(f"provenance must be JSON-serialisable: {error}") from None
    atomic.write_bytes(weights_path, data)
    atomic.write_text(json_path, text + "\n")
    return weights_path


def read_weights(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str], dict | None, str]:
    """``(state dict, metadata, provenance or None, sha256)`` of a file written by :func:`write_weights`
    (or any safetensors file); the hash is checked whenever ``<stem>.json`` records one."""
    weights_path, json_path = _stem_paths(Path(path))
    try:
        data = weights_path.read_bytes()
    except OSError as error:
        raise CheckpointError(f"cannot read checkpoint {weights_path}: {error}") from None
    digest = hashlib.sha256(data).hexdigest()
    record = _read_provenance(json_path)
    if record is not None and record.get("sha256") and record["sha256"] != digest:
        raise CheckpointError(f"{weights_path} has sha256 {digest}, but {json_path.name} records "
                              f"{record['sha256']}: the file was modified or is incomplete; refusing to load it")
    if weights_path.suffix in TORCH_SUFFIXES:
        return _read_torch_state(data, weights_path), _metadata_from(record), record, digest
    metadata = _read_metadata(data, weights_path)
    try:
        state = safetensors.torch.load(data)
    except Exception as error:  # the Rust deserialiser raises its own SafetensorError
        raise CheckpointError(f"{weights_path} is not a readable safetensors file (corrupt or truncated): "
                              f"{error}") from None
    return state, metadata, record, digest


def _read_torch_state(data: bytes, path: Path) -> dict[str, torch.Tensor]:
    """A ``torch.save``'d state dict (or ``{"state_dict": ...}``), loaded with ``weights_only=True``: tensors and
    plain containers only, so a file that would run code when unpickled is refused."""
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as error:  # UnpicklingError for forbidden objects, EOFError/RuntimeError when truncated
        raise CheckpointError(f"{path} was refused by torch.load(weights_only=True): it holds objects other than "
                              f"tensors, or is corrupt or truncated ({type(error).__name__}: "
                              f"{str(error).splitlines()[0] if str(error) else ''}); save the state_dict only, "
                              "or convert it to safetensors") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise CheckpointError(f"{path} is not a state dict of tensors (a mapping from parameter names to tensors)")
    return state


def _metadata_from(record: dict | None) -> dict[str, str]:
    """A torch file's stand-in for safetensors metadata: arch and normalisation from its JSON record, if any."""
    fields = {key: (record or {}).get(key) for key in METADATA_KEYS}
    return {key: _floats(value) if isinstance(value, list) else str(value)
            for key, value in fields.items() if value is not None}

def _read_metadata(data: bytes, path: Path) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors header (8-byte little-endian length, then JSON)."""
    try:
        (length,) = struct.unpack("<Q", data[:8])
        if length > len(data) - 8:
            raise ValueError("header longer than the file")
        header = json.loads(data[8:8 + length])
        metadata = header.get("__metadata__") or {}
        if not isinstance(metadata, dict):
            raise ValueError("__metadata__ is not a mapping")
        return {str(k): str(v) for k, v in metadata.items()}
    except (struct.error, ValueError, UnicodeDecodeError, AttributeError) as error:
        raise CheckpointError(f"{path} is not a readable safetensors file (corrupt or truncated): {error}") from None


def _read_provenance(json_path: Path) -> dict | None:
    if not json_path.is_file():
        return None
    try:
        record = json.loads(json_path.read_text())
    except (OSError, ValueError) as error:
        raise CheckpointError(f"cannot read provenance {json_path}: {error}") from None
    if not isinstance(record, dict):
        raise CheckpointError(f"provenance {json_path} is not a JSON object")
    return record


def _parse_stats(metadata: dict, key: str, path: Path) -> tuple[float, ...]:
    if key not in metadata:
        raise CheckpointError(f"{path} has no {key!r} metadata, so its input normalisation is unknown")
    try:
        return as_channel_stats(metadata[key].split(","), key)
    except ValueError as error:
        raise CheckpointError(f"{path}: bad {key!r} metadata: {error}") from None


def load_checkpoint(path: str | os.PathLike, arch: str | None = None,
                    device: str | torch.device = "cpu") -> tuple[Normalized, dict]:
    """Load a safetensors checkpoint as a :class:`Normalized` model in eval mode, plus its provenance.

    ``arch`` defaults to the file's ``arch`` metadata (shared-file names are mapped to
    registry names); if both are given they must agree. Keys must match the architecture
    exactly, except that missing BatchNorm ``num_batches_tracked`` counters are allowed.
    If ``<stem>.json`` exists and records a ``sha256``, the file must have that hash.
    """
    state, metadata, record, digest = read_weights(path)
    weights_path, json_path = _stem_paths(Path(path))

    file_arch = registered_arch(metadata["arch"]) if "arch" in metadata else None
    if arch is not None and file_arch is not None and registered_arch(arch) != file_arch:
        raise CheckpointError(f"{weights_path} holds a {metadata['arch']!r} network, not {arch!r}")
    name = registered_arch(arch) if arch is not None else file_arch
    if name is None:
        raise CheckpointError(f"{weights_path} has no 'arch' metadata; pass arch=...")
    if record is not None and record.get("arch") and registered_arch(record["arch"]) != name:
        raise CheckpointError(f"{json_path} says arch {record['arch']!r} but the weights are {name!r}")
    if weights_path.suffix in TORCH_SUFFIXES and "normalize_mean" not in metadata:
        mean, std = default_normalization(name)  # a bare torch file: the architecture's own normalisation
    else:
        mean = _parse_stats(metadata, "normalize_mean", weights_path)
        std = _parse_stats(metadata, "normalize_std", weights_path)
    try:
        model = create_model(name, mean=mean, std=std)
    except UnknownModelError as error:
        raise CheckpointError(f"{weights_path}: {error}") from None

    try:
        result = model.net.load_state_dict(state, strict=False)
    except RuntimeError as error:  # shape mismatches
        raise CheckpointError(f"{weights_path} does not fit {name!r}: {error}") from None
    missing = [key for key in result.missing_keys if not key.endswith("num_batches_tracked")]
    if missing or result.unexpected_keys:
        raise CheckpointError(f"{weights_path} does not fit {name!r}: missing keys {missing}, "
                              f"unexpected keys {result.unexpected_keys}")
    model.to(device).eval()

    if record is None:
        record = {"source": str(weights_path), "arch": name, "sha256": digest}
        record.update({k: v for k, v in metadata.items() if k not in METADATA_KEYS})
        record.update(normalize_mean=list(mean), normalize_std=list(std))
        if "arch" in metadata and metadata["arch"] != name:
            record["source_arch"] = metadata["arch"]
    return model, record
