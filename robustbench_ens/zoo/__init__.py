"""The model zoo: architectures, checkpoints (safetensors + provenance), training and resolution.

Importing this package registers every architecture (the modules below register on import).
"""
from . import (densenet, finetune, mlperf, mobilenet, resnet_cifar, resnet_sri, shufflenet, small_cnns,  # noqa: F401
               vgg, vit, vit_bn, vnncomp)  # (registration side effects)
from .checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from .csgld import CSGLD_RECIPE, collect_csgld
from .derived import Method, get_method, list_methods, register_method, resolve_derived
from .lgv import LGV_RECIPE, collect_lgv
from .mba import MBA_RECIPE, collect_mba
from .normalize import Normalized
from .registry import UnknownModelError, create_model, list_models, register_model
from .resolve import ModelSpec, pretrained_file, resolve_model
from .train import TrainRecipe, train_model

__all__ = [
    "register_model", "create_model", "list_models", "UnknownModelError", "Normalized",
    "save_checkpoint", "load_checkpoint", "CheckpointError", "TrainRecipe", "train_model",
    "ModelSpec", "pretrained_file", "resolve_model", "collect_lgv", "LGV_RECIPE", "collect_mba", "MBA_RECIPE",
    "collect_csgld", "CSGLD_RECIPE",
    "Method", "register_method", "get_method", "list_methods", "resolve_derived",
]
