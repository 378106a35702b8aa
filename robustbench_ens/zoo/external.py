"""Models users already have: a RobustBench model or a pretrained timm model, named by a suite's arch.

``arch = "robustbench:<model name>"`` is a CIFAR-10 model of RobustBench's model zoo (for the
entry's ``threat_model``, Linf by default), loaded by ``robustbench.utils.load_model``;
``arch = "timm:<name>"`` is a timm model with its pretrained weights, such as a CIFAR-10
fine-tuned checkpoint on the Hugging Face hub (``timm:hf-hub:<user>/<repo>``), loaded by
``timm.create_model(name, pretrained=True, num_classes=10)``. Each is returned as the zoo's
models are, a :class:`Normalized` module in eval mode that maps [0, 1] NCHW images to logits,
with its provenance (``origin`` is the library, ``source`` one line on where the weights come from).

``robustbench`` is the optional extra (``pip install -e ".[robustbench]"``), imported only when a
suite names such a model. Its ``load_model`` unpickles the checkpoint with ``torch.load``, RobustBench's
own format, and takes no ``weights_only`` argument: torch 2.6 and later default to
``weights_only=True`` (tensors and plain containers only), earlier torch unpickles it fully. The
zoo's own checkpoints never go through pickle.
"""
from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.metadata
import importlib.util
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from ..data import NUM_CLASSES, _file_sha256
from .checkpoints import CheckpointError
from .normalize import Normalized
from .registry import UnknownModelError

if TYPE_CHECKING:
    from .resolve import ModelSpec

ROBUSTBENCH_FOLDER = "robustbench"  # under --models if it is there, else under the cache
INSTALL_HINT = 'pip install -e ".[robustbench]"'


def load_external(spec: ModelSpec, models_dir: Path | None, cache_dir: Path,
                  device: str | torch.device = "cpu") -> tuple[Normalized, dict]:
    """``(model in eval mode on device, provenance)`` of ``spec``, whose arch names another library's
    model; a CheckpointError (one line) when it cannot be had, an UnknownModelError when the library has no such
    model."""
    library, _, name = spec.arch.partition(":")
    where = f"model {spec.name!r} ({spec.arch})"
    if library == "robustbench":
        model, record = load_robustbench(name, spec.threat_model, robustbench_folder(models_dir, cache_dir), where)
    else:
        model, record = load_timm(name, where)
    print(f"[zoo] {spec.name}: loaded {record['source']}")
    return model.to(device).eval(), {"name": spec.name, "arch": spec.arch, "origin": library, **record,
                                     "normalize_mean": list(model.normalize_mean),
                                     "normalize_std": list(model.normalize_std)}


def robustbench_folder(models_dir: Path | None, cache_dir: Path) -> Path:
    """RobustBench's model folder, into which it also downloads a checkpoint it lacks: ``<models_dir>/robustbench``
    if that folder exists, else ``<cache_dir>/robustbench`` (the cache: ``--cache``, ``$RBE_CACHE`` or the default)."""
    if models_dir is not None and (Path(models_dir) / ROBUSTBENCH_FOLDER).is_dir():
        return Path(models_dir) / ROBUSTBENCH_FOLDER
    return Path(cache_dir) / ROBUSTBENCH_FOLDER


def load_robustbench(name: str, threat_model: str, folder: Path, where: str) -> tuple[Normalized, dict]:
    """RobustBench's CIFAR-10 ``threat_model`` model ``name`` from ``folder`` (downloaded there when absent).

    It takes [0, 1] images and normalises them itself, so it is wrapped with an identity
    normalisation. Its identity (``sha256``) is that of the file RobustBench keeps,
    ``<folder>/cifar10/<threat_model>/<name>.pt``.
    """
    robustbench = import_robustbench(where)
    enums = robustbench.model_zoo.enums
    models = robustbench.model_zoo.model_dicts[enums.BenchmarkDataset.cifar_10][enums.ThreatModel(threat_model)]
    if name not in models:
        close = difflib.get_close_matches(name, list(models), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UnknownModelError(f"{where}: RobustBench has no CIFAR-10 {threat_model} model {name!r}{hint}")
    if not isinstance(models[name]["gdrive_id"], str):
        raise CheckpointError(f"{where}: RobustBench keeps this model as several checkpoints or loads it through "
                              "timm; robustbench:<name> loads the models of one checkpoint file")
    path = folder / "cifar10" / threat_model / f"{name}.pt"
    try:
        net = robustbench.utils.load_model(name, model_dir=str(folder), dataset="cifar10", threat_model=threat_model)
    except Exception as error:  # gdown's and requests' errors, torch.load's refusals, keys that do not fit
        if not path.is_file():
            raise _download_failed(where, error, f"put the checkpoint at {path}") from None
        raise CheckpointError(f"{where}: RobustBench could not load {path}: {_one_line(error)}") from None
    record = {"source": f"RobustBench's CIFAR-10 {threat_model} model {name} ({path.name})", "path": str(path),
              "sha256": _file_sha256(path), "threat_model": threat_model,
              "robustbench": importlib.metadata.version("robustbench")}
    return Normalized(net, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), arch=f"robustbench:{name}"), record


def import_robustbench(where: str):
    """The ``robustbench`` package. Its 1.1.1 release on PyPI depends on ``pyautoattack`` but imports it by the name
    of the git-only original, ``autoattack``; where no ``autoattack`` is installed, that name is given to
    ``pyautoattack`` (one of this project's dependencies) and its submodules."""
    try:
        if importlib.util.find_spec("autoattack") is None:
            importlib.import_module("pyautoattack")
            for module_name, module in list(sys.modules.items()):
                if module_name.partition(".")[0] == "pyautoattack":
                    sys.modules.setdefault("autoattack" + module_name[len("pyautoattack"):], module)
        importlib.import_module("robustbench.utils")  # also imports robustbench.model_zoo
        return importlib.import_module("robustbench")
    except ImportError as error:
        raise CheckpointError(f"{where}: needs the robustbench package, which cannot be imported ({error}): "
                              f"{INSTALL_HINT}") from None


def load_timm(name: str, where: str) -> tuple[Normalized, dict]:
    """timm's model ``name`` with its pretrained weights, whose head must have CIFAR-10's 10 classes (timm would
    replace any other head by a random one). Its identity (``sha256``) is :func:`state_sha256` of the network."""
    import timm

    if ":" not in name and not timm.is_model(name):  # "hf-hub:<user>/<repo>" is only known to the hub
        close = difflib.get_close_matches(name, timm.list_models(), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UnknownModelError(f"{where}: timm has no model {name!r}{hint}")
    try:
        net = timm.create_model(name, pretrained=True, num_classes=NUM_CLASSES)
    except OSError as error:  # huggingface_hub's and torch.hub's download errors
        raise _download_failed(where, error, "put the weights in the Hugging Face cache ($HF_HOME, default "
                              "~/.cache/huggingface)") from None
    classes = net.pretrained_cfg.get("num_classes", 1000)
    if classes != NUM_CLASSES:
        raise CheckpointError(f"{where}: its pretrained head has {classes} classes, not CIFAR-10's {NUM_CLASSES}, so "
                              "timm would give it a random one; name a checkpoint fine-tuned on CIFAR-10")
    model = timm_normalized(net, f"timm:{name}")
    cfg = net.pretrained_cfg
    record = {"source": f"timm model {name}, pretrained weights {cfg.get('hf_hub_id') or cfg.get('url') or name}",
              "sha256": state_sha256(net), "input_size": list(cfg["input_size"][1:]), "timm": timm.__version__}
    return model, record


def timm_normalized(net: nn.Module, arch: str) -> Normalized:
    """``net``, a timm model, taking [0, 1] 32x32 images: normalised with its ``pretrained_cfg``'s mean and std, and
    resized (bilinear) to the cfg's input size where that is not 32x32 (a resize commutes with the normalisation)."""
    cfg = net.pretrained_cfg
    size = tuple(cfg["input_size"][1:])
    if size != (32, 32):
        net = nn.Sequential(nn.Upsample(size=size, mode="bilinear", align_corners=False), net)
    return Normalized(net, cfg["mean"], cfg["std"], arch=arch)


def state_sha256(module: nn.Module) -> str:
    """sha256 of a module's state dict: each entry's name, dtype and shape, then its bytes, in name order."""
    digest = hashlib.sha256()
    for key, value in sorted(module.state_dict().items()):
        tensor = value.detach().to("cpu").contiguous()
        digest.update(f"{key}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _download_failed(where: str, error: BaseException, remedy: str) -> CheckpointError:
    """The one line that says a model's weights could not be downloaded, and what to do."""
    return CheckpointError(f"{where}: the download failed ({_one_line(error)}): {remedy} or check the network")


def _one_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
