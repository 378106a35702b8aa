"""Shared fixtures: where ../shared lives, tiny models, and a CPU-only, quiet environment."""
from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def shared_data_path() -> Path:
    return Path(os.environ.get("RBE_DATA") or SHARED / "data" / "cifar10_slice.npz")


def shared_models_path() -> Path:
    return Path(os.environ.get("RBE_MODELS") or SHARED / "models")


def sigkill_at_line(command: list[str], prefixes, cwd: Path) -> None:
    """Runs ``command`` and SIGKILLs it as soon as it prints a line starting with one of ``prefixes``."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=cwd,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    for line in process.stdout:
        if line.startswith(prefixes):
            process.send_signal(signal.SIGKILL)
            break
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, f"{command} ended before printing {prefixes}"


@pytest.fixture
def slice_path() -> Path:
    path = shared_data_path()
    if not path.is_file():
        pytest.skip(f"no CIFAR-10 slice at {path}")
    return path


@pytest.fixture
def models_path() -> Path:
    path = shared_models_path()
    if not (path / "resnet20_a_standard.safetensors").is_file():
        pytest.skip(f"no shared pretrained models at {path}")
    return path


class TinyNet(nn.Module):
    """A small CNN with BatchNorm and Dropout, so that mode changes are observable."""

    def __init__(self, seed: int = 0, num_classes: int = 10):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Dropout(0.1))
        self.head = nn.Linear(8 * 16, num_classes)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=generator) * 0.3)

    def forward(self, x):
        return self.head(self.features(x))


@pytest.fixture
def tiny_models():
    return [TinyNet(seed=s).eval() for s in range(3)]


@pytest.fixture
def batch():
    generator = torch.Generator().manual_seed(0)
    return torch.rand(6, 3, 32, 32, generator=generator), torch.randint(0, 10, (6,), generator=generator)


class TinyBlock(nn.Module):
    """x + conv(relu(conv(x))): a residual block that names the end of its branch, as the zoo's ResNet blocks do."""

    residual_branch_end = "conv2"

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return x + self.conv2(torch.relu(self.conv1(x)))


class TinyResNet(nn.Module):
    """stem conv -> two TinyBlocks -> pooling -> linear head."""

    def __init__(self, seed: int = 0, num_classes: int = 10):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.blocks = nn.Sequential(TinyBlock(4), TinyBlock(4))
        self.head = nn.Linear(4 * 16, num_classes)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=generator) * 0.3)

    def forward(self, x):
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(self.blocks(self.stem(x)), 4), 1))


@pytest.fixture
def tiny_resnets():
    return [TinyResNet(seed=s).eval() for s in range(2)]


def interrupted_training(module, train, make_members, folder, interrupt_after, monkeypatch):
    """``train(members, checkpoint_dir=folder)`` stopped (KeyboardInterrupt) once ``interrupt_after`` epochs are saved,
    then run again on fresh members, as a new process would; returns those members and the second run's summary."""
    original = module.save_epoch

    def save_then_die(folder, members, optimizers, recipe, seed, epochs_done, *rest):
        original(folder, members, optimizers, recipe, seed, epochs_done, *rest)
        if epochs_done == interrupt_after:
            raise KeyboardInterrupt

    monkeypatch.setattr(module, "save_epoch", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train(make_members(), checkpoint_dir=folder)
    monkeypatch.setattr(module, "save_epoch", original)
    members = make_members()  # a fresh process: weights come from the checkpoint
    return members, train(members, checkpoint_dir=folder)
