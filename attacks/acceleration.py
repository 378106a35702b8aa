"""Faster surrogates without changing the attacks: same-architecture stacking, channels_last, torch.compile.

``accelerate(models, stack=True, channels_last=True, compile=False)`` returns a list of
modules that attacks (and ensemble defenses) use exactly as the models they replace:

- ``stack``: models of the same architecture (same class, same parameter and buffer names
  and shapes) are grouped in a :class:`ModelStack` holding their weights stacked along a new
  first dimension; each is replaced by a :class:`StackedMember` view. When an attack asks
  several members of one stack for their outputs at the same input (:func:`member_outputs`,
  used by every fused-ensemble gradient), they run as one ``torch.func.vmap`` call; a member
  called alone runs alone, at the cost of the original model.
- ``channels_last``: every model's weights in the NHWC memory format (convolutions on a GPU
  run faster there); converted in place.
- ``compile``: ``torch.compile`` on each model or stack, in place (types kept); torch's donated
  buffers are turned off (process-wide), since attacks backpropagate with ``retain_graph=True``.
  ``True`` compiles in torch's default mode; a string names another mode: ``"reduce-overhead"``
  replays each compiled pass as a CUDA graph on a GPU (for small models whose passes are bound
  by kernel launches; on a CPU it compiles as the default mode does), ``"max-autotune"``.

bf16 needs no wrapper: call the attack inside ``torch.autocast(device_type, dtype=torch.bfloat16)``.
Every attack's own arithmetic (momentum, projection, signs) is element-wise and stays float32;
the convolutions and matrix products run in bf16. How much that changes results is measured
in ``benchmarks/README.md``.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn
from torch._functorch import config as functorch_config
from torch.func import functional_call, stack_module_state, vmap


class ModelStack(nn.Module):
    """Same-architecture models as one module: ``stack(x)`` -> outputs of shape [models, batch, ...].

    The weights are copied once (stacked, without gradients); the template is a copy of the first
    model, whose own weights are never used.
    """

    def __init__(self, models: Sequence[nn.Module]):
        super().__init__()
        if len(models) < 2:
            raise ValueError("a ModelStack needs at least two models")
        signature = architecture_signature(models[0])
        for model in models[1:]:
            if architecture_signature(model) != signature:
                raise ValueError(f"cannot stack {type(model).__name__} with {type(models[0]).__name__}: "
                                 "their classes or parameter shapes differ")
        params, buffers = stack_module_state(list(models))
        self.template = copy.deepcopy(models[0])
        self.size = len(models)
        self._names = {"params": list(params), "buffers": list(buffers)}
        for kind, tensors in (("params", params), ("buffers", buffers)):
            for index, tensor in enumerate(tensors.values()):
                self.register_buffer(f"_{kind}_{index}", tensor.detach().clone())

    def __len__(self) -> int:
        return self.size

    def weights(self, members: torch.Tensor | int | None = None) -> tuple[dict, dict]:
        """(params, buffers) of the given member(s): all members stacked if None."""
        found = []
        for kind in ("params", "buffers"):
            tensors = {name: getattr(self, f"_{kind}_{index}") for index, name in enumerate(self._names[kind])}
            found.append(tensors if members is None else {name: t[members] for name, t in tensors.items()})
        return found[0], found[1]

    def forward(self, x: torch.Tensor, members: Sequence[int] | None = None) -> torch.Tensor:
        """Every member's output (or those of ``members``, in that order) at ``x``, stacked."""
        if members is not None and list(members) == list(range(self.size)):
            members = None  # all of them, in order: the stacked weights as they are, no gather
        index = None if members is None else torch.as_tensor(list(members), device=x.device)
        params, buffers = self.weights(index)
        return vmap(self._call_one, in_dims=(0, 0, None))(params, buffers, x)

    def member_forward(self, index: int, x: torch.Tensor) -> torch.Tensor:
        return self._call_one(*self.weights(index), x)

    def _call_one(self, params: dict, buffers: dict, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.template, (params, buffers), (x,))


class StackedMember(nn.Module):
    """Member ``index`` of a :class:`ModelStack`, usable wherever the original model was."""

    def __init__(self, stack: ModelStack, index: int):
        super().__init__()
        self.stack = stack
        self.index = index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stack.member_forward(self.index, x)


def member_outputs(models: Sequence[nn.Module], x: torch.Tensor) -> list[torch.Tensor]:
    """``[model(x) for model in models]``, with the members of one stack evaluated in one vmapped call."""
    outputs: list[torch.Tensor | None] = [None] * len(models)
    groups: dict[int, tuple[ModelStack, list[tuple[int, int]]]] = {}
    for position, model in enumerate(models):
        if isinstance(model, StackedMember):
            groups.setdefault(id(model.stack), (model.stack, []))[1].append((position, model.index))
        else:
            outputs[position] = model(x)
    for stack, members in groups.values():
        if len(members) == 1:
            position = members[0][0]
            outputs[position] = models[position](x)
            continue
        together = stack(x, [index for _, index in members])
        for row, (position, _) in enumerate(members):
            outputs[position] = together[row]
    return outputs


COMPILE_MODES = (None, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")  # torch.compile's


def accelerate(models: nn.Module | Sequence[nn.Module], *, stack: bool = False, channels_last: bool = False,
               compile: bool | str = False) -> list[nn.Module]:
    """The models, made faster as asked (see the module docstring); same order, same outputs."""
    models = [models] if isinstance(models, nn.Module) else list(models)
    if channels_last:
        for model in models:
            model.to(memory_format=torch.channels_last)
    if stack:
        models = stack_same_architecture(models)
    if compile:
        mode = None if compile is True else compile
        if mode not in COMPILE_MODES:
            raise ValueError(f"compile must be True or one of {', '.join(map(repr, COMPILE_MODES[1:]))}, "
                             f"got {compile!r}")
        # attacks that take several gradients through one forward (AdaEA's per-model gradients) backpropagate with
        # retain_graph=True, which a compiled backward refuses when it donates its buffers (found by
        # benchmarks/attack_speed.py --variants compile on the CPU): turned off, at the cost of some backward memory
        if hasattr(functorch_config, "donated_buffer"):
            functorch_config.donated_buffer = False
        for module in {id(m): _compiled_unit(m) for m in models}.values():
            if getattr(module, "_compiled_call_impl", None) is None:  # compiled once, not again per call
                module.compile(mode=mode)
    return models


def stack_same_architecture(models: Sequence[nn.Module]) -> list[nn.Module]:
    """Each group of two or more same-architecture models replaced by views of one :class:`ModelStack`."""
    groups: dict[tuple, list[int]] = {}
    for position, model in enumerate(models):
        groups.setdefault(architecture_signature(model), []).append(position)
    result = list(models)
    for positions in groups.values():
        if len(positions) < 2:
            continue
        shared = ModelStack([models[p] for p in positions])
        for index, position in enumerate(positions):
            result[position] = StackedMember(shared, index)
    return result


def architecture_signature(model: nn.Module) -> tuple:
    """What must match for two models to share a stack: class, and every parameter's and buffer's name and shape."""
    tensors = list(model.named_parameters()) + list(model.named_buffers())
    return (type(model),) + tuple((name, tuple(t.shape), t.dtype) for name, t in tensors)


def _compiled_unit(model: nn.Module) -> nn.Module:
    return model.stack if isinstance(model, StackedMember) else model
