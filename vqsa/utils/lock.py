"""One writer per output folder: an exclusive lock on ``<folder>/.vqsa.lock`` that the operating system releases
when the process holding it ends, however it ends, so a lock left by a killed process is simply taken over."""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no advisory locks here; one writer per folder stays the user's rule
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".vqsa.lock"


class FolderInUseError(RuntimeError):
    """Another process is writing into the folder."""


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike) -> Iterator[None]:
    """Hold the folder's lock for the ``with`` block (creating the folder); :class:`FolderInUseError` names the
    process that holds it."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"destination {str(folder)!r} exists and is not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    if fcntl is None:
        yield
        return
    path = folder / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise FolderInUseError(f"{folder} is in use by PID {holder} (another vqsa process is writing there): "
                                   "wait for it to finish, or choose another folder") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def check_not_locked(folder: str | os.PathLike) -> None:
    """Raise :class:`FolderInUseError` now if another process holds the folder's lock (a folder that does not exist
    yet is free)."""
    if Path(folder).is_dir():
        with folder_lock(folder):
            pass
