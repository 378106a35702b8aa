"""Where a run happens: device choice, hardware description, library versions, git commit."""
from __future__ import annotations

import ctypes
import os
import platform
import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path

import torch

from . import __version__


class DeviceError(ValueError):
    """A device was asked for that this machine does not have."""


def select_device(name: str = "auto") -> torch.device:
    """``auto`` -> cuda if available else cpu; ``cuda``/``cuda:N`` checked to exist."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DeviceError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {name!r} asked for, but this machine has no CUDA GPU; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(f"device {name!r} asked for, but only {torch.cuda.device_count()} GPU(s) exist")
    elif device.type != "cpu":
        raise DeviceError(f"device {name!r} is not supported; use auto, cpu, cuda or cuda:N")
    return device


def available_cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup CPU quota (containers, CI)."""
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            count = min(count, max(1, int(int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return count


def configure_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads to ``threads`` (default: :func:`available_cpus`); returns the number set.

    torch's own default counts the machine's cores, not the ones a container or affinity mask
    grants, and more threads than CPUs slow every convolution down.
    """
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be an integer >= 1, got {threads!r}")
    threads = threads or available_cpus()
    torch.set_num_threads(threads)
    return threads


# glibc's mallopt parameters, and the largest mmap threshold it accepts on a 64-bit machine
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024
_INT_MAX = 2**31 - 1
_PRELOADED_ALLOCATORS = ("jemalloc", "tcmalloc", "mimalloc")


def tune_cpu_allocator() -> str:
    """Make glibc's malloc keep the memory a CPU pass frees for the next pass; returns what was done.

    By default glibc serves blocks above its mmap threshold (128 KiB at first, raised as such blocks
    are freed) with a fresh ``mmap`` and unmaps them when they are freed, and it trims the free top
    of its heap beyond twice that threshold: a forward or backward pass then often page-faults
    (and the kernel zeroes) its activations again, depending on the order of earlier frees. That
    cost grows with the memory alive at once: on a 2-core CPU, AdaEA on eight CIFAR ResNets (K
    autograd graphs alive through K^2 scoring passes) ran 1.25x faster tuned, plain Ens unchanged
    (benchmarks/README.md). This sets the mmap threshold to glibc's maximum (32 MiB) and stops
    trimming, which is what preloading jemalloc or tcmalloc (the usual advice for PyTorch on CPUs)
    buys by other means: the process keeps its peak resident memory instead of returning it
    between passes; blocks above 32 MiB are still mmap'd.

    Does nothing where the C library is not glibc or where jemalloc, tcmalloc or mimalloc is
    preloaded (``LD_PRELOAD``). Returns ``"glibc, freed memory kept"``, or why nothing was done.
    """
    preload = os.environ.get("LD_PRELOAD", "")
    for name in _PRELOADED_ALLOCATORS:
        if name in preload:
            return f"{name} (preloaded), left as is"
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return "system default (not glibc), left as is"
    try:
        libc = ctypes.CDLL("libc.so.6")
        applied = libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX) and libc.mallopt(_M_TRIM_THRESHOLD, _INT_MAX)
    except (OSError, AttributeError):
        applied = False
    return "glibc, freed memory kept" if applied else "glibc default (mallopt refused)"


def hardware(device: torch.device) -> dict:
    info = {"device": str(device), "cpu": _cpu_name(), "threads": torch.get_num_threads(),
            "torch": torch.__version__, "platform": platform.platform()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def versions(device: torch.device | None = None) -> dict:
    """The library versions and git commit a result was made with, and (given the run's ``device``) the machine:
    its CPU, and its GPU where the device is one (under Ray, the driver's: its workers may differ). Each cell's
    store row keeps it, so a run resumed on other hardware still says where each cell was computed (the page's
    setting names only the publishing machine)."""
    found = {"robustbench_ens": __version__, "python": platform.python_version()}
    if device is not None:
        machine = hardware(device)
        found.update({key: machine[key] for key in ("cpu", "gpu") if key in machine})
    for package in ("torch", "torchvision", "timm", "torchattacks", "numpy"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    found["git_commit"] = git_commit()
    return found


@lru_cache(maxsize=1)
def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parent, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()} ({os.cpu_count()} cores)"
