"""Atomic file writes: a temp file in the same folder, fsync, ``os.replace``, fsync the folder.

A reader sees either the old file or the whole new one, never half of it, and a failed or
interrupted write leaves no temporary file behind. Every writer in the project (results'
adversarial sets, checkpoints, leaderboard pages) goes through here.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: Path):
    """Yields a temporary path to write; on success it replaces ``path`` in one step."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as file:
            os.fsync(file.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a published file must be readable
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    _fsync_folder(path.parent)


def write_bytes(path: Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: Path, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_with(path: Path, writer: Callable[[Path], None]) -> Path:
    """Atomic write by a function that writes to the path it is given (e.g. ``save_file``)."""
    with atomic_path(path) as tmp:
        writer(tmp)
    return Path(path)


class UnwritableFolderError(OSError):
    """A folder that cannot be created or written; the message names it."""


def check_writable(folder: Path, what: str) -> None:
    """An UnwritableFolderError unless ``folder`` exists as a writable folder or could be created (its nearest
    existing ancestor is a writable folder). Creates nothing."""
    folder = Path(folder).absolute()
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    problem = ("is not a folder" if not existing.is_dir() else
               "is not writable" if not os.access(existing, os.W_OK | os.X_OK) else None)
    if problem:
        where = "" if existing == folder else f" (its ancestor {existing} {problem})"
        raise UnwritableFolderError(f"cannot write the {what} {folder}{where or ': it ' + problem}; "
                                    "pass a folder you can write")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_folder(folder: Path) -> None:
    """Makes the rename itself durable where the platform allows it."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
