"""What an attack costs: its model passes, recorded by hooks, and the time of those passes alone.

An attack's necessary work is the forward and backward passes of its models; everything else
(projections, momentum, Python) is overhead. :class:`PassRecorder` records every pass an attack
makes (which model, input shape, with or without autograd, how many backward passes went
through its output); :func:`replay` runs exactly those passes on random inputs with nothing
around them. ``replay time / attack time`` is the attack's efficiency (1.0: no overhead). Against the machine
rather than the passes: :func:`recorded_flops` counts the passes' FLOPs and :func:`matmul_peak`
measures what the machine attains, so ``flops / time / peak`` is the share of the machine an
attack uses.
"""
from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATUS = Path("/proc/self/status")


@dataclass
class Pass:
    model: int  # index into the models watched
    shape: tuple[int, ...]  # input shape
    grad: bool  # recorded for autograd
    backwards: int = 0  # backward passes that went through this forward's output
    extra: tuple = ()  # positional arguments after the input (a ModelStack's member indices)


@dataclass
class PassRecorder:
    """Context manager recording every forward call of ``models`` and the backward passes through it.

    >>> with PassRecorder(models) as recorder:
    ...     attack(images, labels)
    >>> recorder.counts()   # {"forward": ..., "forward_grad": ..., "backward": ..., "images_forward": ...}
    """

    models: list[nn.Module]
    passes: list[Pass] = field(default_factory=list)

    def __enter__(self) -> PassRecorder:
        self.passes.clear()
        self._handles = [model.register_forward_hook(self._hook(index)) for index, model in enumerate(self.models)]
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()

    def _hook(self, index: int):
        def record(module, inputs, output):
            grad = isinstance(output, torch.Tensor) and output.requires_grad
            entry = Pass(index, tuple(inputs[0].shape), grad, extra=tuple(inputs[1:]))
            self.passes.append(entry)
            if grad:
                output.register_hook(lambda g: _count_backward(entry))
        return record

    def counts(self) -> dict[str, int]:
        """Passes summed over models: forward (all), forward_grad, backward; and images through forward."""
        return {"forward": len(self.passes), "forward_grad": sum(p.grad for p in self.passes),
                "backward": sum(p.backwards for p in self.passes),
                "images_forward": sum(p.shape[0] for p in self.passes)}

    def per_model(self) -> dict[int, Counter]:
        """For each model index: Counter of forward, forward_grad and backward passes."""
        table: dict[int, Counter] = {}
        for p in self.passes:
            table.setdefault(p.model, Counter()).update(forward=1, forward_grad=int(p.grad), backward=p.backwards)
        return table


def _count_backward(entry: Pass) -> None:
    entry.backwards += 1


def replay(models: list[nn.Module], passes: list[Pass], device: torch.device, seed: int = 0) -> float:
    """Seconds to run exactly ``passes`` (forwards, and backwards to the input) on random inputs, alone.

    Inputs and output gradients are made before the clock starts; models run in eval mode.
    """
    generator = torch.Generator(device=device).manual_seed(seed)
    inputs = {shape: torch.rand(shape, generator=generator, device=device)
              for shape in {p.shape for p in passes}}
    modes = [model.training for model in models]
    for model in models:
        model.eval()
    try:
        synchronize(device)
        started = time.perf_counter()
        for p in passes:
            _run_pass(models[p.model], inputs[p.shape], p)
        synchronize(device)
        return time.perf_counter() - started
    finally:
        for model, mode in zip(models, modes):
            model.train(mode)


def _run_pass(model: nn.Module, x: torch.Tensor, p: Pass) -> None:
    if not p.grad:
        with torch.no_grad():
            model(x, *p.extra)
        return
    with torch.enable_grad():
        leaf = x.detach().requires_grad_(True)
        out = model(leaf, *p.extra)
        for i in range(p.backwards):
            torch.autograd.grad(out, leaf, grad_outputs=torch.ones_like(out), retain_graph=i + 1 < p.backwards)


def pass_flops(model: nn.Module, shape: tuple[int, ...], device: torch.device, extra: tuple = ()) -> tuple[int, int]:
    """FLOPs of one forward pass of ``model`` on an input of ``shape`` and of one backward pass to that input (what
    an attack's gradient costs: no parameter gradients), as torch's FlopCounterMode counts them (matrix products and
    convolutions; element-wise work is not counted). The model runs in eval mode."""
    from torch.utils.flop_counter import FlopCounterMode

    mode = model.training
    model.eval()
    try:
        leaf = torch.rand(shape, device=device).requires_grad_(True)
        with torch.enable_grad():
            with FlopCounterMode(display=False) as forward:
                out = model(leaf, *extra)
            with FlopCounterMode(display=False) as backward:
                torch.autograd.grad(out, leaf, grad_outputs=torch.ones_like(out))
    finally:
        model.train(mode)
    return forward.get_total_flops(), backward.get_total_flops()


def recorded_flops(models: list[nn.Module], passes: list[Pass], device: torch.device) -> int:
    """The FLOPs of the recorded ``passes``: each forward, and each backward pass through its output."""
    per_pass: dict[tuple, tuple[int, int]] = {}
    total = 0
    for p in passes:
        key = (p.model, p.shape, p.extra)
        if key not in per_pass:
            per_pass[key] = pass_flops(models[p.model], p.shape, device, p.extra)
        forward, backward = per_pass[key]
        total += forward + p.backwards * backward
    return total


def matmul_peak(device: torch.device, dtype: torch.dtype = torch.float32, size: int = 4096, repeats: int = 5) -> float:
    """The attainable FLOP/s of the machine for ``dtype``: the best of ``repeats`` timed products of two square
    ``size`` x ``size`` matrices (2 size^3 FLOPs each), after one warm-up product."""
    generator = torch.Generator(device=device).manual_seed(0)
    a, b = (torch.rand(size, size, generator=generator, device=device).to(dtype) for _ in range(2))
    torch.matmul(a, b)
    best = math.inf
    for _ in range(repeats):
        synchronize(device)
        started = time.perf_counter()
        torch.matmul(a, b)
        synchronize(device)
        best = min(best, time.perf_counter() - started)
    return 2 * size ** 3 / best


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PeakMemory:
    """The peak memory while inside, in bytes: the CUDA allocator's peak on a GPU (models and inputs included),
    else the process's peak resident set size.

    On a CPU the high-water mark is reset at entry through /proc/self/clear_refs (Linux);
    where that is not possible, ``peak_bytes`` is None. The resident set counts memory the C library
    keeps after a free: once :func:`~robustbench_ens.environment.tune_cpu_allocator` has run, the
    peak cannot fall below what earlier work left resident.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.peak_bytes: int | None = None

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._resettable = True
        else:
            self._resettable = _reset_rss_peak()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device)
        elif self._resettable:
            self.peak_bytes = _status_kib("VmHWM") * 1024


def _reset_rss_peak() -> bool:
    try:
        _CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


def _status_kib(key: str) -> int:
    for line in _STATUS.read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise OSError(f"{key} not in {_STATUS}")
