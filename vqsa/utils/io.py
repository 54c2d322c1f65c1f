"""Atomic file writes: a crash or a kill never leaves a half-written file under the final name; JSON records that
carry the sha256 of their own content."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success fsync it and rename it onto ``path``.

    On an exception the temporary file is removed and ``path`` is left untouched.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open supports mode 'w' or 'wb', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # os.open with mode 0o666 lets the umask decide the permissions, as for a plain open() (mkstemp forces 0600).
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def check_writable(path: str | os.PathLike) -> None:
    """Create ``path``'s folder and raise ``PermissionError`` now if a file cannot be written there (read-only
    file system, no permission), so that long work is not done before the write fails."""
    parent = Path(path).parent
    parent.mkdir(parents=True, exist_ok=True)
    if not os.access(parent, os.W_OK):
        raise PermissionError(f"cannot write to {str(parent)!r} (read-only file system or no permission)")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, "wb") as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_open(path, "w") as f:
        f.write(text)


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int = 2) -> None:
    """Write ``obj`` as JSON to ``path`` atomically (NaN/Inf are refused: they are not JSON)."""
    atomic_write_text(path, json.dumps(obj, indent=indent, allow_nan=False) + "\n")


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to ``path`` atomically. A write that fails for lack of space is an ``OSError(ENOSPC)`` naming
    the file (torch reports it as ``[enforce fail at inline_container.cc] unexpected pos``); the file already at
    ``path`` is kept."""
    import errno

    import torch

    try:
        with atomic_open(path, "wb") as f:
            torch.save(obj, f)
    except (RuntimeError, OSError) as e:
        full = getattr(e, "errno", None) == errno.ENOSPC or "unexpected pos" in str(e)
        if not full:
            raise
        raise OSError(errno.ENOSPC, f"no space left on the device to write {path} (the file there before, if any, "
                      "is kept): free some space and resume") from e


def atomic_save_figure(fig: Any, path: str | os.PathLike, *, fmt: str = "png", dpi: int = 120) -> None:
    """Render a matplotlib ``Figure`` to bytes and write them to ``path`` atomically."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=dpi)
    atomic_write_bytes(path, buf.getvalue())


class BadImageError(ValueError):
    """An image file that cannot be decoded (unreadable, truncated, not an image); the message names the file."""


#: Key of a JSON record's own content hash (the sha256 of its other keys in canonical form).
CONTENT_SHA256 = "content_sha256"


def content_sha256(record: dict[str, Any]) -> str:
    """sha256 of ``record`` without its :data:`CONTENT_SHA256` key, as sorted, compact JSON."""
    body = {k: v for k, v in record.items() if k != CONTENT_SHA256}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def atomic_write_checked_json(path: str | os.PathLike, record: dict[str, Any]) -> None:
    """:func:`atomic_write_json` of ``record`` plus its content hash, which :func:`read_checked_json` verifies."""
    atomic_write_json(path, {**record, CONTENT_SHA256: content_sha256(record)})


def read_checked_json(path: str | os.PathLike) -> Any:
    """The JSON at ``path``, its content hash verified when it has one (ValueError naming the file otherwise), and
    removed from the returned dict."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if isinstance(data, dict) and CONTENT_SHA256 in data:
        if data[CONTENT_SHA256] != content_sha256(data):
            raise ValueError(f"{path}: damaged file: its content does not match the sha256 recorded in it")
        data = {k: v for k, v in data.items() if k != CONTENT_SHA256}
    return data
