"""Where data lives: ``--data-root`` beats ``$VQSA_DATA``; nothing is ever copied into the package."""
from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "VQSA_DATA"


def resolve_data_root(data_root: str | os.PathLike | None = None, *, required: bool = False) -> Path | None:
    """Return ``data_root`` or ``$VQSA_DATA`` as a Path (None when neither is set and not ``required``).

    Raises:
        FileNotFoundError: the given root does not exist, or none is set and ``required`` is True.
    """
    root = data_root if data_root is not None else os.environ.get(ENV_VAR) or None
    if root is None:
        if required:
            raise FileNotFoundError(f"no data root given: pass --data-root DIR or set ${ENV_VAR}")
        return None
    path = Path(root).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"data root {str(path)!r} does not exist (from --data-root or ${ENV_VAR})")
    return path
