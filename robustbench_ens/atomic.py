"""Atomic file writes: a temp file in the same folder, fsync, ``os.replace``, fsync the folder.

A reader sees either the old file or the whole new one, never half of it, and a failed or
interrupted write leaves no temporary file behind. Every writer in the project (results'
adversarial sets, checkpoints, leaderboard pages) goes through here. :func:`check_writable`
and :func:`check_writable_file` tell before any work whether a folder or a file can be written.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from contextlib import contextmanager, suppress
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


def write_files(folder: Path, contents: dict[str, bytes | str]) -> list[Path]:
    """Every file of ``contents`` (name in ``folder`` -> bytes or text), each atomically, once the folder is known to
    have room for them all: a set of files rendered together (a leaderboard) is not left half old, half new for
    want of space. Raises :class:`UnwritableFolderError` (nothing written) when it has not."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data = {name: body.encode("utf-8") if isinstance(body, str) else body for name, body in contents.items()}
    needed = sum(len(body) for body in data.values()) + 2**20  # and a MiB for the file system's own blocks
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise UnwritableFolderError(f"{folder} has {free / 2**20:.1f} MiB free, {needed / 2**20:.1f} MiB are needed "
                                    f"to write its {len(data)} files; nothing was written")
    return [write_bytes(folder / name, body) for name, body in data.items()]


class UnwritableFolderError(OSError):
    """A folder, or a file in one, that cannot be created or written; the message names it."""


def check_writable(folder: Path, what: str) -> None:
    """An UnwritableFolderError unless ``folder`` can really be written: the folders missing on the way to it are
    created and a temporary file is created in it and removed; then the folders it created are removed again (those
    still empty), so that the check leaves the file system as it found it. ``what`` names the folder and its flag."""
    folder = Path(folder).absolute()
    problem = _folder_problem(folder)
    if problem:
        raise UnwritableFolderError(f"cannot write the {what} {folder}: it {problem}; pass a folder you can write")


def check_writable_file(path: Path, what: str) -> None:
    """An UnwritableFolderError unless the file ``path`` can be written: its folder passes :func:`check_writable`,
    and the path is absent or a file that opens for writing (opened to append, and closed: it is left unchanged)."""
    path = Path(path).absolute()
    folder_problem = _folder_problem(path.parent)
    problem = f"its folder {path.parent} {folder_problem}" if folder_problem else _file_problem(path)
    if problem:
        raise UnwritableFolderError(f"cannot write the {what} {path}: {problem}; pass a folder you can write")


def _folder_problem(folder: Path) -> str | None:
    """Why the absolute path ``folder`` cannot be written, as a predicate ("is not a folder"), or None."""
    chain = (folder, *folder.parents)
    try:
        existing = next(p for p in chain if p.exists())
    except OSError as error:  # an ancestor that may not be searched
        return f"cannot be reached ({error.strerror})"
    if not existing.is_dir():
        return "is not a folder" if existing == folder else f"cannot be created: {existing} is not a folder"
    try:
        return _write_problem(folder)
    finally:
        for created in chain[:chain.index(existing)]:  # deepest first; rmdir removes only an empty folder
            with suppress(OSError):
                created.rmdir()


def _write_problem(folder: Path) -> str | None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        return f"cannot be created ({error.strerror})"
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".write-check-")
    except OSError as error:
        return f"is not writable ({error.strerror})"
    os.close(fd)
    os.unlink(probe)
    return None


def _file_problem(path: Path) -> str | None:
    if path.is_dir():
        return "it is a folder"
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NONBLOCK))  # never creates it, never waits (FIFO)
    except FileNotFoundError:
        return None
    except OSError as error:
        return f"it cannot be opened for writing ({error.strerror})"
    return None


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
