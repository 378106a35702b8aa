"""CIFAR-10 loading: a torchvision ``cifar-10-batches-py/`` folder or an ``.npz``.

Where the data comes from, in order: the ``path`` argument (the CLI's ``--data``), the
environment variable ``RBE_DATA``, then ``~/.cache/robustbench_ens/data`` where
torchvision downloads CIFAR-10 when it is absent and the network allows.

An ``.npz`` holds ``x_train``/``y_train``/``x_test``/``y_test`` with images as uint8 HWC
RGB (the layout of the official python batches reshaped to 32x32x3). The batch files are
read with an unpickler that accepts only plain containers and numpy arrays, so a crafted
file cannot run code. Test points are the first ``n`` of the test set, in the official
order, as RobustBench takes them.
"""
from __future__ import annotations

import hashlib
import importlib
import os
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

NUM_CLASSES = 10
IMAGE_SHAPE = (32, 32, 3)
CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer",
               "dog", "frog", "horse", "ship", "truck")
BATCHES_DIR = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
DEFAULT_ROOT = Path.home() / ".cache" / "robustbench_ens" / "data"


class DataError(Exception):
    """The data could not be found or is not CIFAR-10 shaped; the message says what to pass."""


@dataclass(frozen=True)
class CIFAR10:
    """CIFAR-10 arrays as stored (uint8, NHWC) plus where they came from.

    ``file_sha256`` is the SHA-256 of the file the data was read from: the .npz itself, or a
    torchvision folder's ``test_batch`` (the file the test points come from); None for arrays
    not read from a file as they are (e.g. cut in memory).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    file_sha256: str | None = None

    def __post_init__(self):
        for split in ("train", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if x.ndim != 4 or tuple(x.shape[1:]) != IMAGE_SHAPE or x.dtype != np.uint8:
                raise DataError(f"{self.source}: x_{split} must be uint8 of shape (N, 32, 32, 3), "
                                f"got {x.dtype} {tuple(x.shape)}")
            if y.shape != (len(x),):
                raise DataError(f"{self.source}: y_{split} must have shape ({len(x)},), got {tuple(y.shape)}")
            if len(y) and (y.min() < 0 or y.max() >= NUM_CLASSES):
                raise DataError(f"{self.source}: y_{split} labels must lie in 0..{NUM_CLASSES - 1}")

    @property
    def sha256(self) -> str:
        """Hash of the arrays' bytes, recorded in every checkpoint and leaderboard."""
        digest = hashlib.sha256()
        for array in (self.x_train, self.y_train, self.x_test, self.y_test):
            digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()

    def test(self, n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``n`` test points as float images in [0, 1] (NCHW) and int64 labels."""
        n_test = len(self.y_test)
        if n is None:
            n = n_test
        if not 1 <= n <= n_test:
            raise DataError(f"n_examples must lie in 1..{n_test} (the test set of {self.source}), got {n}")
        return to_tensors(self.x_test[:n], self.y_test[:n])

    @staticmethod
    def indices_text(n: int) -> str:
        """Which test points :meth:`test` takes, for the leaderboard: the first ``n``, in the order of the file's test
        set, which is the official order in the official batches and in an .npz made from them."""
        span, points = ("0", "point") if n == 1 else (f"0-{n - 1}", f"{n} points")
        return f"{span} (the first {points} of the test set, in the official order)"

    def train(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All training points as float images in [0, 1] (NCHW) and int64 labels."""
        return to_tensors(self.x_train, self.y_train)


def to_tensors(images: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255)
    return x.contiguous(), torch.from_numpy(labels.astype(np.int64))


def load_cifar10(path: str | os.PathLike | None = None, download: bool = True) -> CIFAR10:
    """Load CIFAR-10 from ``path``, ``$RBE_DATA`` or the default cache (downloading there)."""
    if path is None:
        path = os.environ.get("RBE_DATA") or None
    if path is None:
        return _load_folder(DEFAULT_ROOT, download=download)
    path = Path(path).expanduser()
    if path.suffix == ".npz":
        return _load_npz(path)
    if path.is_file():
        raise DataError(f"{path} is a file, not an .npz nor a folder (pass --data a CIFAR-10 .npz, or a folder "
                        "holding cifar-10-batches-py/ or where to download it)")
    return _load_folder(path, download=download)


def _load_npz(path: Path) -> CIFAR10:
    if not path.is_file():
        raise DataError(f"no such data file: {path} (pass --data PATH or set RBE_DATA)")
    try:
        with np.load(path, allow_pickle=False) as arrays:
            missing = {"x_train", "y_train", "x_test", "y_test"} - set(arrays.files)
            if missing:
                raise DataError(f"{path} lacks arrays {sorted(missing)}; "
                                "expected x_train, y_train, x_test, y_test")
            return CIFAR10(x_train=arrays["x_train"], y_train=arrays["y_train"].astype(np.int64),
                           x_test=arrays["x_test"], y_test=arrays["y_test"].astype(np.int64),
                           source=str(path), file_sha256=_file_sha256(path))
    except (OSError, ValueError, zipfile.BadZipFile) as error:  # a truncated file is a BadZipFile
        if "pickle" in str(error):
            raise DataError(f"{path} holds Python objects (pickled arrays), which are never loaded: save x_train, "
                            "y_train, x_test and y_test as plain numeric arrays (np.savez)") from None
        raise DataError(f"cannot read {path} as an .npz: {error}") from None


def _batches_folder(path: Path) -> Path | None:
    for candidate in (path, path / BATCHES_DIR):
        if (candidate / TEST_BATCH).is_file():
            return candidate
    return None


def _load_folder(path: Path, download: bool) -> CIFAR10:
    folder = _batches_folder(path)
    failure = ""
    if folder is None and download:
        failure = _download(path)
        folder = _batches_folder(path)
    if folder is None:
        raise DataError(f"no CIFAR-10 at {path}{failure}: pass --data PATH (a folder holding {BATCHES_DIR}/ "
                        "or an .npz with x_train/y_train/x_test/y_test) or set RBE_DATA")
    train = [_read_batch(folder / name) for name in TRAIN_BATCHES if (folder / name).is_file()]
    if not train:
        raise DataError(f"{folder} has no data_batch_* files")
    test = _read_batch(folder / TEST_BATCH)
    return CIFAR10(x_train=np.concatenate([x for x, _ in train]), y_train=np.concatenate([y for _, y in train]),
                   x_test=test[0], y_test=test[1], source=str(folder), file_sha256=_file_sha256(folder / TEST_BATCH))


def _file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, read 1 MiB at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _download(root: Path) -> str:
    """torchvision's (checksummed) download into ``root``; returns why it failed, or ""."""
    from torchvision.datasets import CIFAR10 as TorchvisionCIFAR10

    try:
        root.mkdir(parents=True, exist_ok=True)
        TorchvisionCIFAR10(root=str(root), train=False, download=True)
    except Exception as error:  # network, disk or checksum: the caller reports "no data" in one line
        return f" and the download failed ({type(error).__name__}: {error})"
    return ""


class _ArraysOnlyUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, strings, numbers and numpy arrays; refuses every other global."""

    _allowed = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    }

    def find_class(self, module, name):
        if (module, name) not in self._allowed:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data batch")
        return getattr(importlib.import_module(module.replace("numpy.core.", "numpy._core.")), name)


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as file:
            batch = _ArraysOnlyUnpickler(file, encoding="bytes").load()
    except (OSError, pickle.UnpicklingError, EOFError, ValueError) as error:
        raise DataError(f"cannot read CIFAR-10 batch {path}: {error}") from None
    batch = {key.decode() if isinstance(key, bytes) else key: value for key, value in batch.items()}
    labels = batch.get("labels", batch.get("fine_labels"))
    if "data" not in batch or labels is None:
        raise DataError(f"{path} is not a CIFAR-10 batch (no data/labels)")
    data = np.asarray(batch["data"], dtype=np.uint8)
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), np.asarray(labels, dtype=np.int64)
