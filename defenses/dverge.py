"""DVERGE (Yang et al., "DVERGE: Diversifying Vulnerabilities for Enhanced Robust Generation of
Ensembles", NeurIPS 2020): feature distillation, the cross-training step, the training loop
(resumable per epoch) and the DVERGE ensemble classifier.

Defaults follow the official code (zjysteven/DVERGE): features are taken before the ReLU;
layers of a CIFAR ResNet-20 are numbered 1..20 (1: the stem's BN, then each block's first
BN and its residual sum, 20: the logits), one layer drawn per epoch and shared by all
members; distillation takes 10 sign steps of 0.007 with momentum 1 on L1-normalised
gradients inside an Linf ball of 0.07, with no random start; the distillation target is
drawn from an independently shuffled pass over the training set; member i's loss sums the
cross-entropy on every other member's distilled images, labelled with the source image's
label; "+adv" adds the cross-entropy on PGD examples (8/255, step 2/255, 10 steps, random
start) against member i itself. Training: 200 epochs, batch 128, SGD lr 0.1, momentum 0.9,
weight decay 1e-4, lr x0.1 at epochs 100 and 150, crop + flip augmentation, starting (as
in the paper) from a trained baseline ensemble. The ensemble's output is the log of the
members' mean softmax.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
import torchattacks
from torch import nn
from tqdm.auto import tqdm

from attacks.base import l1_normalised
from robustbench_ens.text import plural
from robustbench_ens.zoo.derived import Method, register_method
from robustbench_ens.zoo.normalize import Normalized
from robustbench_ens.zoo.resnet_cifar import CifarResNet
from robustbench_ens.zoo.train import augment, log_epoch, recipe_from_dict

from .checkpointing import EpochSchedule, resume_epoch, save_epoch
from .ensemble import Ensemble
from .registry import register_defense


def feature_layers(model: Normalized) -> int:
    """How many distillation layers ``model`` has (20 for a ResNet-20)."""
    return 2 + 2 * len(_blocks(model))


def features(model: Normalized, x: torch.Tensor, layer: int) -> torch.Tensor:
    """``model``'s pre-ReLU features at DVERGE's ``layer`` (1-based; the last layer is the logits)."""
    blocks, n_layers = _blocks(model), feature_layers(model)
    if isinstance(layer, bool) or not isinstance(layer, int) or not 1 <= layer <= n_layers:
        raise ValueError(f"layer must be an integer in [1, {n_layers}], got {layer!r}")
    net = model.net
    stem = net.bn1(net.conv1(model.normalize(x)))
    if layer == 1:
        return stem
    out = F.relu(stem)
    for index, block in enumerate(blocks):
        first, residual = block.pre_activations(out)
        if layer == 2 + 2 * index:
            return first
        if layer == 3 + 2 * index:
            return residual
        out = F.relu(residual)
    return net.classify(out)


def distill(model: Normalized, source: torch.Tensor, target: torch.Tensor, layer: int, *, eps: float = 0.07,
            step_size: float = 0.007, steps: int = 10, decay: float = 1.0) -> torch.Tensor:
    r"""x' in the Linf ``eps``-ball around ``source`` whose ``layer`` features imitate ``target``'s.

    Minimises ||h_l(x') - h_l(target)||^2 (mean) from x' = source with
    m <- decay m + g / mean|g|,  x' <- clip_{source, eps}(x' - step_size sign(m)), clamped to [0, 1].
    Gradients are taken with respect to the images only; the model's mode is the caller's.
    """
    with torch.no_grad():
        goal = features(model, target, layer)
    x, momentum = source.detach().clone(), torch.zeros_like(source)
    for _ in range(steps):
        x.requires_grad_(True)
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(F.mse_loss(features(model, x, layer), goal), x)
        momentum = decay * momentum + l1_normalised(grad)
        x = source + torch.clamp(x.detach() - step_size * momentum.sign() - source, -eps, eps)
        x = torch.clamp(x, 0, 1)
    return x.detach()


def cross_training_loss(member: nn.Module, index: int, distilled: list[torch.Tensor],
                        labels: torch.Tensor) -> torch.Tensor:
    """Member ``index``'s DVERGE loss: sum over j != index of CE(f_index(x'_j), y_source)."""
    return sum(F.cross_entropy(member(x), labels) for j, x in enumerate(distilled) if j != index)


def dverge_step(members: list[Normalized], optimizers: list[torch.optim.Optimizer], source: torch.Tensor,
                labels: torch.Tensor, target: torch.Tensor, layer: int, *, adv: bool = False,
                adv_coeff: float = 1.0, **distill_kwargs) -> list[float]:
    """One DVERGE training step on a batch (members in train mode, as in the official code).

    Every member distils ``source`` towards ``target`` at ``layer``; each member then takes
    one optimiser step on its cross-training loss (times ``adv_coeff`` and plus the PGD
    cross-entropy when ``adv``, the "+adv" variant). Returns the members' losses.
    """
    if len(members) < 2 or len(members) != len(optimizers):
        raise ValueError("DVERGE needs at least two members and one optimiser per member")
    for member in members:
        member.train()
    distilled = [distill(member, source, target, layer, **distill_kwargs) for member in members]
    losses = []
    for i, (member, optimizer) in enumerate(zip(members, optimizers)):
        loss = cross_training_loss(member, i, distilled, labels)
        if adv:
            loss = adv_coeff * loss + F.cross_entropy(member(_pgd(member, source, labels)), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def _pgd(member: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    attack = torchattacks.PGD(member, eps=8 / 255, alpha=2 / 255, steps=10, random_start=True)
    attack.set_model_training_mode(model_training=True, batchnorm_training=True)  # as the official code
    return attack(images, labels)


def _blocks(model: Normalized) -> list:
    if not isinstance(model, Normalized) or not isinstance(model.net, CifarResNet):
        raise TypeError("DVERGE distillation needs a zoo CIFAR ResNet (e.g. create_model('resnet20_b'))")
    return model.net.blocks()


@dataclass(frozen=True)
class DVERGERecipe(EpochSchedule):
    """DVERGE training hyper-parameters (official defaults); ``n_train=None`` uses every training point,
    ``epoch_steps=None`` a whole pass per epoch (an integer: that many batches of it, a compute budget)."""

    epochs: int = 200
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    milestones: tuple[int, ...] = (100, 150)
    gamma: float = 0.1
    eps: float = 0.07
    step_size: float = 0.007
    steps: int = 10
    adv: bool = False
    adv_coeff: float = 1.0
    n_train: int | None = None
    epoch_steps: int | None = None

    def __post_init__(self):
        self.check_schedule()
        if not self.lr > 0 or not self.eps >= 0 or not self.step_size >= 0:
            raise ValueError("lr must be > 0, eps and step_size >= 0")
        if not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"steps must be an integer >= 1, got {self.steps!r}")

    @classmethod
    def from_dict(cls, values: dict) -> DVERGERecipe:
        """Build from a mapping (e.g. a suite's ``train`` table); unknown keys are a ValueError."""
        return recipe_from_dict(cls, values, "DVERGE recipe")


def train_dverge(members: list[Normalized], data, recipe: DVERGERecipe = DVERGERecipe(), *, seed: int = 0,
                 device: str | torch.device = "cpu", checkpoint_dir: Path | None = None,
                 progress: bool = True) -> dict:
    """Train ``members`` in place with DVERGE; returns a summary (layers drawn, losses, time).

    With ``checkpoint_dir``, the members and their optimisers' momentum are saved after every
    epoch (safetensors, written atomically, ``state.json`` last); a later call with the same
    recipe and seed resumes after the last saved epoch. Each epoch's randomness (layer, data
    order, augmentation, PGD starts) comes from a generator seeded by (seed, epoch), so a
    resumed run draws what an uninterrupted one would.
    """
    if len(members) < 2:
        raise ValueError("DVERGE needs at least two members")
    x_train, y_train = data.train()
    if recipe.n_train is not None:
        x_train, y_train = x_train[:recipe.n_train], y_train[:recipe.n_train]
    n, depth = len(x_train), feature_layers(members[0])
    steps_per_epoch = recipe.steps_per_epoch(n)
    for member in members:
        member.to(device)
    optimizers = [torch.optim.SGD(m.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                                  weight_decay=recipe.weight_decay) for m in members]
    history = {"layers": [], "losses": [], "epoch_time_s": []}
    start_epoch = resume_epoch(checkpoint_dir, members, optimizers, recipe, seed, history, device, "DVERGE")
    started = time.perf_counter()
    distill_kwargs = {"eps": recipe.eps, "step_size": recipe.step_size, "steps": recipe.steps}
    bar = tqdm(total=(recipe.epochs - start_epoch) * steps_per_epoch, disable=None if progress else True, desc="DVERGE",
               unit="it", leave=False)
    for epoch in range(start_epoch, recipe.epochs):
        epoch_started = time.perf_counter()
        epoch_seed = seed * 1_000_003 + epoch
        generator = torch.Generator().manual_seed(epoch_seed)
        layer = int(torch.randint(1, depth + 1, (), generator=generator))
        for optimizer in optimizers:
            for group in optimizer.param_groups:
                group["lr"] = recipe.lr_at(epoch)
        sources, targets = torch.randperm(n, generator=generator), torch.randperm(n, generator=generator)
        epoch_losses = torch.zeros(len(members))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(epoch_seed)  # torchattacks' PGD starts (+adv)
            for step in range(steps_per_epoch):
                batch = slice(step * recipe.batch_size, (step + 1) * recipe.batch_size)
                source = augment(x_train[sources[batch]], 4, True, generator).to(device)
                target = augment(x_train[targets[batch]], 4, True, generator).to(device)
                losses = dverge_step(members, optimizers, source, y_train[sources[batch]].to(device), target, layer,
                                     adv=recipe.adv, adv_coeff=recipe.adv_coeff, **distill_kwargs)
                epoch_losses += torch.tensor(losses) / steps_per_epoch
                bar.update(1)
                bar.set_postfix(epoch=f"{epoch + 1}/{recipe.epochs}", layer=layer,
                                loss=f"{sum(losses) / len(losses):.3f}", refresh=False)
        log_epoch(bar, progress, "DVERGE", epoch, recipe.epochs, started,
                  f"layer {layer}, mean member loss {epoch_losses.mean():.3f}")
        history["layers"].append(layer)
        history["losses"].append(epoch_losses.tolist())
        history["epoch_time_s"].append(round(time.perf_counter() - epoch_started, 3))
        if checkpoint_dir is not None:
            save_epoch(checkpoint_dir, members, optimizers, recipe, seed, epoch + 1, history, "dverge")
    bar.close()
    for member in members:
        member.eval()
    return {**history, "epochs": recipe.epochs, "resumed_from_epoch": start_epoch,
            "train_time_s": round(time.perf_counter() - started, 3)}


class DVERGE(Ensemble):
    """A DVERGE ensemble: members (zoo CIFAR ResNets) whose vulnerabilities :meth:`fit` diversifies.

    Classifies with the log of the members' mean softmax (the paper's output); any
    :class:`~defenses.Ensemble` aggregation can be chosen instead.
    """

    def __init__(self, members: list[Normalized], aggregation: str = "mean_prob", crossmax_k: int | None = None):
        if len(members) < 2:
            raise ValueError("DVERGE needs at least two members")
        for member in members:
            _blocks(member)  # a zoo CIFAR ResNet, or a TypeError that says so
        super().__init__(members, aggregation=aggregation, crossmax_k=crossmax_k)

    def fit(self, data, recipe: DVERGERecipe | None = None, **kwargs) -> dict:
        """DVERGE training of the members in place (see :func:`train_dverge` for ``kwargs``)."""
        return train_dverge(list(self.members), data, recipe or DVERGERecipe(), **kwargs)


@register_defense("dverge")
def build_dverge(members: list[Normalized], aggregation: str = "mean_prob", crossmax_k: int | None = None) -> DVERGE:
    """A DVERGE ensemble of already trained members (e.g. the DVERGE paper's checkpoints)."""
    return DVERGE(members, aggregation=aggregation, crossmax_k=crossmax_k)


def _settings(params: dict, train: dict) -> dict:
    if params:
        raise ValueError(f"DVERGE takes no params (got {sorted(params)}); its options are the recipe's, under train")
    return {"recipe": asdict(DVERGERecipe.from_dict(train))}


def _build(bases: list[Normalized], data, settings: dict, *, seed: int, device, progress: bool,
           work_dir: Path) -> tuple[list[Normalized], dict]:
    """Copies of the trained ``bases`` diversified by DVERGE; ``work_dir`` holds the per-epoch checkpoints."""
    members = [copy.deepcopy(base) for base in bases]
    DVERGE(members)  # refuses members DVERGE cannot distil
    summary = train_dverge(members, data, DVERGERecipe.from_dict(settings["recipe"]), seed=seed, device=device,
                           checkpoint_dir=work_dir, progress=progress)
    return members, {"training": summary}


def _describe(manifest: dict) -> str:
    recipe = manifest["settings"]["recipe"]
    epochs = plural(recipe["epochs"], "epoch")
    if recipe.get("epoch_steps"):
        epochs += f" of {recipe['epoch_steps']} batches"
    schedule = (f" (x{recipe['gamma']} from epoch {', '.join(str(m + 1) for m in recipe['milestones'])})"
                if recipe["milestones"] else "")
    return (f"DVERGE (Yang et al., NeurIPS 2020) trained here from {manifest['n_models']} trained members (sha256 "
            f"{', '.join(h[:12] for h in manifest['base_sha256'])}): {epochs}, lr {recipe['lr']}{schedule}, "
            f"distillation eps {recipe['eps']}, "
            f"{recipe['steps']} steps of {recipe['step_size']}{', +adv' if recipe['adv'] else ''}")


register_method("dverge", Method(settings=_settings, build=_build, describe=_describe, bases=(2, None)))
