"""The attack base classes: input checks, model-state hygiene, seeding, and the MI-FGSM loop.

Contract (shared by every attack in this package):
- constructed with surrogate models (one ``nn.Module`` or a sequence) mapping images in
  [0, 1] to logits, plus hyperparameters; called as ``x_adv = attack(images, labels)``;
- ``x_adv`` has the shape, dtype and device of ``images``, lies inside the eps-ball around
  ``images`` and inside [0, 1];
- the models' parameters, ``.grad`` fields and train/eval modes are left as found (models
  run in eval mode during the attack; gradients are taken with respect to the input only);
- randomness comes from a ``torch.Generator`` seeded from ``seed`` at every call (a random start
  from one generator per image, seeded from ``seed`` and its pixels), and torch's
  global RNG (which a randomised model, or a wrapped library, may draw from) is seeded from
  ``seed`` for the call and restored afterwards, as is the own ``generator`` of any submodule of
  the models that keeps one (a randomised defense's, e.g. ``defenses.multires.MultiResolutionStack``):
  the same seed and inputs give the same images, and the caller's and the models' RNG states are
  left as they were;
- ``targeted=True`` means ``labels`` are the target classes and the loss is minimised;
- ``labels`` are integer class indices (moved to the images' device); the images must have the
  dtype of the models' weights (float32 images for float32 models), and each model returns a
  logits tensor [N, classes].
"""
from __future__ import annotations

import contextlib
import hashlib
import warnings
from collections.abc import Sequence

import torch
from torch import nn

from .acceleration import member_outputs
from .checks import positive_int, positive_number
from .fusion import fused_loss
from .losses import check_loss, classification_loss
from .transforms import resolve_transforms

NORMS = ("Linf", "L2")


class Attack:
    """Base class: checks arguments and inputs, puts models in eval mode, seeds a generator.

    Subclasses implement :meth:`forward` ``(images, labels) -> x_adv`` and may use
    ``self.generator`` (on the images' device) for tensor randomness and ``self.host_generator``
    (on the CPU; the same generator when the images are there) for draws read back into Python.
    """

    norms: tuple[str, ...] = NORMS  # the threat models the attack's paper defines
    gradient_free: bool = False  # True for an attack that only queries the model's outputs (black-box)

    def __init__(self, models: nn.Module | Sequence[nn.Module], *, eps: float, norm: str = "Linf",
                 targeted: bool = False, seed: int = 0):
        self.models = _as_model_list(models)
        positive_number(eps, "eps")
        if norm not in self.norms:
            raise ValueError(f"{type(self).__name__} supports norm {' or '.join(self.norms)}, got {norm!r}")
        if norm == "Linf" and eps >= 1:
            warnings.warn(f"Linf eps={eps} on images in [0, 1] lets every pixel take any value; "
                          f"did you mean eps={eps}/255?", stacklevel=2)
        self.eps = float(eps)
        self.norm = norm
        self.targeted = bool(targeted)
        self.seed = int(seed)
        self.generator: torch.Generator | None = None
        self.host_generator: torch.Generator | None = None

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        _check_inputs(images, labels)
        images, labels = images.detach(), labels.detach().to(images.device, torch.long)
        if not len(images):  # nothing to attack (a cascade's stage with no point left, say)
            return images.clone()
        self.generator = torch.Generator(device=images.device).manual_seed(self.seed)
        # draws that steer Python (which model, which resize) come from the host: on a GPU, a draw there
        # would stall the device at every step until the number is read back
        self.host_generator = self.generator if images.device.type == "cpu" else \
            torch.Generator().manual_seed(self.seed)
        try:
            with _eval_mode(self.models), _frozen_parameters(self.models), \
                    _seeded_global_rng(images.device, self.seed), _seeded_model_generators(self.models, self.seed), \
                    torch.enable_grad():
                x_adv = self.forward(images, labels)
        except (IndexError, RuntimeError) as error:  # cross-entropy's IndexError; gather's RuntimeError (CW loss)
            if "out of bounds" not in str(error):
                raise
            raise _labels_beyond_classes(labels.max().item(), str(error)) from error
        finally:
            self.generator = self.host_generator = None
        return x_adv.detach().to(images.dtype)

    def __repr__(self) -> str:
        params = ", ".join(f"{key}={value!r}" for key, value in self.hyperparameters().items())
        return f"{type(self).__name__}({len(self.models)} models, {params})"

    def hyperparameters(self) -> dict:
        """The attack's settings, as recorded in results and leaderboards."""
        return {key: value for key, value in vars(self).items()
                if key not in ("models", "generator", "host_generator") and not key.startswith("_")}

    def signed(self, loss: torch.Tensor) -> torch.Tensor:
        """The objective to ascend: the loss, or its negative for a targeted attack."""
        return -loss if self.targeted else loss

    def project(self, images: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
        """Back into the eps-ball around ``images`` (in ``self.norm``) and into [0, 1]."""
        delta = x_adv - images
        if self.norm == "Linf":
            delta = torch.clamp(delta, min=-self.eps, max=self.eps)
        else:
            norms = per_sample_norm(delta, p=2)
            delta = delta * torch.clamp(self.eps / norms.clamp_min(1e-12), max=1.0)
        return torch.clamp(images + delta, min=0, max=1)


class MomentumIterativeAttack(Attack):
    """The MI-FGSM loop (Dong et al., CVPR 2018) with hooks, in the TransferAttack style.

    For t = 0 .. steps-1::

        g      = gradient(x, x_t, y)                   # hook: the ensemble's ascent direction at x_t,
                                                       #   through the input transformations
        m      = decay * m + g / mean(|g|)             # hook: accumulate_momentum
        x_t+1  = project(x_t + step(m))                # hook: step (sign for Linf, L2-normalised for L2)

    (x: the clean images, around which every projection is taken.)

    A subclass overrides only what differs from this loop (usually :meth:`gradient`), and
    computes its gradients with :meth:`model_gradient`, :meth:`ensemble_gradient` or
    :meth:`transformed_gradient`: these apply ``transforms`` (DI, TI, SI, Admix:
    :mod:`attacks.transforms`, composed in order) to every surrogate pass and ascend ``loss``
    (``"ce"`` or the CW margin ``"cw"``: :mod:`attacks.losses`).
    ``alpha`` defaults to ``eps / steps`` (the MI-FGSM paper's choice).
    """

    def __init__(self, models, *, eps: float = 8 / 255, alpha: float | None = None, steps: int = 10,
                 decay: float = 1.0, norm: str = "Linf", targeted: bool = False,
                 random_start: bool = False, seed: int = 0, transforms=(), loss: str = "ce"):
        super().__init__(models, eps=eps, norm=norm, targeted=targeted, seed=seed)
        self.transforms = resolve_transforms(transforms)
        self.loss = check_loss(loss)
        steps = positive_int(steps, "steps")
        self.alpha = positive_number(self.eps / steps if alpha is None else alpha, "alpha")
        self.steps = steps
        self.decay = positive_number(decay, "decay")
        self.random_start = bool(random_start)

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        x_adv = self.init_adversarial(images)
        momentum = torch.zeros_like(images)
        for _ in range(self.steps):
            grad = self.gradient(images, x_adv, labels)
            momentum = self.accumulate_momentum(momentum, grad)
            x_adv = self.project(images, x_adv + self.step(momentum)).detach()
        check_finite(momentum, self)
        return x_adv

    def init_adversarial(self, images: torch.Tensor) -> torch.Tensor:
        """The starting point: ``images``, or a uniform draw in the eps-ball if ``random_start``.

        Each image draws its start from its own generator, seeded from ``seed`` and the image's
        pixels: a point starts at the same place whatever batch it is in, so an attack run on a
        subset of the points (a cascade's next stage) gives each the start it gets in the full run.
        """
        if not self.random_start:
            return images.clone()
        generators = per_example_generators(images, self.seed)
        noise = _stacked_draws(torch.rand, generators, images)
        if self.norm == "Linf":
            delta = (2 * noise - 1) * self.eps
        else:
            direction = _stacked_draws(torch.randn, generators, images)
            radius = noise.flatten(1)[:, :1].view(-1, *([1] * (images.dim() - 1))) * self.eps
            delta = direction / per_sample_norm(direction, p=2) * radius
        return self.project(images, images + delta)

    def gradient(self, images: torch.Tensor, x_adv: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The ascent direction at ``x_adv`` (of the loss, or of its negative when targeted)."""
        raise NotImplementedError

    def accumulate_momentum(self, momentum: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        return momentum * self.decay + l1_normalised(grad)

    def model_gradient(self, model: nn.Module, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The ascent direction of one model's loss at ``x``."""
        return self.transformed_gradient(lambda z, y: classification_loss(model(z), y, self.loss), x, labels)

    def ensemble_gradient(self, models: Sequence[nn.Module], x: torch.Tensor, labels: torch.Tensor,
                          fusion: str = "logits", weights=None) -> torch.Tensor:
        """The ascent direction at ``x`` of ``models``' fused loss (weights as given; uniform if None)."""
        weights = [1.0 / len(models)] * len(models) if weights is None else weights
        return self.transformed_gradient(
            lambda z, y: fused_loss(member_outputs(models, z), y, fusion, weights, self.loss), x, labels)

    def transformed_gradient(self, loss_fn, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The gradient of ``loss_fn(input, labels)`` (signed) at ``x``, through the input transformations.

        Without transformations: the gradient at ``x``. With them: the mean over the copies of ``x`` they make of
        the gradient through each copy (one surrogate pass per copy, so memory stays that of one pass), then
        every transformation's gradient smoothing, in order.
        """
        if not self.transforms:
            return input_gradient(lambda z: self.signed(loss_fn(z, labels)), x)
        x = x.detach().requires_grad_(True)
        copies = self.transformed(x)
        total = torch.zeros_like(x)
        for copy in copies:
            total += torch.autograd.grad(self.signed(loss_fn(copy, labels)), x, retain_graph=True)[0]
        return self.smoothed(total / len(copies))

    def transformed(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The inputs the surrogates see in place of ``x``: each transformation applied to every copy so far."""
        copies = [x]
        for transform in self.transforms:
            copies = [out for copy in copies for out in transform.copies(copy, self.host_generator)]
        return copies

    def smoothed(self, grad: torch.Tensor) -> torch.Tensor:
        """``grad`` through every transformation's gradient hook (TI's smoothing), in order."""
        for transform in self.transforms:
            grad = transform.smooth(grad)
        return grad

    def step(self, momentum: torch.Tensor, size: float | None = None) -> torch.Tensor:
        """A move of ``size`` (default ``alpha``) along ``momentum``: its sign (Linf) or direction (L2)."""
        size = self.alpha if size is None else size
        if self.norm == "Linf":
            return size * momentum.sign()
        return size * momentum / per_sample_norm(momentum, p=2).clamp_min(1e-12)


def check_finite(momentum: torch.Tensor, attack: Attack) -> None:
    """A FloatingPointError unless ``momentum`` is finite. A NaN gradient would otherwise pass silently: its sign
    is 0, so the image would simply not move; and a NaN, once in the momentum, stays there to the end."""
    if not torch.isfinite(momentum).all():
        bad = int((~torch.isfinite(momentum.flatten(1))).any(1).sum())
        raise FloatingPointError(f"{type(attack).__name__}: the gradient became NaN or infinite for {bad} of "
                                 f"{len(momentum)} images; a surrogate's output or the loss is not finite there")


def input_gradient(loss_fn, x: torch.Tensor) -> torch.Tensor:
    """Gradient of the scalar ``loss_fn(x)`` with respect to ``x`` only (no parameter .grad)."""
    x = x.detach().requires_grad_(True)
    return torch.autograd.grad(loss_fn(x), x)[0]


def per_example_generators(images: torch.Tensor, seed: int) -> list[torch.Generator]:
    """One CPU generator per image, seeded from ``seed`` and the image's pixels (a BLAKE2b digest of its bytes)."""
    pixels = images.detach().to("cpu", torch.float32).contiguous().numpy()
    key = int(seed).to_bytes(8, "little", signed=True)
    return [torch.Generator().manual_seed(int.from_bytes(
        hashlib.blake2b(row.tobytes(), digest_size=8, key=key).digest(), "little") >> 1) for row in pixels]


def _stacked_draws(draw, generators: list[torch.Generator], like: torch.Tensor) -> torch.Tensor:
    """``draw`` (torch.rand or torch.randn) of one image's shape from each generator, stacked like ``like``."""
    return torch.stack([draw(like.shape[1:], generator=g) for g in generators]).to(like.device, like.dtype)


def per_sample_norm(t: torch.Tensor, p: float) -> torch.Tensor:
    """The p-norm of each sample, shaped to broadcast against ``t``."""
    return t.flatten(1).norm(p=p, dim=1).view(-1, *([1] * (t.dim() - 1)))


def l1_normalised(t: torch.Tensor) -> torch.Tensor:
    """Each sample divided by its mean absolute value (its L1 norm up to a constant); an all-zero sample stays 0.

    Only exact zeros are guarded: a tiny but nonzero gradient (a saturated softmax) is scaled up like any
    other, as MI-FGSM's g / ||g||_1 (and torchattacks) does.
    """
    dims = tuple(range(1, t.dim()))
    return divided(t, torch.mean(torch.abs(t), dim=dims, keepdim=True))


def divided(t: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``t / scale`` where ``scale`` is nonzero; ``t`` (which is then 0 too) where it is exactly 0."""
    return t / torch.where(scale == 0, torch.ones_like(scale), scale)


def _as_model_list(models) -> list[nn.Module]:
    if isinstance(models, nn.ModuleDict):
        raise TypeError("models is an nn.ModuleDict: pass list(models.values())")
    if isinstance(models, nn.Module):
        models = list(models) if isinstance(models, nn.ModuleList) else [models]
    if isinstance(models, (str, bytes)) or not isinstance(models, Sequence):
        raise TypeError(f"models must be an nn.Module or a sequence of them, got {type(models).__name__}")
    models = list(models)
    if not models:
        raise ValueError("an attack needs at least one surrogate model")
    for model in models:
        if not isinstance(model, nn.Module):
            raise TypeError(f"every surrogate must be an nn.Module, got {type(model).__name__}")
    return models


class LabelsChecked(nn.Module):
    """``model``, checking at its first call that every label is below its number of classes: for the attacks
    that hand the work to a library (pyautoattack, torchattacks), which would count points whose label has no logit
    as misclassified and return them unchanged. It checks the library's own first pass, so a randomised model makes
    no extra draw. (The other attacks learn it from their loss: :meth:`Attack.__call__`.)"""

    def __init__(self, model: nn.Module, labels: torch.Tensor):
        super().__init__()
        self.model, self.largest = model, int(labels.max()) if len(labels) else -1
        self.checked = False
        self.train(model.training)  # a library that restores the mode it found leaves the model as it was

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(x)
        if not self.checked:
            if self.largest >= logits.shape[-1]:
                raise _labels_beyond_classes(self.largest, f"the model has {logits.shape[-1]} classes")
            self.checked = True
        return logits


def _labels_beyond_classes(largest: int, detail: str) -> ValueError:
    return ValueError(f"labels must be class indices below the models' number of classes; the largest is {largest} "
                      f"({detail})")


def _check_inputs(images, labels) -> None:
    if not isinstance(images, torch.Tensor) or not images.is_floating_point():
        raise TypeError("images must be a floating-point tensor (N, C, H, W) in [0, 1]")
    if images.dim() != 4:
        raise ValueError(f"images must have shape (N, C, H, W), got {tuple(images.shape)}")
    if not isinstance(labels, torch.Tensor) or labels.dim() != 1:
        raise ValueError("labels must be a 1-D tensor of class indices")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(f"labels must be integer class indices, got dtype {labels.dtype}")
    if labels.numel() and labels.min() < 0:
        raise ValueError(f"labels must be class indices >= 0, got {labels.min().item()}")
    if labels.shape[0] != images.shape[0]:
        raise ValueError(f"batch sizes differ: {images.shape[0]} images, {labels.shape[0]} labels")
    if images.numel() and (images.isnan().any() or images.min() < 0 or images.max() > 1):
        raise ValueError(f"images must lie in [0, 1] (and hold no NaN), got values in "
                         f"[{images.min().item():.4g}, {images.max().item():.4g}]")


@contextlib.contextmanager
def _seeded_global_rng(device: torch.device, seed: int):
    """Torch's global RNG seeded from ``seed`` inside (the CPU's, and ``device``'s if it is a GPU), the caller's
    state restored on exit: a randomised model's draws, and those of a library that seeds or draws from the global
    RNG (AutoAttack, torchattacks' Square), repeat from call to call without touching the caller's stream."""
    cuda = device.type == "cuda"
    with torch.random.fork_rng(devices=[device] if cuda else []):
        torch.random.default_generator.manual_seed(seed)
        if cuda:
            with torch.cuda.device(device):
                torch.cuda.manual_seed(seed)
        yield


@contextlib.contextmanager
def _seeded_model_generators(models: list[nn.Module], seed: int):
    """Every ``torch.Generator`` a submodule of ``models`` keeps as its ``generator`` (a randomised defense that
    draws from its own generator, not the global RNG) seeded from ``seed`` inside, its state restored on exit."""
    generators = {id(g): g for model in models for module in model.modules()
                  if isinstance(g := getattr(module, "generator", None), torch.Generator)}
    states = {key: g.get_state() for key, g in generators.items()}
    for g in generators.values():
        g.manual_seed(seed)
    try:
        yield
    finally:
        for key, g in generators.items():
            g.set_state(states[key])


@contextlib.contextmanager
def _frozen_parameters(models: list[nn.Module]):
    """No parameter requires a gradient inside; each one's flag restored on exit.

    The package's own attacks differentiate with respect to the input only, but a wrapped library (AutoAttack)
    (its FAB) calls ``.backward()``: with trainable parameters that also computes (and leaves in ``.grad``) every
    weight gradient, for a convolution as many FLOPs as the input gradient, for nothing. On the CPU with
    channels_last models, oneDNN's 1x1 convolution backward-weights kernel also crashed the cifar10 run there (a
    segfault in ``jit_avx512_common_1x1_convolution_bwd_weights``, torch 2.14.1).
    """
    saved = [(parameter, parameter.requires_grad) for model in models for parameter in model.parameters()]
    try:
        for parameter, _ in saved:
            parameter.requires_grad_(False)
        yield
    finally:
        for parameter, flag in saved:
            parameter.requires_grad_(flag)


@contextlib.contextmanager
def _eval_mode(models: list[nn.Module]):
    """Every module in eval mode inside; each submodule's own mode restored on exit."""
    saved = [(module, module.training) for model in models for module in model.modules()]
    try:
        for model in models:
            model.eval()
        yield
    finally:
        for module, training in saved:
            module.training = training
