"""Multi-resolution self-ensemble with CrossMax (Fort & Lakshminarayanan, 2024, "Ensemble
everything everywhere"), on a CIFAR ResNet trained here or a timm ResNet-family backbone
fine-tuned from the user's pretrained weights (the paper fine-tunes an ImageNet ResNet-152).

The backbone sees the multi-resolution stack (:class:`~defenses.multires.MultiResolutionStack`,
12 channels for 4 resolutions); linear heads read intermediate block outputs (BatchNorm
then a linear layer on the flattened map, as the official notebook does), and the backbone's
own classifier is one more predictor. The prediction is CrossMax over the predictors with
the k-th highest value (k = 3 in the paper's self-ensemble). The stack is random at every
call, so this defense is randomised: attack it with EOT.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from robustbench_ens import atomic
from robustbench_ens.text import plural
from robustbench_ens.zoo.checkpoints import CheckpointError, read_weights, write_weights
from robustbench_ens.zoo.derived import Method, register_method
from robustbench_ens.zoo.normalize import CIFAR10_MEAN, CIFAR10_STD, Normalized
from robustbench_ens.zoo.resnet_cifar import CifarResNet
from robustbench_ens.zoo.train import TrainRecipe, train_model

from .backbones import TimmResNet
from .crossmax import check_crossmax, crossmax
from .multires import MultiResolutionStack
from .registry import register_defense

STATE_FILE = "state.json"  # written last after every phase of train_self_ensemble


class SelfEnsemble(nn.Module):
    """Images in [0, 1] -> CrossMax scores [B, classes]; :meth:`predictor_logits` gives [B, P, classes].

    Args:
        depth: CIFAR ResNet depth (6n+2; option-B shortcuts), the backbone unless ``timm_model`` is set.
        timm_model: a timm ResNet-family name (e.g. ``"resnet152"``) to use as the backbone instead.
        timm_weights: a file of that network's pretrained weights, read once here (see
            :class:`~defenses.backbones.TimmResNet`); a saved self-ensemble keeps its own weights.
        head_blocks: 0-based indices of the blocks whose outputs get a linear head (default:
            the last 7 blocks, so that with the backbone's classifier there are 8 predictors,
            as in the official notebook).
        k: CrossMax's k-th highest (default 3; None for the median).
        stack: the input stack, or its constructor's arguments as a dict (default:
            :class:`MultiResolutionStack` with its defaults).
        image_size: input height = width (32 for CIFAR).
        mean, std: the per-channel normalisation applied to every view of the stack.
    """

    def __init__(self, depth: int = 20, head_blocks: tuple[int, ...] | None = None, k: int | None = 3,
                 stack: MultiResolutionStack | dict | None = None, num_classes: int = 10, image_size: int = 32,
                 mean=CIFAR10_MEAN, std=CIFAR10_STD, timm_model: str | None = None,
                 timm_weights: str | None = None):
        super().__init__()
        self.stack = MultiResolutionStack(**stack) if isinstance(stack, dict) else stack or MultiResolutionStack()
        views = len(self.stack.resolutions)
        if timm_model:
            self.backbone = TimmResNet(timm_model, 3 * views, num_classes, weights=timm_weights)
        else:
            self.backbone = CifarResNet(depth, option="B", head="fc", num_classes=num_classes, in_channels=3 * views)
        blocks = self.backbone.blocks()
        self.head_blocks = tuple(range(max(0, len(blocks) - 7), len(blocks))) if head_blocks is None \
            else tuple(head_blocks)
        if not self.head_blocks or any(not 0 <= b < len(blocks) for b in self.head_blocks):
            raise ValueError(f"head_blocks must be indices in [0, {len(blocks)}), got {head_blocks!r}")
        check_crossmax(len(self.head_blocks) + 1, k)
        self.k = k
        self.depth, self.num_classes, self.image_size = depth, num_classes, image_size
        self.timm_model, self.timm_weights = timm_model, timm_weights
        self.normalize_mean, self.normalize_std = tuple(map(float, mean)), tuple(map(float, std))
        sizes = _block_output_sizes(self.backbone, 3 * views, image_size)
        self.heads = nn.ModuleList(_head(sizes[b], num_classes) for b in self.head_blocks)
        self.register_buffer("mean", torch.tensor(list(mean) * views).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(list(std) * views).view(1, -1, 1, 1), persistent=False)

    @property
    def n_predictors(self) -> int:
        return len(self.heads) + 1

    @property
    def arch(self) -> str:
        return f"self_ensemble_{self.timm_model or f'resnet{self.depth}'}"

    def config(self) -> dict:
        """The constructor's arguments, as JSON-able values: ``SelfEnsemble(**model.config())`` rebuilds it."""
        return {"depth": self.depth, "head_blocks": list(self.head_blocks), "k": self.k,
                "stack": self.stack.config(), "num_classes": self.num_classes, "image_size": self.image_size,
                "mean": list(self.normalize_mean), "std": list(self.normalize_std), "timm_model": self.timm_model,
                "timm_weights": self.timm_weights and str(self.timm_weights)}

    def init_backbone_from(self, trained: Normalized) -> SelfEnsemble:
        """Start the backbone from a trained CIFAR ResNet of the same shape (and take its normalisation).

        Every weight is copied except the first convolution's, which sees ``R`` views instead
        of one image: each view gets the trained kernel divided by ``R``, so that at the start
        the backbone sees the views' average as it saw the image.
        """
        if not isinstance(self.backbone, CifarResNet):
            raise TypeError("a timm backbone starts from its own weights: pass timm_weights")
        if not isinstance(trained, Normalized) or not isinstance(trained.net, CifarResNet):
            raise TypeError("the backbone can start from a zoo CIFAR ResNet (e.g. create_model('resnet20_b')), "
                            f"got {type(getattr(trained, 'net', trained)).__name__}")
        views = len(self.stack.resolutions)
        state = dict(trained.net.state_dict())
        state["conv1.weight"] = state["conv1.weight"].repeat(1, views, 1, 1) / views
        target = self.backbone.state_dict()
        wrong = sorted(k for k in set(target) | set(state)
                       if k not in state or k not in target or state[k].shape != target[k].shape)
        if wrong:
            raise ValueError(f"{trained.arch} does not fit this self-ensemble's backbone (resnet{self.depth}, "
                             f"option B); mismatched weights: {', '.join(wrong[:5])}")
        self.backbone.load_state_dict(state)
        self.normalize_mean, self.normalize_std = trained.normalize_mean, trained.normalize_std
        self.mean.copy_(torch.tensor(list(self.normalize_mean) * views).view(1, -1, 1, 1))
        self.std.copy_(torch.tensor(list(self.normalize_std) * views).view(1, -1, 1, 1))
        return self

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        """Images -> a fresh random stack, normalised -> the backbone's stem."""
        return self.backbone.stem((self.stack(x) - self.mean) / self.std)

    def predictor_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Every predictor's logits [B, P, classes]: the heads in block order, then the backbone's classifier."""
        out = self.stem(x)
        logits = []
        heads = dict(zip(self.head_blocks, self.heads))
        for index, block in enumerate(self.backbone.blocks()):
            out = block(out)
            if index in heads:
                logits.append(heads[index](out))
        logits.append(self.backbone.classify(out))
        return torch.stack(logits, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return crossmax(self.predictor_logits(x), self.k)


class _BackboneView(nn.Module):
    """The backbone and its own classifier on the stack: phase 1 of training (parameters: the backbone's)."""

    def __init__(self, model: SelfEnsemble):
        super().__init__()
        self.backbone = model.backbone
        self._model = [model]  # not a submodule: its heads stay out of parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self._model[0].stem(x)
        for block in self.backbone.blocks():
            out = block(out)
        return self.backbone.classify(out)


class _HeadView(nn.Module):
    """One head on the frozen backbone (eval mode, no gradient): phase 2 (parameters: that head's)."""

    def __init__(self, model: SelfEnsemble, index: int):
        super().__init__()
        self.head = model.heads[index]
        self.block = model.head_blocks[index]
        self._model = [model]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        model = self._model[0]
        model.backbone.eval()
        with torch.no_grad():
            out = model.stem(x)
            for block in model.backbone.blocks()[:self.block + 1]:
                out = block(out)
        return self.head(out)


def train_self_ensemble(model: SelfEnsemble, data, backbone_recipe: TrainRecipe, head_recipe: TrainRecipe, *,
                        seed: int = 0, device: str | torch.device = "cpu", progress: bool = True,
                        checkpoint_dir: Path | None = None) -> dict:
    """Train as the official notebook does: the backbone with its classifier, then each head alone.

    Phase 1 trains the backbone (and its classifier) on the random multi-resolution stack;
    phase 2 trains the heads one at a time, deepest first, on the frozen backbone. Unlike the
    notebook, the frozen backbone stays in eval mode in phase 2, so its BatchNorm statistics
    do not drift while the heads learn. Returns each phase's :func:`train_model` summary
    (``{"backbone": ..., "heads": {block: ...}}``).

    With ``checkpoint_dir``, the model and the stack's random state are saved after every
    phase (``state.json`` last); a later call with the same model, recipes and seed resumes
    after the last saved phase and ends with the same weights as an uninterrupted run.
    """
    model.to(device)
    plan = {"model": model.config(), "backbone": backbone_recipe.to_dict(), "heads": head_recipe.to_dict(),
            "seed": seed}
    summary = _resume_phases(checkpoint_dir, model, plan, device) or {"backbone": None, "heads": {}}
    if summary["backbone"] is None:
        summary["backbone"] = train_model(_BackboneView(model), data, backbone_recipe, seed=seed, device=device,
                                          progress=progress)
        _save_phase(checkpoint_dir, model, plan, summary)
    for index in reversed(range(len(model.heads))):
        block = str(model.head_blocks[index])
        if block not in summary["heads"]:
            summary["heads"][block] = train_model(_HeadView(model, index), data, head_recipe, seed=seed + 1 + index,
                                                  device=device, progress=progress)
            _save_phase(checkpoint_dir, model, plan, summary)
    model.eval()
    return summary


def _save_phase(folder: Path | None, model: SelfEnsemble, plan: dict, summary: dict) -> None:
    if folder is None:
        return
    folder = Path(folder)
    save_self_ensemble(model, folder / "model", {"phases_done": 1 + len(summary["heads"])})
    atomic.write_with(folder / "stack_rng.safetensors",
                      lambda tmp: save_file({"state": model.stack.generator.get_state()}, str(tmp)))
    atomic.write_text(folder / STATE_FILE, json.dumps({"plan": plan, "summary": summary}, indent=2) + "\n")


def _resume_phases(folder: Path | None, model: SelfEnsemble, plan: dict, device) -> dict | None:
    """The summary of the phases saved in ``folder`` (the model and stack restored to that point), or None."""
    if folder is None or not (Path(folder) / STATE_FILE).is_file():
        return None
    folder = Path(folder)
    state = json.loads((folder / STATE_FILE).read_text())
    if state["plan"] != json.loads(json.dumps(plan)):
        raise ValueError(f"{folder} holds a self-ensemble training with another model, recipe or seed; "
                         "use another checkpoint_dir")
    saved, _ = load_self_ensemble(folder / "model.safetensors", device=device)
    model.load_state_dict(saved.state_dict())
    model.stack.generator.set_state(load_file(str(folder / "stack_rng.safetensors"))["state"])
    return state["summary"]


def _block_output_sizes(backbone: nn.Module, channels: int, image_size: int) -> list[int]:
    """The number of values in each block's output for one image (a dry run in eval mode)."""
    was_training = backbone.training
    backbone.eval()
    with torch.no_grad():
        out, sizes = backbone.stem(torch.zeros(1, channels, image_size, image_size)), []
        for block in backbone.blocks():
            out = block(out)
            sizes.append(out[0].numel())
    backbone.train(was_training)
    return sizes


def _head(features: int, num_classes: int) -> nn.Sequential:
    return nn.Sequential(nn.Flatten(), nn.BatchNorm1d(features), nn.Linear(features, num_classes))


_KEEP = object()


@register_defense("self_ensemble")
def build_self_ensemble(members: list[nn.Module], k=_KEEP) -> SelfEnsemble:
    """The suite's single member must be a trained :class:`SelfEnsemble`; ``k`` (default: the model's own) may be
    changed to another k-th highest, or None for the median."""
    if len(members) != 1 or not isinstance(members[0], SelfEnsemble):
        raise ValueError("a 'self_ensemble' defense takes exactly one SelfEnsemble model")
    model = members[0]
    if k is not _KEEP:
        check_crossmax(model.n_predictors, k)
        model.k = k
    return model


def save_self_ensemble(model: SelfEnsemble, path_stem: Path, provenance: dict) -> Path:
    """``<stem>.safetensors`` (the weights, with the model's config as metadata) and ``<stem>.json``."""
    config = model.config()
    return write_weights(model.state_dict(), {"arch": "self_ensemble", "config": json.dumps(config)}, path_stem,
                         {**provenance, "arch": model.arch, "config": config})


def load_self_ensemble(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[SelfEnsemble, dict]:
    """A :class:`SelfEnsemble` saved by :func:`save_self_ensemble`, in eval mode, and its provenance."""
    state, metadata, record, digest = read_weights(path)
    if metadata.get("arch") != "self_ensemble" or "config" not in metadata:
        raise CheckpointError(f"{path} is not a saved SelfEnsemble (its arch metadata is {metadata.get('arch')!r})")
    model = SelfEnsemble(**{**json.loads(metadata["config"]), "timm_weights": None})  # the weights are here
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise CheckpointError(f"{path} does not fit its own config: {error}") from None
    return model.to(device).eval(), record or {"source": str(path), "arch": model.arch, "sha256": digest}


# Our small-scale default for the heads (the notebook: Adam at 3.3e-5, one epoch per head on CIFAR-100).
HEAD_RECIPE = TrainRecipe(epochs=3, lr=0.01)


def _settings(params: dict, train: dict) -> dict:
    unknown = sorted(set(train) - {"backbone", "heads"})
    if unknown:
        raise ValueError(f"unknown train keys {unknown}: a self-ensemble has train = {{ backbone = {{...}}, "
                         "heads = {...} }")
    model = SelfEnsemble(**params)  # checks the options; 'mean'/'std' come from the base
    config = {key: value for key, value in model.config().items() if key not in ("mean", "std")}
    return {"model": config,
            "backbone": TrainRecipe.from_dict(train.get("backbone", {})).to_dict(),
            "heads": TrainRecipe.from_dict({**HEAD_RECIPE.to_dict(), **train.get("heads", {})}).to_dict()}


def _build(bases: list[Normalized], data, settings: dict, *, seed: int, device, progress: bool,
           work_dir: Path) -> tuple[list[SelfEnsemble], dict]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # the heads' and (without a base) the backbone's initial weights
        model = SelfEnsemble(**settings["model"])
    if bases:
        model.init_backbone_from(bases[0])
    summary = train_self_ensemble(model, data, TrainRecipe.from_dict(settings["backbone"]),
                                  TrainRecipe.from_dict(settings["heads"]), seed=seed, device=device, progress=progress,
                                  checkpoint_dir=work_dir)
    return [model], {"training": summary, "normalize_mean": list(model.normalize_mean),
                     "normalize_std": list(model.normalize_std)}


def _describe(manifest: dict) -> str:
    settings, training = manifest["settings"], manifest.get("training", {})
    accuracy = training.get("backbone", {}).get("clean_acc")
    start = f"from a trained model (sha256 {manifest['base_sha256'][0][:12]})" if manifest["base_sha256"] \
        else "from scratch"
    model = settings["model"]
    backbone = f"timm {model['timm_model']}" if model.get("timm_model") else f"ResNet-{model['depth']}"
    epochs = {phase: plural(settings[phase]["epochs"], "epoch") for phase in ("backbone", "heads")}
    return (f"multi-resolution self-ensemble (Fort and Lakshminarayanan 2024) trained here {start}: {backbone} "
            f"on the {len(model['stack']['resolutions'])}-resolution stack, {len(model['head_blocks']) + 1} "
            f"predictors, CrossMax k={model['k']}; backbone "
            f"{epochs['backbone']} at lr {settings['backbone']['lr']}"
            f"{f' (its own classifier: {100 * accuracy:.1f} % clean)' if accuracy is not None else ''}, heads "
            f"{epochs['heads']} each")


register_method("self_ensemble", Method(settings=_settings, build=_build, describe=_describe, bases=(0, 1),
                                        save=save_self_ensemble, load=load_self_ensemble))
